"""``export --format seed-json``: one example per arena conversation, its first round, and the token block."""

from __future__ import annotations

import json

import pytest
from synthetic import arena, debate, write_build

from coord_bench.build_folder import read_manifest
from coord_bench.export import export_seed_json, seed_example, seed_token_usage
from coord_bench.schema import record_errors
from coord_bench.sources.base import message


def two_round_arena() -> dict:
    """An arena conversation of two rounds whose tokens annotation has run (counts chosen by hand)."""
    record = arena(7, "train", "model_b", "Paris.", "It is Paris.", model_a="alpha", model_b="beta",
                   prompt="Capital of France?")  # fmt: skip
    second = {**record["turns"][0], "index": 1, "messages": [
        message(3, "user", "prompt", "And of Spain?"), message(4, "model_a", "response", "Madrid."),
        message(5, "model_b", "response", "Madrid, of course."),
    ]}  # fmt: skip
    record["turns"].append(second)
    tokens = {0: 4, 1: 2, 2: 4, 3: 4, 4: 2, 5: 5}
    for turn in record["turns"]:
        for m in turn["messages"]:
            m["n_tokens"] = tokens[m["message_id"]]
    record.update(n_turns=2, n_messages=6)
    record["protocol"]["rounds"] = 2
    record["annotations"]["token_usage"] = {
        "encoding": "cl100k_base", "encoding_source": "tiktoken", "total_tokens": 21, "input_tokens": 8,
        "output_tokens": 13, "tool_tokens": 0, "tokens_per_turn": 10.5, "input_output_ratio": 8 / 13,
        "coordination_overhead": None,
        "per_turn": [{"index": 0, "n_tokens": 10, "input_tokens": 4, "output_tokens": 6, "tool_tokens": 0},
                     {"index": 1, "n_tokens": 11, "input_tokens": 4, "output_tokens": 7, "tool_tokens": 0}],
        "per_agent": [{"agent_id": "user", "n_messages": 2, "n_tokens": 8},
                      {"agent_id": "model_a", "n_messages": 2, "n_tokens": 4},
                      {"agent_id": "model_b", "n_messages": 2, "n_tokens": 9}],
    }  # fmt: skip
    assert list(record_errors(record)) == []
    return record


def test_the_token_block_takes_per_round_counts_and_lengths_from_the_messages():
    usage = seed_token_usage(two_round_arena())
    assert usage["turns"] == [
        {"turn_number": 1, "timestamp_offset": 0.0, "input_tokens": 4, "input_length": 18,
         "response_a_tokens": 2, "response_a_length": 6, "response_b_tokens": 4, "response_b_length": 12},
        {"turn_number": 2, "timestamp_offset": None, "input_tokens": 4, "input_length": 13,
         "response_a_tokens": 2, "response_a_length": 7, "response_b_tokens": 5, "response_b_length": 18},
    ]  # fmt: skip
    assert (usage["total_input_tokens"], usage["total_output_tokens_a"], usage["total_output_tokens_b"]) == (8, 4, 9)
    assert usage["total_tokens"] == 21
    assert usage["message_lengths"] == {"input": [18, 13], "response_a": [6, 7], "response_b": [12, 18]}
    assert usage["communication_efficiency"] == {
        "avg_tokens_per_turn": 10.5,
        "input_output_ratio": 8 / 13,
        "coordination_overhead": None,
    }


def test_the_token_block_is_null_when_the_tokens_layer_did_not_run():
    assert seed_token_usage(arena(0, "train", "tie", "x", "y")) is None


def test_an_example_holds_the_first_round_the_vote_and_the_build_date():
    record = two_round_arena()
    example = seed_example(record, {"built_at": "2025-03-04T05:06:07+00:00"})
    assert example["input"] == "Capital of France?"
    context = example["context"]
    assert (context["model_a"], context["model_b"], context["winner"]) == ("alpha", "beta", "model_b")
    assert (context["response_a"], context["response_b"], context["turn"]) == ("Paris.", "It is Paris.", 2)
    assert context["language"] == record["task"]["language"] and context["judge"] == record["outcome"]["judge"]
    assert example["output"] == "Winner: model_b"
    assert example["metadata"] == {
        "dataset_source": record["provenance"]["source_dataset"],
        "annotation_version": record["provenance"]["builder_version"],
        "annotation_date": "2025-03-04",
    }


def test_export_writes_only_the_arena_conversations_as_one_json_document(tmp_path):
    records = [two_round_arena(), arena(1, "test", "tie", "x", "y"), debate(0, "train", [[("A", None)]], True)]
    folder = write_build(tmp_path / "build", records)
    target = tmp_path / "seed.json"
    assert export_seed_json(folder, target, config="all") == 2  # the debate record is skipped
    examples = json.loads(target.read_text(encoding="utf-8"))["examples"]
    assert sorted(e["output"] for e in examples) == ["Winner: model_b", "Winner: tie"]
    assert examples[0]["metadata"]["annotation_date"] == read_manifest(folder)["built_at"][:10]

    assert export_seed_json(folder, target, config="debate") == 0
    assert json.loads(target.read_text()) == {"examples": []}


def test_export_of_an_unknown_config_lists_the_configs(tmp_path):
    folder = write_build(tmp_path / "build", [arena(0, "train", "tie", "x", "y")])
    with pytest.raises(ValueError, match="config 'arena' is not in .*; configs: all, chatbot_arena"):
        export_seed_json(folder, tmp_path / "seed.json", config="arena")
    assert not (tmp_path / "seed.json").exists()
