"""The `JudgeMapper` layer (coord_bench/mappers/judge/mapper.py) in a build: `--annotate judge` finds it through
the registry and records its parameters, requests and rows in the manifest (fast fake server)."""

from __future__ import annotations

import json

from llm_server import FakeChatServer
from realdata import source_dir_args

from coord_bench.cli import main


def test_build_annotate_judge_runs_through_the_registry(tmp_path):
    server = FakeChatServer().start()
    try:
        out = tmp_path / "build"
        args = [
            "build", "--no-progress", "--out", str(out), "--limit", "2", "--sources",
            "chatbot_arena,multi_character_dialogue", "--annotate", "judge", "--judge-model", "fake-judge",
            "--max-calls", "3", "--max-cost-usd", "0.1", "--set", f"annotations.judge.base_url={server.base_url}",
            "--set", f"annotations.judge.cache_dir={tmp_path / 'cache'}",
        ]  # fmt: skip
        args += source_dir_args(("chatbot_arena", "multi_character_dialogue"))
        assert main(args) == 0
    finally:
        server.stop()
    manifest = json.loads((out / "build_manifest.json").read_text())
    judge = manifest["annotations"]["judge"]
    assert judge["params"]["max_calls"] == 3 and judge["params"]["models"] == ["fake-judge"]
    assert judge["requests"]["sent"] == 3 == server.received and judge["rows"] == {"not_sampled": 1, "ok": 3}
    assert manifest["recipe"]["annotations"]["judge"]["max_cost_usd"] == 0.1
