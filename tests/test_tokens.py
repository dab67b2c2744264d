"""Token counts equal tiktoken's own on real texts; totals and efficiency metrics follow the documented formulas."""

import json

import pyarrow.parquet as pq
import pytest
import tiktoken
from realdata import REAL, build_realdata

from coord_bench.cli import main
from coord_bench.mappers.tokens import TokensMapper, load_encoding, normalized_gini


@pytest.fixture(scope="module")
def real_build(tmp_path_factory):
    return build_realdata(tmp_path_factory.mktemp("tok") / "out", "--annotate", "tokens")


def records(out, config="all"):
    return [r for p in sorted((out / config).glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


def test_counts_equal_tiktoken_on_real_texts(real_build):
    encoding, source = load_encoding()
    assert encoding.name == "cl100k_base" and source
    # the bundled file is the genuine encoding: tiktoken checked its sha256; spot-check known ids too
    assert encoding.encode("hello world") == [15339, 1917]
    reference = tiktoken.Encoding(
        name="ref",
        pat_str=encoding._pat_str,
        mergeable_ranks=encoding._mergeable_ranks,
        special_tokens=encoding._special_tokens,
    )
    checked = 0
    for record in records(real_build):
        for turn in record["turns"]:
            for message in turn["messages"]:
                assert message["n_tokens"] == len(reference.encode_ordinary(message["text"]))
                checked += 1
    assert checked > 500


def test_totals_and_formulas(real_build):
    for record in records(real_build):
        usage = record["annotations"]["token_usage"]
        roles = {a["agent_id"]: a["role"] for a in record["agents"]}
        messages = [m for t in record["turns"] for m in t["messages"]]
        output = sum(m["n_tokens"] for m in messages if roles[m["agent_id"]] != "user")
        assert usage["output_tokens"] == output
        assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
        assert usage["tokens_per_turn"] == pytest.approx(usage["total_tokens"] / record["n_turns"])
        assert usage["input_output_ratio"] == pytest.approx(usage["input_tokens"] / output)
        assert sum(a["n_tokens"] for a in usage["per_agent"]) == sum(m["n_tokens"] for m in messages)
        assert [t["index"] for t in usage["per_turn"]] == [t["index"] for t in record["turns"]]
        if record["source"] == "chatbot_arena":
            per = {a["agent_id"]: a["n_tokens"] for a in usage["per_agent"]}
            assert usage["input_tokens"] == per["user"]
            a, b = per["model_a"], per["model_b"]
            assert usage["coordination_overhead"] == pytest.approx(abs(a - b) / (a + b))
        else:  # no user turns: the input is the task
            assert usage["input_tokens"] > 0 or not any(record["task"].values())


def test_normalized_gini_generalizes_to_n_agents():
    assert normalized_gini([5, 5, 5, 5]) == 0
    assert normalized_gini([0, 0, 12]) == 1
    assert normalized_gini([10, 30]) == pytest.approx(20 / 40)
    assert normalized_gini([7]) is None and normalized_gini([0, 0]) is None


def test_special_token_strings_count_as_text():
    mapper = TokensMapper()
    assert mapper.count(["<|endoftext|>"]) == [len(mapper.encoding.encode_ordinary("<|endoftext|>"))]


def test_seed_export_matches_the_seed_layout_field_for_field(real_build, tmp_path):
    target = tmp_path / "seed.json"
    assert main(["export", str(real_build), "--format", "seed-json", "--out", str(target)]) == 0
    exported = {(e["input"], e["context"]["response_a"]): e for e in json.loads(target.read_text())["examples"]}
    reference = json.loads((REAL / "chatbot_arena" / "seed_layout_data_out.json").read_text())["examples"]
    matched = 0
    for ref in reference:
        ours = exported.get((ref["input"], ref["context"]["response_a"]))
        if ours is None:
            continue
        matched += 1
        usage, ref_usage = ours["context"]["token_usage"], ref["context"]["token_usage"]
        assert set(usage) == set(ref_usage)
        assert set(usage["turns"][0]) == set(ref_usage["turns"][0])
        assert set(usage["communication_efficiency"]) == set(ref_usage["communication_efficiency"])
        assert set(usage["message_lengths"]) == set(ref_usage["message_lengths"])
        first = usage["turns"][0]
        assert first["input_length"] == len(ref["input"]) == ref_usage["turns"][0]["input_length"]
        assert first["response_a_length"] == len(ref["context"]["response_a"])
        assert (
            usage["total_tokens"]
            == usage["total_input_tokens"] + usage["total_output_tokens_a"] + usage["total_output_tokens_b"]
        )
        assert set(ours) == set(ref) - {"dataset", "split"} | {"metadata"}
    assert matched >= 50
