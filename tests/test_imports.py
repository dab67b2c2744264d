"""The package's import structure: numeric modules load without ``datasets``, and no import circle."""

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


def package_imports() -> dict[str, set[str]]:
    """Module -> the package modules it imports, at module level or inside a function (a deferred import is
    still a dependency), leaving out imports made only for type checking."""
    import ast
    from pathlib import Path

    import coord_bench

    root = Path(coord_bench.__file__).parent
    files = {}
    for path in root.rglob("*.py"):
        parts = ("coord_bench", *path.relative_to(root).with_suffix("").parts)
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for inner in ast.walk(node)
        }
        found: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parent, base] if base else parent)
                submodules = {f"{base}.{alias.name}" for alias in node.names} & set(files)
                found.update(submodules or {base})  # `from pkg import module` needs the module, not pkg
        graph[name] = {other for other in found if other in files and other != name}
    return graph


def test_no_import_circle_among_the_package_modules():
    graph = package_imports()
    assert graph["coord_bench.build"], "the walk found no imports at all"
    circles, done, path = [], set(), []

    def visit(name: str) -> None:
        path.append(name)
        for other in sorted(graph[name]):
            if other in path:
                circles.append(" -> ".join([*path[path.index(other):], other]))
            elif other not in done:
                visit(other)
        path.pop()
        done.add(name)

    for name in sorted(graph):
        if name not in done:
            visit(name)
    assert circles == []
