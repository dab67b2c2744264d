"""Every adapter over every real file in ../shared/realdata, asserting on real field values."""

import gzip
import json

import pytest
from realdata import REAL

from coord_bench.schema import record_errors
from coord_bench.sources import ADAPTERS, Reject, SourceSpec

ROOTS = {
    "chatbot_arena": REAL / "chatbot_arena",
    "debate": REAL / "debate",
    "multi_character_dialogue": REAL / "multi_character_dialogue",
}


def normalize_all(name):
    adapter = ADAPTERS[name](SourceSpec(name, name, ROOTS[name], str(ROOTS[name])))
    out = []
    for raw in adapter.iter_raw():
        record = adapter.normalize(raw)
        assert list(record_errors(record)) == [], raw.locator
        out.append((raw, record))
    return adapter, out


def test_arena_rows_keep_real_values():
    raw_rows = [json.loads(line) for line in (ROOTS["chatbot_arena"] / "train.jsonl").read_text().splitlines()]
    _, records = normalize_all("chatbot_arena")
    assert len(records) == len(raw_rows) == 73
    by_id = {r["source_id"]: r for _, r in records}
    for raw in raw_rows:
        rec = by_id[raw["question_id"]]
        assert rec["id"] == f"chatbot_arena:{raw['question_id']}"
        assert rec["outcome"]["winner"] == raw["winner"]
        assert rec["outcome"]["judge"] == raw["judge"]
        assert [a["model"] for a in rec["agents"]] == [None, raw["model_a"], raw["model_b"]]
        assert rec["task"]["input"] == raw["conversation_a"][0]["content"]
        texts = [m["text"] for m in rec["turns"][0]["messages"]]
        assert texts == [
            raw["conversation_a"][0]["content"],
            raw["conversation_a"][1]["content"],
            raw["conversation_b"][1]["content"],
        ]
        assert rec["timestamp"] == raw["tstamp"]
        assert rec["safety"]["toxic_chat_roberta_probability"] == raw["toxic_chat_tag"]["roberta-large"]["probability"]
        assert rec["safety"]["toxic_chat_t5_score"] == raw["toxic_chat_tag"]["t5-large"]["score"]
        assert json.loads(rec["extras"]) == {"anony": raw["anony"]}
    first = by_id["58210e39b3fd4441a2bd4a518bb44c2d"]
    assert first["agents"][1]["model"] == "chatglm-6b" and first["outcome"]["winner"] == "model_b"
    assert first["turns"][0]["messages"][0]["n_chars"] == len("What is the difference between OpenCL and CUDA?")


def test_debate_hub_and_raw_mallm_files():
    _, records = normalize_all("debate")
    by_file = {raw.file: rec for raw, rec in records}
    assert len(records) == 10  # 8 hub configs + raw MALLM + older raw MALLM
    for raw, rec in records:
        source = json.loads((ROOTS["debate"] / raw.file).read_text())
        source = source[raw.index] if isinstance(source, list) else source
        memory = source["globalMemory"]
        assert rec["n_messages"] == len(memory)
        assert rec["n_turns"] == len({m["turn"] for m in memory}) == source["turns"]
        flat = [m for turn in rec["turns"] for m in turn["messages"]]
        assert [m["message_id"] for m in flat] == sorted(m["message_id"] for m in memory)
        assert [m["text"] for m in flat] == [m["message"] for m in sorted(memory, key=lambda m: m["message_id"])]
        assert rec["outcome"]["decision_success"] == source["decisionSuccess"]
        assert rec["task"]["references"] == source["references"]
        assert [a["model"] for a in rec["agents"]] == [p["model"] for p in source["personas"]]
        assert rec["source_id"] == source["exampleId"]
    hub = by_file["hub/data/critical_ipip_relay_unanimity_consensus/critical_ipip_relay_unanimity_consensus.json"]
    assert hub["source_config"] == "critical_ipip_relay_unanimity_consensus"
    assert hub["protocol"] == {
        "interaction": "multi_agent_debate",
        "paradigm": "relay",
        "decision_protocol": "unanimity_consensus",
        "persona_mode": "ipip",
        "task_variant": "critical",
        "persona_diversity": hub["protocol"]["persona_diversity"],
        "rounds": 7,
    }
    # the last turn settles on "A) Yes" while the reference is "B) No": no decision, and wrong
    assert hub["outcome"]["final_answer"] == "A) Yes"
    assert hub["outcome"]["final_answer_source"] == "last_turn_majority"
    assert hub["outcome"]["answer_correct"] is False and hub["outcome"]["decision_success"] is False
    report = by_file["hub/data/reasoning_expert_report_approval_voting/reasoning_expert_report_approval_voting.json"]
    drafts = [m for t in report["turns"] for m in t["messages"] if m["kind"] == "draft"]
    assert drafts and all(m["agreement"] is None for m in drafts)
    debate = by_file[
        "hub/data/simple_nopersona_debate_majority_consensus/simple_nopersona_debate_majority_consensus.json"
    ]
    assert debate["n_messages"] == 35 and debate["agents"][0]["name"] == "Participant 1"
    older = by_file["mallm_raw_older/object_13.json"]
    assert older["outcome"]["final_answer"] == "I" and older["outcome"]["final_answer_source"] == "finalAnswer"
    assert older["outcome"]["answer_correct"] is True
    assert older["protocol"]["decision_protocol"] == "consensus_voting" and older["source_config"] is None
    assert json.loads(older["extras"])["datasetId"] == "7417"
    raw_mallm = next(r for f, r in by_file.items() if f.startswith("mallm_raw/"))
    assert raw_mallm["source_config"] == "critical_expert_memory_approval_voting"
    assert set(json.loads(raw_mallm["extras"])) == {
        "dataset",
        "datasetId",
        "coordinatorId",
        "votesEachTurn",
        "challengedAnswers",
        "metadata",
        "judgements",
        "judged_solutions",
    }
    # one question, two files (hub and raw output): one split
    same = [r for _, r in records if r["source_id"] == "8003bc68-cec5-4b1d-a39e-8d26a28f0f60"]
    assert len(same) == 2 and len({r["split"] for r in same}) == 1 and len({r["id"] for r in same}) == 2


def test_dialogue_rows_keep_speakers_and_lines():
    with gzip.open(ROOTS["multi_character_dialogue"] / "train.jsonl.gz", "rt") as handle:
        raw_rows = [json.loads(line) for line in handle]
    _, records = normalize_all("multi_character_dialogue")
    assert len(records) == len(raw_rows) == 9
    for raw, (_, rec) in zip(raw_rows, records, strict=False):
        assert rec["task"]["setting"] == raw["setting"]
        assert [a["name"] for a in rec["agents"]] == list(raw["characters"])
        names = {a["agent_id"]: a["name"] for a in rec["agents"]}
        assert [(names[t["messages"][0]["agent_id"]], t["messages"][0]["text"]) for t in rec["turns"]] == [
            (line["from"], line["message"]) for line in raw["conversation"]
        ]
        assert rec["outcome"]["setting_after"] == raw["setting after interaction"]
        assert rec["id"].startswith("multi_character_dialogue:")


@pytest.mark.parametrize("name", list(ROOTS))
def test_every_source_field_is_mapped_kept_or_dropped(name):
    """A field map test: each top-level field of each real record is a column, in extras, or on the drop list."""
    adapter, records = normalize_all(name)
    documented = set(adapter.FIELD_MAP) | set(adapter.KEPT_IN_EXTRAS) | set(adapter.DROPPED)
    for raw, record in records:
        undocumented = set(raw.value) - documented
        assert not undocumented, f"{raw.locator}: undocumented fields {undocumented}"
        extras = json.loads(record["extras"])
        assert set(extras) <= set(adapter.KEPT_IN_EXTRAS)
        for key in set(raw.value) - set(adapter.FIELD_MAP) - set(adapter.DROPPED):
            assert extras[key] == raw.value[key]


def test_unknown_fields_land_in_extras():
    spec = SourceSpec("debate", "debate", ROOTS["debate"], "x")
    adapter = ADAPTERS["debate"](spec)
    raw = next(adapter.iter_raw())
    value = dict(raw.value, brandNewField={"x": 1})
    record = adapter.normalize(type(raw)(raw.file, raw.index, value))
    assert json.loads(record["extras"])["brandNewField"] == {"x": 1}


def test_reject_is_an_exception_with_a_field():
    err = Reject("field 'winner': bad", field="winner", kind="unknown_value")
    assert err.field == "winner" and err.kind == "unknown_value" and "winner" in str(err)
