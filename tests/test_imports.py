"""The package's import structure: numeric modules load without ``datasets``, and no module-level import circle."""

from __future__ import annotations

import subprocess
import sys


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_the_numeric_latent_modules_import_without_datasets():
    done = python("import coord_bench.mappers.latents.kalman, sys; assert 'datasets' not in sys.modules")
    assert done.returncode == 0, done.stderr


def test_importing_the_package_registers_the_builder_in_either_order():
    check = "from datasets import packaged_modules as p; assert 'coord_bench' in p._PACKAGED_DATASETS_MODULES"
    # the CLI imports datasets half-way through importing the package's own modules
    for imports in ("import coord_bench, datasets", "import datasets, coord_bench", "import coord_bench.cli"):
        done = python(f"{imports}; {check}")
        assert done.returncode == 0, (imports, done.stderr)
