"""The build folder's layout: shard names, sizes, the manifest, and reading every record once."""

from __future__ import annotations

import pytest
from synthetic import arena, debate, write_build

from coord_bench.build_folder import (
    BUILD_FILES,
    BUILD_FOLDERS,
    DEFAULT_MAX_SHARD_BYTES,
    SHARD_NAME,
    NotABuildError,
    built_by_us,
    configs_covering,
    iter_record_batches,
    max_shard_bytes,
    parse_size,
    read_manifest,
    shard_files,
    shard_name,
    shard_split,
    write_manifest,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("500MB", 500 * 1024 * 1024),
        ("512KB", 512 * 1024),
        ("2GB", 2 * 1024**3),
        (" 1.5kb ", 1536),
        ("100B", 100),
        ("4096", 4096),
        (7, 7),
    ],
)
def test_parse_size_reads_units_as_powers_of_1024(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "MB", "5TB", "10 MiB", ""])
def test_parse_size_refuses_bad_input_naming_it(text):
    with pytest.raises(ValueError, match=rf"invalid size {text!r}: expected e.g. 100MB, 512KB or a number of bytes"):
        parse_size(text)


def test_the_default_shard_limit_is_100_mebibytes():
    assert DEFAULT_MAX_SHARD_BYTES == 100 * 1024 * 1024
    assert max_shard_bytes({}) == DEFAULT_MAX_SHARD_BYTES
    assert max_shard_bytes({"recipe": {"output": {"max_shard_size": "3KB"}}}) == 3072
    assert max_shard_bytes({"recipe": {"output": {}}}) == DEFAULT_MAX_SHARD_BYTES


def test_shard_names_round_trip_through_shard_split():
    name = shard_name("validation", 2, 13)
    assert name == "validation-00002-of-00013.parquet"
    assert SHARD_NAME.fullmatch(name)["total"] == "00013"
    assert shard_split(name) == "validation"
    assert shard_split(f"some/dir/{shard_name('my-split', 0, 1)}") == "my-split"  # a split name with dashes


@pytest.mark.parametrize(
    "name", ["train.parquet", ".train.part0.parquet", "train-0-of-1.parquet", "train-00000-of-00001.json"]
)
def test_files_not_named_like_shards_have_no_split(name):
    assert shard_split(name) is None


def test_manifest_write_read_round_trip(tmp_path):
    manifest = {"configs": {"all": {"sources": ["debate"], "num_rows": 3}}, "note": "Zürich — 東京", "n": 1.5}
    write_manifest(tmp_path, manifest)
    assert read_manifest(tmp_path) == manifest
    text = (tmp_path / "build_manifest.json").read_text(encoding="utf-8")
    assert "Zürich — 東京" in text and text.endswith("}\n")  # readable, not \u-escaped


def test_reading_the_manifest_of_a_folder_that_is_not_a_build(tmp_path):
    with pytest.raises(NotABuildError, match="build_manifest.json is missing") as caught:
        read_manifest(tmp_path)
    assert isinstance(caught.value, FileNotFoundError)  # callers that catch FileNotFoundError still work


def test_a_rebuild_replaces_the_configs_files_and_folders_of_the_manifest(tmp_path):
    assert built_by_us(tmp_path) == set(BUILD_FILES) | set(BUILD_FOLDERS)  # no manifest: the fixed names only
    write_manifest(tmp_path, {"configs": {"all": {}, "debate": {}}})
    assert built_by_us(tmp_path) == {"all", "debate", *BUILD_FILES, *BUILD_FOLDERS}
    (tmp_path / "build_manifest.json").write_text("{not json")
    assert "debate" not in built_by_us(tmp_path)


def test_shard_files_skip_hidden_parts_and_sort_by_split_then_index(tmp_path):
    config = tmp_path / "all"
    config.mkdir()
    names = ["validation-00000-of-00001.parquet", "train-00001-of-00002.parquet", "train-00000-of-00002.parquet",
             ".train.part2.parquet", "notes.txt"]  # fmt: skip
    for name in names:
        (config / name).write_bytes(b"")
    assert [p.name for p in shard_files(tmp_path, "all")] == [
        "train-00000-of-00002.parquet",
        "train-00001-of-00002.parquet",
        "validation-00000-of-00001.parquet",
    ]
    assert shard_files(tmp_path, "missing") == []


def test_configs_covering_reads_each_source_once_from_the_default_config_first():
    manifest = {
        "default_config": "mixed",
        "configs": {
            "all": {"sources": ["a", "b", "c"]},
            "a": {"sources": ["a"]},
            "mixed": {"sources": ["b", "c"]},
            "c": {"sources": ["c"]},
        },
    }
    assert configs_covering(manifest) == [("mixed", {"b", "c"}), ("a", {"a"})]


def test_iter_record_batches_yields_every_record_once_with_only_the_columns_asked(tmp_path):
    records = [debate(i, "train", [[("A", None)]], True) for i in range(3)]
    records += [arena(i, "test", "model_a", "x", "y") for i in range(2)]
    folder = write_build(tmp_path / "b", records)
    manifest = read_manifest(folder)
    rows = [row for batch in iter_record_batches(folder, manifest, columns=["id"], batch_size=2) for row in batch]
    assert sorted(r["id"] for r in rows) == sorted(r["id"] for r in records)  # "all" repeats them; read once
    assert all(set(r) == {"id", "source"} for r in rows)
    nested = next(iter_record_batches(folder, manifest, columns=["outcome.winner", "no_such_column"]))
    assert set(nested[0]) == {"outcome", "source"}
