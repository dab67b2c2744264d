"""Find the project's top-level files (``schemas/``, ``builder_scripts/``, ``dataset_card.md``) at run time.

A source checkout or editable install has them beside the package; a wheel installs them as data files
under ``<prefix>/share/coord_bench`` (see ``data_files`` in setup.cfg).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
_LOCATIONS = (PACKAGE_DIR.parent, Path(sys.prefix) / "share" / "coord_bench")


def resource_path(name: str) -> Path:
    """Return the top-level file or folder ``name`` from the checkout, else from the installed data files."""
    for base in _LOCATIONS:
        if (base / name).exists():
            return base / name
    raise FileNotFoundError(f"coord_bench is installed without '{name}' (looked in {', '.join(map(str, _LOCATIONS))})")


def default_cache_dir() -> Path:
    """Where costly work is cached across builds (embeddings, the tokenizer file): $COORD_BENCH_CACHE or
    ~/.cache/coord_bench."""
    return Path(os.environ.get("COORD_BENCH_CACHE", Path.home() / ".cache" / "coord_bench"))
