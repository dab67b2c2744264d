"""Sources read from a Hub dataset repo by id, through the real huggingface_hub client, on a loopback Hub."""

import json

import pyarrow.parquet as pq
from realdata import REAL

from coord_bench.cli import main
from coord_bench.locate import EMBEDDED_DIR, SourceLocationError, hub_source


def test_build_reads_debate_from_the_hub_with_a_pinned_revision(hub_server, tmp_path):
    sha = hub_server.add_dataset_repo("Multi-Agent-LLMs/DEBATE", REAL / "debate" / "hub")
    out = tmp_path / "out"
    code = main(
        [
            "build",
            "--no-progress",
            "--out",
            str(out),
            "--sources",
            "debate",
            "--from-hub",
            f"debate=Multi-Agent-LLMs/DEBATE@{sha}",
            "--set",
            "sources.debate.filters.configs=[reasoning_*]",
        ]
    )
    assert code == 0
    manifest = json.loads((out / "build_manifest.json").read_text())
    source = manifest["sources"]["debate"]
    assert source["dataset"] == "Multi-Agent-LLMs/DEBATE" and source["revision"] == sha
    # only the files of the matching configs were downloaded
    assert sorted(f["path"].split("/")[1] for f in source["files"]) == [
        "reasoning_expert_report_approval_voting",
        "reasoning_ipip_report_majority_consensus",
        "reasoning_nopersona_relay_simple_voting",
    ]
    records = [r for p in (out / "debate").glob("*.parquet") for r in pq.read_table(p).to_pylist()]
    assert len(records) == 3 and {r["provenance"]["source_revision"] for r in records} == {sha}
    assert hub_server.outbound_attempts == []


def test_gated_arena_without_token_says_what_to_do(hub_server):
    hub_server.add_dataset_repo(
        "lmsys/chatbot_arena_conversations", EMBEDDED_DIR / "chatbot_arena", gated=True, token="hf_secret_token_123"
    )
    try:
        hub_source("chatbot_arena")
    except SourceLocationError as err:
        message = str(err)
    else:
        raise AssertionError("a gated repo without a token must fail")
    assert "lmsys/chatbot_arena_conversations is gated" in message
    assert "Accept its terms" in message and "HF_TOKEN" in message


def test_gated_arena_with_token_builds(hub_server, tmp_path, monkeypatch, capsys):
    token = "hf_secret_token_123"
    hub_server.add_dataset_repo(
        "lmsys/chatbot_arena_conversations", EMBEDDED_DIR / "chatbot_arena", gated=True, token=token
    )
    monkeypatch.setenv("HF_TOKEN", token)
    out = tmp_path / "out"
    assert (
        main(["build", "--no-progress", "--out", str(out), "--sources", "chatbot_arena", "--from-hub", "chatbot_arena"])
        == 0
    )
    manifest = json.loads((out / "build_manifest.json").read_text())
    assert manifest["sources"]["chatbot_arena"]["normalized"] == 10
    everything = capsys.readouterr().out + "".join(p.read_text() for p in out.iterdir() if p.is_file())
    assert token not in everything


def test_missing_repo_is_a_clear_error(hub_server, capsys):
    assert main(["build", "--no-progress", "--sources", "debate", "--from-hub", "debate=nobody/nothing"]) == 2
    assert "the dataset repo nobody/nothing was not found" in capsys.readouterr().err


def test_the_recorded_recipe_pins_the_commit_that_was_read(hub_server, tmp_path):
    sha = hub_server.add_dataset_repo("Multi-Agent-LLMs/DEBATE", REAL / "debate" / "hub")
    out = tmp_path / "out"
    assert main(["build", "--no-progress", "--out", str(out), "--sources", "debate", "--from-hub", "debate"]) == 0
    manifest = json.loads((out / "build_manifest.json").read_text())
    [source] = manifest["recipe"]["sources"]
    assert source["location"] == {"hub": "Multi-Agent-LLMs/DEBATE", "revision": sha}
