"""Build one of the example recipes in builder_scripts/examples/ on its fixture, from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import yaml

from coord_bench.cli import main

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "builder_scripts" / "examples"
FIXTURES = REPO / "tests" / "fixtures" / "mapping"


def example_recipe(shape: str) -> dict:
    return yaml.safe_load((EXAMPLES / f"{shape}.yaml").read_text(encoding="utf-8"))


def build_example(tmp_path: Path, shape: str, recipe: dict | None = None, root: Path | None = None) -> Path:
    """Build the recipe (the example's unless given) with its source read from ``root`` (default: the fixture);
    returns the output folder, after checking that the build validates."""
    recipe = recipe or example_recipe(shape)
    recipe["sources"][0]["location"] = {"path": str(root or FIXTURES / shape)}
    out = tmp_path / "out"
    recipe["output"] = {**recipe.get("output", {}), "dir": str(out)}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True), encoding="utf-8")
    assert main(["build", str(path), "--no-progress"]) == 0
    assert main(["validate", str(out)]) == 0
    return out


def loaded_rows(out: Path, config: str, tmp_path: Path) -> dict[str, dict]:
    """Every row of a config as ``datasets`` loads it, by source id."""
    loaded = datasets.load_dataset(str(out), config, cache_dir=str(tmp_path / "hf"))
    return {row["source_id"]: row for split in loaded.values() for row in split}


def manifest_counts(out: Path, source: str) -> tuple[int, int, int]:
    stats = json.loads((out / "build_manifest.json").read_text())["sources"][source]
    return stats["read"], stats["normalized"], stats["rejected"]


def said(row: dict) -> list[tuple[str, str]]:
    """(speaker, kind) of every message in order."""
    return [(m["agent_id"], m["kind"]) for turn in row["turns"] for m in turn["messages"]]


def rejects(out: Path) -> list[dict]:
    path = out / "rejects.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
