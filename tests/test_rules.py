"""Rule-based coordination labels on the real records of ../shared/realdata, checked against their formulas."""

from __future__ import annotations

import copy
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from realdata import SOURCES, build_realdata

from coord_bench.answers import answers_match
from coord_bench.labels import LABEL_SCHEMA_VERSION, MAST_MODES
from coord_bench.mappers.embeddings import Embedder
from coord_bench.mappers.layer import LayerContext
from coord_bench.mappers.rules import MAST_RULES, RulesMapper, final_messages, flag_agreement
from coord_bench.schema import DECISIVE_WINNERS


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_realdata(tmp_path_factory.mktemp("rules") / "out", "--annotate", "rules")


@pytest.fixture(scope="module")
def rows(built):
    return [r for p in sorted((built / "all").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


@pytest.fixture(scope="module")
def embedder():
    return Embedder(progress=False)  # the same model and cache as the build


def rules(record):
    return record["annotations"]["coordination"]["rules"]


def by_source(rows, source):
    return [r for r in rows if r["source"] == source]


def test_every_record_is_labelled_and_the_formulas_are_recorded(built, rows):
    assert len(rows) == 92 and {r["source"] for r in rows} == set(SOURCES)
    for record in rows:
        labels = rules(record)
        assert labels["version"] == "rules-v2"
        assert labels["agreement_level"] in ("full", "partial", "none", None)
        turns = {t["index"] for t in record["turns"]}
        assert all(e["turn_index"] in turns for e in labels["events"])
        assert record["annotations"]["coordination"]["judges"] == []  # the judge did not run
    manifest = json.loads((built / "build_manifest.json").read_text())
    assert list(manifest["annotations"]) == ["tokens", "embeddings", "rules"]  # rules need and follow both
    described = manifest["annotations"]["rules"]
    assert described["parameters"] == {
        "max_token_overhead": 0.5,
        "agreement_full_similarity": 0.85,
        "agreement_partial_similarity": 0.6,
    }
    assert sum(described["success"].values()) == 92  # counted once per record, however often apply ran
    card = (built / "README.md").read_text()
    assert "answer_correct, else decision_success" in card and "Quality per 1,000 tokens" in card
    assert "### Failure modes (MAST)" in card and "arXiv:2503.13657" in card  # the taxonomy, from labels.py
    assert all(f"| `{m.label}` | {m.category} | {m.name} | {m.definition} |" in card for m in MAST_MODES)


def test_rule_mast_labels_on_real_records_carry_their_provenance_and_evidence(rows):
    judged = {f"mast:{r.mode}" for r in MAST_RULES}
    for record in rows:
        assert rules(record)["provenance"] == "rule:coord_bench.rules@rules-v2"
        assert rules(record)["label_schema_version"] == LABEL_SCHEMA_VERSION
        labels = record["annotations"]["coordination"]["labels"]
        assert {lb["name"] for lb in labels} <= judged and len(labels) == len({lb["name"] for lb in labels})
        turns = {t["index"] for t in record["turns"]}
        for label in labels:
            assert label["provenance"] == "rule:coord_bench.rules@rules-v2" and label["value"] in ("yes", "no")
            assert label["value"] == "no" or (label["turn_index"] in turns and label["reason"])
        if record["source"] != "debate":  # no solutions, flags or decision: only the repetition rule applies
            assert {lb["name"] for lb in labels} <= {"mast:1.3"}
    debate = [lb for r in by_source(rows, "debate") for lb in r["annotations"]["coordination"]["labels"]]
    assert {lb["name"] for lb in debate} >= {"mast:3.1", "mast:3.3"}
    assert any(lb["name"] == "mast:3.3" and lb["value"] == "yes" for lb in debate)  # a real collapse is in the data


def test_debate_success_is_answer_correct_else_decision_success(rows):
    debate = by_source(rows, "debate")
    assert len(debate) == 10
    for record in debate:
        outcome = record["outcome"]
        expected = outcome["answer_correct"] if outcome["answer_correct"] is not None else outcome["decision_success"]
        assert rules(record)["success"] is expected
    assert any(r["outcome"]["answer_correct"] is False and rules(r)["success"] is False for r in debate)
    assert any(r["outcome"]["decision_success"] is False and rules(r)["success"] is True for r in debate)


def test_arena_success_is_a_decisive_vote_within_the_token_overhead(rows):
    arena = by_source(rows, "chatbot_arena")
    for record in arena:
        winner = record["outcome"]["winner"]
        overhead = record["annotations"]["token_usage"]["coordination_overhead"]
        expected = False if winner not in DECISIVE_WINNERS else (None if overhead is None else overhead <= 0.5)
        assert rules(record)["success"] is expected
    assert {rules(r)["success"] for r in arena} >= {True, False}


def test_efficiency_is_success_per_thousand_tokens(rows):
    for record in rows:
        labels, total = rules(record), record["annotations"]["token_usage"]["total_tokens"]
        if labels["success"] is None:
            assert labels["efficiency"] is None
        else:
            assert labels["efficiency"] == pytest.approx((1.0 if labels["success"] else 0.0) / (total / 1000))


def test_arena_agreement_is_the_embedding_similarity_of_a_and_b(rows, embedder):
    arena = by_source(rows, "chatbot_arena")
    levels = set()
    for record in arena:
        final = {m["agent_id"]: m["text"] for m in record["turns"][-1]["messages"]}
        a, b = final["model_a"], final["model_b"]
        labels = rules(record)
        if not a.strip() or not b.strip():
            assert labels["final_similarity"] in (0.0, None)
            continue
        va, vb = embedder.vectors([a, b])
        similarity = float(va @ vb / (np.linalg.norm(va) * np.linalg.norm(vb)))
        assert labels["final_similarity"] == pytest.approx(similarity, abs=1e-5)
        expected = "full" if similarity >= 0.85 else "partial" if similarity >= 0.6 else "none"
        assert labels["agreement_level"] == expected
        assert labels["final_agreement_fraction"] is None
        levels.add(expected)
    assert levels == {"full", "partial", "none"}


def test_thresholds_and_overhead_are_parameters(rows, embedder):
    arena = copy.deepcopy(by_source(rows, "chatbot_arena"))
    strict = RulesMapper.from_params(
        {"agreement_full_similarity": 0.99, "max_token_overhead": 1.0}, LayerContext(embedder=embedder)
    )
    before = {r["id"]: rules(r) for r in arena}
    strict.apply(arena)
    for record in arena:
        similarity = before[record["id"]]["final_similarity"]
        if similarity is not None:
            expected = "full" if similarity >= 0.99 else "partial" if similarity >= 0.6 else "none"
            assert rules(record)["agreement_level"] == expected
        assert rules(record)["success"] is (record["outcome"]["winner"] in DECISIVE_WINNERS)
    assert sum(rules(r)["agreement_level"] == "full" for r in arena) < sum(
        b["agreement_level"] == "full" for b in before.values()
    )
    assert strict.describe()["parameters"]["agreement_full_similarity"] == 0.99
    with pytest.raises(ValueError, match="agreement_partial_similarity"):
        RulesMapper.from_params(
            {"agreement_partial_similarity": 0.9, "agreement_full_similarity": 0.8}, LayerContext(embedder=embedder)
        )


def test_debate_agreement_comes_from_the_final_flags_and_solutions(rows):
    debate = {r["source_config"]: r for r in by_source(rows, "debate") if r["source_config"]}
    full = debate["simple_nopersona_memory_majority_consensus"]  # final turn: all agree, all "A) Yes"
    assert rules(full)["agreement_level"] == "full" and rules(full)["final_agreement_fraction"] == 1.0
    flags_off = debate["critical_expert_memory_approval_voting"]  # all flags false, yet the same answer
    assert rules(flags_off)["agreement_level"] == "partial" and rules(flags_off)["final_agreement_fraction"] == 0.0
    split = debate["critical_ipip_relay_unanimity_consensus"]  # "B) No", "A) Yes", "A) Yes", no agreement
    solutions = [m["solution"] for m in split["turns"][-1]["messages"]]
    assert not all(answers_match(s, solutions[0]) for s in solutions)
    assert rules(split)["agreement_level"] == "partial"
    for record in debate.values():
        assert rules(record)["final_similarity"] is None  # flags, not embeddings

    def turn(flags, solutions):
        return [{"agreement": f, "solution": s} for f, s in zip(flags, solutions, strict=True)]

    assert flag_agreement(turn([False, False], ["A) Yes", "B) No"])) == "none"
    assert flag_agreement(turn([True, True, None], ["b) no.", "B", "B) No"])) == "full"  # answers_match
    assert flag_agreement(turn([True, False], ["A", "A"])) == "partial"
    assert flag_agreement(turn([None, None], [None, ""])) is None


def test_debate_events_follow_the_agreement_flags(rows):
    record = next(
        r for r in by_source(rows, "debate") if r["source_config"] == "reasoning_ipip_report_majority_consensus"
    )
    events = {(e["turn_index"], e["event"]) for e in rules(record)["events"]}
    # flags (drafts excluded): t0 F F, t1-t4 T T, t5 F T, t6 T T; all solutions "A) Yes"
    assert {(t, "draft") for t in range(7)} <= events
    assert (0, "disagreement") in events and (1, "agreement_reached") in events
    assert (5, "agreement_broken") in events and (6, "agreement_reached") in events
    assert (5, "consensus") not in events and {(t, "consensus") for t in (1, 2, 3, 4, 6)} <= events
    assert not any(e == "decision" for _, e in events)  # decisionSuccess is false here
    decided = next(r for r in by_source(rows, "debate") if r["outcome"]["decision_success"])
    assert (decided["turns"][-1]["index"], "decision") in {
        (e["turn_index"], e["event"]) for e in rules(decided)["events"]
    }


def test_dialogue_handoffs_and_participation_heuristic(rows):
    dialogue = by_source(rows, "multi_character_dialogue")
    assert len(dialogue) == 9
    for record in dialogue:
        speakers = [t["messages"][0]["agent_id"] for t in record["turns"]]
        changes = sum(a != b for a, b in zip(speakers, speakers[1:], strict=False))
        handoffs = [e for e in rules(record)["events"] if e["event"] == "handoff"]
        assert len(handoffs) == changes
        roster = {a["agent_id"] for a in record["agents"] if a["in_source_roster"]}
        overhead = record["annotations"]["token_usage"]["coordination_overhead"]
        assert rules(record)["success"] is (roster <= set(speakers) and overhead <= 0.5)
        last_two = final_messages(record)
        assert len(last_two) == 2 and last_two[0]["agent_id"] != last_two[1]["agent_id"]
        assert rules(record)["final_similarity"] is not None
