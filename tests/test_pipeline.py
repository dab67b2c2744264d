"""The build engine: layers declared and passed in, a record broken by a layer still accounted for, finishers
that write into the folder before it is swapped in, and a label that is a build with the judge as its only layer."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from llm_server import FakeChatServer, conversation_id, judgement
from realdata import REAL

from coord_bench.build import run_build
from coord_bench.build_folder import MANIFEST_FILE, REJECTS_FILE, iter_record_batches, read_manifest
from coord_bench.cli import main
from coord_bench.folder_swap import staging_path
from coord_bench.locate import local_source
from coord_bench.mappers.judge.mapper import JudgeMapper
from coord_bench.mappers.layer import Layer, LayerContext
from coord_bench.mappers.registry import LAYERS
from coord_bench.plan import BuildPlan
from coord_bench.validate import validation_errors


class BreaksOneRecord(Layer):
    """Writes a value the schema refuses into the first record of the train split it sees."""

    name = "breaks_one"
    reads = ("id", "split")
    writes = ("n_turns",)

    def __init__(self, context: LayerContext):
        self.context, self.broken, self.prepared_in = context, None, None

    def prepare(self, corpus) -> None:
        self.prepared_in = self.context.out_dir
        self.seen = sum(len(batch) for batch in corpus.batches())

    def apply(self, batch) -> None:
        for record in batch:
            if self.broken is None and record["split"] == "train":
                self.broken = record["id"]
                record["n_turns"] = -1  # the schema's minimum is 0

    def describe(self) -> dict:
        return {"broken": self.broken}


@pytest.fixture
def plan(tmp_path) -> BuildPlan:
    return BuildPlan([local_source("debate", REAL / "debate")], tmp_path / "out", limit=12)


def test_a_record_a_layer_breaks_is_rejected_and_counted_and_the_rest_is_written(plan):
    reference = run_build(plan)["sources"]["debate"]
    context = LayerContext(progress=False)
    layer = BreaksOneRecord(context)
    manifest = run_build(plan, [layer], context)
    entry = manifest["sources"]["debate"]

    assert layer.prepared_in == staging_path(Path(plan.out_dir).absolute())  # artifacts go to the staging folder
    assert layer.seen == reference["normalized"]
    assert entry["normalized"] == reference["normalized"] - 1 and entry["rejected"] == reference["rejected"] + 1
    assert entry["splits"]["train"] == reference["splits"]["train"] - 1
    assert entry["rejects_by_kind"]["schema"] == reference["rejects_by_kind"].get("schema", 0) + 1
    assert manifest["annotations"]["breaks_one"] == {"params": {}, "broken": layer.broken}
    rejects = [json.loads(line) for line in (Path(plan.out_dir) / REJECTS_FILE).read_text().splitlines()]
    late = [r for r in rejects if r["reason"].startswith("the annotated record breaks the schema")]
    assert len(late) == 1 and late[0]["field"] == "n_turns" and late[0]["kind"] == "schema"
    ids = {r["id"] for batch in iter_record_batches(plan.out_dir, manifest) for r in batch}
    assert layer.broken not in ids and len(ids) == entry["normalized"]
    assert list(validation_errors(Path(plan.out_dir))) == []  # the counts still add up


def test_finishers_write_into_the_finished_folder_before_its_manifest(plan):
    seen = {}

    def finish(work_dir: Path, manifest: dict) -> None:
        seen["had_manifest"] = (work_dir / MANIFEST_FILE).exists()
        (work_dir / "NOTE.txt").write_text(f"{manifest['totals']['normalized']} records")

    manifest = run_build(plan, finishers=[finish])
    assert seen == {"had_manifest": False}
    assert (Path(plan.out_dir) / "NOTE.txt").read_text() == f"{manifest['totals']['normalized']} records"


def verdict(request: dict) -> dict:
    h = int(hashlib.sha256((conversation_id(request) or "").encode()).hexdigest(), 16)
    return judgement(success=h % 11, level=("full", "partial", "none")[h % 3])


def test_a_label_applies_the_judge_once_per_record_and_no_other_layer(tmp_path, monkeypatch):
    """A label is a build over the built folder with the judge as its one layer: the tokens, latents and rules
    already on the rows are kept, not computed again."""
    out = tmp_path / "build"
    args = ["build", "--no-progress", "--out", str(out), "--limit", "4", "--set", "output.report=false"]
    assert main(args + ["--annotate", "tokens,rules", "--sources", "chatbot_arena,debate"]) == 0
    before = read_manifest(out)
    applied: dict[str, int] = {}
    for name, layer in LAYERS.items():
        def counting(self, batch, _apply=layer.apply, _name=name):
            applied[_name] = applied.get(_name, 0) + len(batch)
            return _apply(self, batch)

        monkeypatch.setattr(layer, "apply", counting)
    server = FakeChatServer(responder=verdict).start()
    try:
        label = ["label", str(out), "--base-url", server.base_url, "--judge-model", "fake-judge", "--no-progress",
                 "--max-calls", "4", "--set", f"cache_dir={tmp_path / 'cache'}"]  # fmt: skip
        assert main(label) == 0
    finally:
        server.stop()
    after = read_manifest(out)
    distinct = sum(1 for batch in iter_record_batches(out, after) for _ in batch)
    assert applied == {JudgeMapper.name: distinct}
    assert distinct == before["totals"]["normalized"]
    assert {k: v for k, v in after["annotations"].items() if k != "judge"} == before["annotations"]
    for config, info in before["configs"].items():  # every config rewritten with the same rows
        assert after["configs"][config]["splits"] == info["splits"]
    assert not staging_path(out).exists()
