"""Annotation layers: each fills nullable annotations of the unified record, in batches.

``layer.py`` says what a layer declares (``needs``, ``reads``, ``writes``, a typed config, ``prepare``,
``apply``, ``describe``) and the ``LayerContext`` layers share; ``registry.py`` names every layer in one dict.
"""
