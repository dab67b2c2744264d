"""Register the ``coord_bench`` builder with ``datasets`` when ``datasets`` is loaded, not before.

``import coord_bench`` must make ``load_dataset("coord_bench", ...)`` work, but a module of the package that
needs no ``datasets`` (the numeric latent models, the CLI's argument parsing) must not pay for importing it.
So the package registers at once when ``datasets`` is already imported, and otherwise puts a finder on
``sys.meta_path`` that registers right after ``datasets`` finishes loading, then removes itself.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import sys
from pathlib import Path
from typing import Any

NAME = "coord_bench"
BUILDER_MODULE = "coord_bench.builder"  # datasets imports it by this name when a load needs it


def register(version: str) -> None:
    """Make ``load_dataset("coord_bench", ...)`` resolve to the builder module, with no remote code and no network.

    ``datasets`` looks names up in its private ``_PACKAGED_DATASETS_MODULES`` registry (name -> module
    path, hash of its code) before anything else. Its factory for those modules then globs the working
    folder for data files, which a builder that makes its own data does not need: that is slow in a big
    folder and an error in an empty one, so for this name the factory is told there are none. Both hooks are
    private API, so each is guarded: a datasets without them only loses the shortcut. The builder module is
    not imported here: this can run while ``datasets`` is being imported by a module of this package.
    """
    from datasets import load, packaged_modules
    from datasets.data_files import DataFilesDict

    registry = getattr(packaged_modules, "_PACKAGED_DATASETS_MODULES", None)
    factory = getattr(load, "PackagedDatasetModuleFactory", None)
    if not isinstance(registry, dict) or factory is None or getattr(factory, "_coord_bench_hook", False):
        return
    source = (Path(__file__).parent / "builder.py").read_bytes() + version.encode()
    registry[NAME] = (BUILDER_MODULE, hashlib.sha256(source).hexdigest())
    original = factory.get_module

    def get_module(self):
        if self.name != NAME or self.data_files is not None or self.data_dir is not None:
            return original(self)
        module_path, module_hash = registry[NAME]
        return load.DatasetModule(module_path, module_hash, {"data_files": DataFilesDict(), "dataset_name": NAME})

    factory.get_module = get_module
    factory._coord_bench_hook = True


class _AfterDatasets(importlib.abc.MetaPathFinder):
    """Finds nothing itself: it wraps the loader of ``datasets`` so that registering follows its loading."""

    def __init__(self, version: str):
        self.version = version

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != "datasets":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module: Any) -> None:
            exec_module(module)
            register(self.version)

        spec.loader.exec_module = exec_then_register  # this spec's own loader instance
        return spec


def register_with_datasets(version: str) -> None:
    """Register now if ``datasets`` is loaded, else once it is; ``version`` (the package's) keys the builder's hash."""
    if "datasets" in sys.modules:
        register(version)
    elif not any(isinstance(finder, _AfterDatasets) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterDatasets(version))
