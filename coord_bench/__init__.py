"""coord_bench: a declarative builder of a unified multi-agent coordination dataset on HuggingFace datasets.

Importing the package registers the ``coord_bench`` builder with ``datasets`` (when ``datasets`` loads, so a
module that needs no ``datasets`` does not import it), so that ``datasets.load_dataset("coord_bench",
"debate")`` works offline.
"""

__version__ = "0.1.0"

from coord_bench.registration import register_with_datasets  # noqa: E402

register_with_datasets(__version__)
