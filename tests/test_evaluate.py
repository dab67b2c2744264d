"""``coord-bench evaluate`` on the real records: every task runs or says why, the report validates against its
schema, and no split group of any task's examples has rows in two splits (no leakage between train and test)."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator
from realdata import build_realdata

from coord_bench.build_folder import iter_record_batches, read_manifest
from coord_bench.cli import main
from coord_bench.evaluate import BENCHMARK_REPORT, SCHEMA_FILE, collect
from coord_bench.schema import load_schema
from coord_bench.tasks import TASKS


@pytest.fixture(scope="module")
def real_build(tmp_path_factory):
    return build_realdata(tmp_path_factory.mktemp("evaluate") / "build", "--annotate", "tokens")


def test_every_task_runs_on_the_real_records_or_says_why(real_build, capsys):
    assert main(["evaluate", str(real_build), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((real_build / BENCHMARK_REPORT).read_text())
    assert list(Draft202012Validator(load_schema(SCHEMA_FILE)).iter_errors(report)) == []
    assert set(report["tasks"]) == set(TASKS)
    manifest = json.loads((real_build / "build_manifest.json").read_text())
    assert report["recipe_hash"] == manifest["recipe_hash"]
    for name, task in report["tasks"].items():
        assert f"{name}: train {task['splits']['train']}" in printed
        if task["status"] == "unsupported":
            assert task["reason"] and f"not scored: {task['reason']}" in printed
        else:
            assert task["results"], name


def test_no_split_group_of_any_task_has_rows_in_two_splits(real_build):
    _, _, examples = collect(real_build, list(TASKS), progress=False)
    for name, rows in examples.items():
        splits: dict[str, set[str]] = {}
        for e in rows:
            splits.setdefault(e.group, set()).add(e.split)
        assert all(len(s) == 1 for s in splits.values()), name
    # the group is the source's key: the same DEBATE question (exampleId) or arena prompt is one group
    ids: dict[str, set[str]] = {}
    for batch in iter_record_batches(real_build, read_manifest(real_build)):
        for record in batch:
            key = record["task"]["input"] if record["source"] == "chatbot_arena" else record["source_id"]
            ids.setdefault(f"{record['source']}:{key}", set()).add(record["split_group"])
    assert all(len(groups) == 1 for groups in ids.values())


def test_an_unknown_task_and_a_predictions_file_without_one_task_are_refused(real_build, tmp_path, capsys):
    assert main(["evaluate", str(real_build), "--task", "nope"]) == 2
    assert "unknown task(s) nope; tasks: " in capsys.readouterr().err
    path = tmp_path / "p.jsonl"
    path.write_text("")
    assert main(["evaluate", str(real_build), "--predictions", str(path)]) == 2
    assert "--predictions scores one task: give exactly one --task" in capsys.readouterr().err
