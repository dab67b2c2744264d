"""The shard writer: rows stream into size-limited shards named the way ``datasets`` expects, in order."""

from __future__ import annotations

import random
import string

import pyarrow.parquet as pq
import pytest
from synthetic import arena, debate

from coord_bench.build_folder import SHARD_NAME, iter_rows
from coord_bench.writer import ROWS_PER_BATCH, ConfigWriters, SplitWriter

LIMIT = 200 * 1024


def noisy_arena(count: int, seed: int = 0) -> list[dict]:
    """Arena records with ~4 KB of incompressible text each, so that a few hundred pass a small shard limit."""
    rng = random.Random(seed)

    def text() -> str:
        return "".join(rng.choice(string.ascii_letters) for _ in range(2000))

    return [arena(i, "train", "model_a", text(), text()) for i in range(count)]


@pytest.fixture(scope="module")
def records():
    return noisy_arena(3 * ROWS_PER_BATCH)  # three flushes: the later ones use the measured compression ratio


def write(folder, records, limit):
    writer = SplitWriter(folder, "train", limit)
    for record in records:
        writer.add(record)
    return writer, writer.close()


def test_shards_roll_over_at_the_limit_and_are_named_index_of_total(tmp_path, records):
    writer, shards = write(tmp_path, records, LIMIT)
    assert len(shards) > 3
    matches = [SHARD_NAME.fullmatch(p.name) for p in shards]
    assert all(matches), [p.name for p in shards]
    assert [(m["split"], int(m["index"]), int(m["total"])) for m in matches] == [
        ("train", i, len(shards)) for i in range(len(shards))
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in shards)  # no .part files left
    for shard in shards:  # the row data respects the limit; the footer (schema, features) comes on top
        metadata = pq.ParquetFile(shard).metadata
        assert shard.stat().st_size - metadata.serialized_size - 8 <= LIMIT, shard.name
    assert writer.count == len(records)


def test_whole_shard_files_stay_under_the_limit(tmp_path, records):
    _, shards = write(tmp_path, records, LIMIT)
    assert all(p.stat().st_size <= LIMIT for p in shards), [p.stat().st_size for p in shards]


def test_rows_keep_their_order_across_shards(tmp_path, records):
    _, shards = write(tmp_path, records, LIMIT)
    assert [row["id"] for shard in shards for row in iter_rows(shard)] == [r["id"] for r in records]
    first = next(iter_rows(shards[0]))
    assert first["turns"][0]["messages"][1]["text"] == records[0]["turns"][0]["messages"][1]["text"]


def test_a_row_bigger_than_the_limit_gets_a_shard_of_its_own(tmp_path, records):
    _, shards = write(tmp_path, records[:4], 1024)
    assert [p.name for p in shards] == [f"train-{i:05d}-of-00004.parquet" for i in range(4)]
    assert [pq.ParquetFile(p).metadata.num_rows for p in shards] == [1, 1, 1, 1]


def test_under_the_limit_one_shard_holds_everything(tmp_path, records):
    _, shards = write(tmp_path, records[:10], 1 << 30)
    assert [p.name for p in shards] == ["train-00000-of-00001.parquet"]
    assert pq.ParquetFile(shards[0]).metadata.num_rows == 10


def test_an_empty_split_writes_no_file(tmp_path):
    assert SplitWriter(tmp_path, "test", LIMIT).close() == []
    assert list(tmp_path.iterdir()) == []


def test_config_writers_route_records_by_source_and_count_per_split(tmp_path):
    records = [debate(0, "train", [[("A", None)]], True), debate(1, "test", [[("B", None)]], False)]
    records += [arena(i, "train", "model_b", "x", "y") for i in range(3)]
    configs = {"all": ["chatbot_arena", "debate"], "debate": ["debate"], "chatbot_arena": ["chatbot_arena"]}
    writers = ConfigWriters(tmp_path, configs, 1 << 30)
    for record in records:
        writers.add(record)
    counts = writers.close()
    assert counts == {
        "all": {"train": 4, "validation": 0, "test": 1},
        "debate": {"train": 1, "validation": 0, "test": 1},
        "chatbot_arena": {"train": 3, "validation": 0, "test": 0},
    }
    assert sorted(p.name for p in (tmp_path / "debate").iterdir()) == [
        "test-00000-of-00001.parquet",
        "train-00000-of-00001.parquet",
    ]
    assert [r["id"] for r in iter_rows(tmp_path / "all" / "train-00000-of-00001.parquet")] == [
        records[0]["id"], *(r["id"] for r in records[2:])
    ]  # fmt: skip
