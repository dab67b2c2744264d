"""The ``datasets`` builder: ``load_dataset("coord_bench", CONFIG)`` after ``import coord_bench``.

It runs the same build as the CLI into a staging folder inside the datasets cache, then hands the Parquet
shards to ``datasets``. Configs: ``all`` (default) and one per source. Sources come from the embedded
sample unless ``source_dirs={"debate": "/path/in/hub/layout", ...}`` is given.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from datasets.builder import Key

from coord_bench import __version__
from coord_bench.build import run_build
from coord_bench.build_folder import shard_files, shard_split
from coord_bench.locate import embedded_source, local_source
from coord_bench.plan import DEFAULT_CONFIG, BuildPlan
from coord_bench.schema import features
from coord_bench.sources import BUILTIN_SOURCES


@dataclass
class CoordBenchConfig(datasets.BuilderConfig):
    """A config: which sources it holds, and optionally local folders to read them from."""

    sources: tuple[str, ...] = ()
    source_dirs: dict[str, str] = field(default_factory=dict)
    limit: int | None = None


class CoordBench(datasets.ArrowBasedBuilder):
    BUILDER_CONFIG_CLASS = CoordBenchConfig
    BUILDER_CONFIGS = [
        CoordBenchConfig(name=DEFAULT_CONFIG, sources=BUILTIN_SOURCES, version=__version__, description="every source"),
        *(
            CoordBenchConfig(name=name, sources=(name,), version=__version__, description=f"only {name}")
            for name in BUILTIN_SOURCES
        ),
    ]
    DEFAULT_CONFIG_NAME = DEFAULT_CONFIG

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description="LLM agents interacting, normalized into one schema (see the coord_bench dataset card).",
            features=features(),
            license="other",
            homepage="https://huggingface.co/datasets/coord-bench/coord_bench",
        )

    def _split_generators(self, dl_manager: datasets.DownloadManager) -> list[datasets.SplitGenerator]:
        config = self.config
        unknown = sorted(set(config.source_dirs) - set(config.sources))
        if unknown:
            raise ValueError(
                f"source_dirs names {unknown}, which config {config.name!r} does not hold "
                f"(it holds {', '.join(config.sources)})"
            )
        specs = [
            local_source(name, config.source_dirs[name]) if name in config.source_dirs else embedded_source(name)
            for name in config.sources
        ]
        key = json.dumps([config.name, config.sources, config.source_dirs, config.limit, __version__], sort_keys=True)
        staging = Path(self._cache_dir_root) / "coord_bench_staging" / hashlib.sha256(key.encode()).hexdigest()[:16]
        plan = BuildPlan(
            specs, staging, {config.name: list(config.sources)}, limit=config.limit, default_config=config.name
        )
        manifest = run_build(plan)
        counts = manifest["configs"][config.name]["splits"]
        shards = shard_files(staging, config.name)
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"files": [p for p in shards if shard_split(p) == split]})
            for split, count in counts.items()
            if count
        ]

    def _generate_tables(self, files: list[Path]):
        for file_index, path in enumerate(files):
            for batch_index, batch in enumerate(pq.ParquetFile(path).iter_batches()):
                yield Key(file_index, batch_index), pa.Table.from_batches([batch])
