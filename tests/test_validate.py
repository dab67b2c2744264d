"""``validation_errors``: a valid build has none; each kind of damage is one message naming where it is."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from synthetic import arena, debate, write_build

from coord_bench.build_folder import NotABuildError
from coord_bench.validate import validation_errors


@pytest.fixture
def folder(tmp_path):
    records = [arena(i, "train", "model_a", f"a{i}", f"b{i}") for i in range(4)]
    records += [debate(0, "test", [[("A", None)]], True)]
    return write_build(tmp_path / "build", records)


def edit_manifest(folder, change) -> None:
    path = folder / "build_manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


def test_a_valid_build_has_no_errors(folder):
    assert list(validation_errors(folder)) == []
    assert list(validation_errors(str(folder))) == []  # a path given as text works too


def test_a_tampered_row_is_reported_with_its_file_row_id_and_field(folder):
    shard = folder / "chatbot_arena" / "train-00000-of-00001.parquet"
    table = pq.read_table(shard)
    rows = table.to_pylist()
    rows[2]["outcome"]["winner"] = "model_c"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    errors = list(validation_errors(folder))
    assert len(errors) == 1, errors  # the copy of the row in the "all" config is untouched
    assert errors[0].startswith("chatbot_arena/train-00000-of-00001.parquet row 2 (id 'chatbot_arena:synthetic-2'):")
    assert "outcome.winner: 'model_c' is not one of" in errors[0]


def test_counts_that_do_not_add_up_are_reported(folder):
    edit_manifest(folder, lambda m: m["sources"]["debate"].update(read=5))
    assert list(validation_errors(folder)) == [
        f"{folder}/build_manifest.json: source debate: read 5 != normalized 1 + rejected 0 + filtered 0"
    ]


def test_a_missing_shard_is_reported_for_its_config(folder):
    (folder / "debate" / "test-00000-of-00001.parquet").unlink()
    assert list(validation_errors(folder)) == [
        f"{folder}/debate: no Parquet shards for config debate",
        f"{folder}/debate: 0 rows in the shards, but the manifest says 1",
    ]


def test_more_rows_than_the_manifest_says_are_reported(folder):
    edit_manifest(folder, lambda m: m["configs"]["all"].update(num_rows=4))
    assert list(validation_errors(folder)) == [f"{folder}/all: 5 rows in the shards, but the manifest says 4"]


def test_a_folder_without_a_manifest_is_not_a_build(tmp_path):
    with pytest.raises(NotABuildError):
        list(validation_errors(tmp_path))
