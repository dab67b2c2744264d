"""What a build makes: its sources, configs, splits, annotation layers and limits, checked before it starts.

The CLI makes a plan from a recipe (``recipe.to_plan``), the datasets builder from its config; ``build.run_build``
runs one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coord_bench.build_folder import DEFAULT_MAX_SHARD_BYTES
from coord_bench.sources import SourceSpec
from coord_bench.splits import DEFAULT_RATIOS

DEFAULT_CONFIG = "all"


def recipe_hash(recipe: dict[str, Any]) -> str:
    """sha256 of the resolved recipe: what the manifest and the card name a build's recipe by."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class BuildError(RuntimeError):
    """The build cannot start or finish; the message says why."""


@dataclass
class BuildPlan:
    """Everything a build needs; the CLI and the datasets builder both make one."""

    sources: list[SourceSpec]
    out_dir: Path
    configs: dict[str, list[str]] = field(default_factory=dict)  # config name -> source names
    limit: int | None = None  # read at most this many raw records per source
    annotations: dict[str, dict[str, Any]] = field(default_factory=dict)  # layer name -> its parameters
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES
    default_config: str = DEFAULT_CONFIG
    split_ratios: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RATIOS))
    recipe: dict[str, Any] | None = None  # the resolved recipe, recorded in the manifest and the card

    @property
    def recipe_hash(self) -> str | None:
        return recipe_hash(self.recipe) if self.recipe is not None else None

    def __post_init__(self) -> None:
        for spec in self.sources:
            spec.options["split_ratios"] = self.split_ratios
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise BuildError(f"source names must be unique, got {names}")
        if not self.configs:
            self.configs = {self.default_config: names, **{name: [name] for name in names}}
        for config, members in self.configs.items():
            if config == "data":
                raise BuildError("'data' cannot be a config name (the Hub reserves it)")
            unknown = sorted(set(members) - set(names))
            if unknown:
                raise BuildError(f"config '{config}' names unknown sources {unknown}; sources are {names}")
        orphans = sorted(set(names) - {s for members in self.configs.values() for s in members})
        if orphans:
            raise BuildError(f"sources {orphans} are in no config, so their records would be written nowhere; "
                             "add them to a config or drop them")
        if sum(self.split_ratios.values()) <= 0:
            raise BuildError(f"split ratios must add up to more than 0, got {self.split_ratios}")
