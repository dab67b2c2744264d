"""The ``datasets`` builder: it builds a folder in its cache and loads that folder's shards, split by split."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from coord_bench.build_folder import read_manifest, shard_files, shard_split
from coord_bench.builder import CoordBench
from coord_bench.plan import DEFAULT_CONFIG
from coord_bench.schema import features
from coord_bench.sources import BUILTIN_SOURCES
from coord_bench.validate import validation_errors


def staging_folders(cache_dir):
    return sorted((cache_dir / "coord_bench_staging").iterdir())


def test_the_builder_has_one_config_per_source_and_all_by_default():
    configs = {c.name: c.sources for c in CoordBench.BUILDER_CONFIGS}
    assert configs == {DEFAULT_CONFIG: tuple(BUILTIN_SOURCES), **{name: (name,) for name in BUILTIN_SOURCES}}
    assert CoordBench.DEFAULT_CONFIG_NAME == "all"


def test_the_builder_loads_the_folder_it_built(tmp_path):
    builder = CoordBench(cache_dir=str(tmp_path), config_name="chatbot_arena", limit=6)
    builder.download_and_prepare()
    loaded = builder.as_dataset()

    [folder] = staging_folders(tmp_path)
    manifest = read_manifest(folder)
    assert manifest["sources"]["chatbot_arena"]["read"] == 6  # the config's limit reached the build
    assert list(validation_errors(folder)) == []
    splits = manifest["configs"]["chatbot_arena"]["splits"]
    assert {name: len(ds) for name, ds in loaded.items()} == {name: n for name, n in splits.items() if n}
    assert 0 in splits.values()  # an empty split is left out, not loaded as an empty file
    for name, ds in loaded.items():
        shards = [p for p in shard_files(folder, "chatbot_arena") if shard_split(p) == name]
        assert ds["id"] == [row for p in shards for row in pq.read_table(p, columns=["id"])["id"].to_pylist()]
        assert ds.features == features()


def test_another_limit_builds_into_another_staging_folder(tmp_path):
    for limit in (2, 3):
        CoordBench(cache_dir=str(tmp_path), config_name="debate", limit=limit).download_and_prepare()
    reads = [read_manifest(f)["sources"]["debate"]["read"] for f in staging_folders(tmp_path)]
    assert sorted(reads) == [2, 3]


def test_source_dirs_for_a_source_the_config_does_not_hold_are_refused(tmp_path):
    builder = CoordBench(cache_dir=str(tmp_path), config_name="debate", source_dirs={"chatbot_arena": str(tmp_path)})
    with pytest.raises(ValueError, match=r"source_dirs names \['chatbot_arena'\], which config 'debate' does not hold"):
        builder.download_and_prepare()
    assert not (tmp_path / "coord_bench_staging").exists()  # refused before anything was built
