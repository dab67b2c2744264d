"""coord_bench: a declarative builder of a unified multi-agent coordination dataset on HuggingFace datasets.

Importing the package registers the ``coord_bench`` builder with ``datasets``, so that
``datasets.load_dataset("coord_bench", "debate")`` works offline.
"""

__version__ = "0.1.0"

from coord_bench.builder import register  # noqa: E402  (needs __version__)

register()
