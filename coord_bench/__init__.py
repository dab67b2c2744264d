"""coord_bench: a declarative builder of a unified multi-agent coordination dataset on HuggingFace datasets."""

__version__ = "0.1.0"
