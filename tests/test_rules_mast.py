"""The MAST modes the rules fill (coord_bench/mappers/rules.py ``MAST_RULES``) on DEBATE conversations whose answer
flips, collapses and consensus are known by construction: a real DEBATE record with its solutions, flags and
outcome replaced. The labels go through the layer into a record that validates against the record schema."""

from __future__ import annotations

import copy

import pytest
from judge_helpers import records_of

from coord_bench.labels import LABEL_SCHEMA_VERSION, MAST_MODES, coordination_of, make_label, with_labels
from coord_bench.mappers.embeddings import Embedder
from coord_bench.mappers.layer import LayerContext
from coord_bench.mappers.rules import MAST_RULES, RULES_CANNOT_JUDGE, RulesConfig, RulesMapper
from coord_bench.schema import record_errors

RIGHT, WRONG = "B) No", "A) Yes"
TEXT = "I have weighed the arguments of the others and keep my answer: {}"


@pytest.fixture(scope="module")
def template(real_build):
    return next(r for r in records_of(real_build) if r["source"] == "debate")


@pytest.fixture(scope="module")
def rules(tmp_path_factory):
    embedder = Embedder(progress=False, cache_dir=tmp_path_factory.mktemp("emb"))  # flagged records embed nothing
    return RulesMapper(RulesConfig(), LayerContext(embedder=embedder))


def debate(template, rounds, final, decided=True, references=(RIGHT,), texts=None):
    """``template`` with one turn per entry of ``rounds`` (one (solution, agreement) per agent of the record)."""
    record = copy.deepcopy(template)
    agents = [a["agent_id"] for a in record["agents"]]
    record["turns"], n = [], 0
    for index, solutions in enumerate(rounds):
        messages = []
        for agent, (solution, agreement) in zip(agents, solutions, strict=True):
            text = (texts or {}).get((index, agent)) or f"Turn {index}: {TEXT.format(solution)} ({agent[:4]})"
            messages.append({**template["turns"][0]["messages"][0], "message_id": n, "agent_id": agent,
                             "text": text, "n_chars": len(text), "agreement": agreement, "solution": solution,
                             "visible_message_ids": list(range(n))})  # fmt: skip
            n += 1
        record["turns"].append({"index": index, "messages": messages})
    record["n_turns"], record["n_messages"] = len(rounds), n
    record["task"]["references"] = list(references)
    correct = None if not references else final == RIGHT
    record["outcome"].update(final_answer=final, answer_correct=correct, decision_success=decided)
    record["annotations"] = {"token_usage": None, "latents": None, "coordination": None}
    return record


def labelled(rules, record):
    rules.apply([record])
    assert list(record_errors(record)) == [], record_errors(record)
    labels = record["annotations"]["coordination"]["labels"]
    assert all(lb["provenance"] == "rule:coord_bench.rules@rules-v2" for lb in labels)
    assert all(lb["label_schema_version"] == LABEL_SCHEMA_VERSION and lb["confidence"] is None for lb in labels)
    return {lb["name"]: lb for lb in labels}


def test_a_collapse_from_a_correct_majority_is_incorrect_verification(template, rules):
    rounds = [[(RIGHT, False), (RIGHT, False), (WRONG, False)], [(WRONG, True), (WRONG, True), (WRONG, True)]]
    got = labelled(rules, debate(template, rounds, final=WRONG))
    assert got["mast:3.3"]["value"] == "yes" and got["mast:3.3"]["turn_index"] == 0
    assert got["mast:3.3"]["reason"].startswith("correct_majority_lost: turn 0's majority 'B) No' was correct")
    assert got["mast:2.5"]["value"] == "no"  # the correct answer was the majority once: not ignored, lost
    assert got["mast:3.1"]["value"] == "no"  # a decision was reached
    assert got["mast:1.5"]["value"] == "no"  # the only unanimous turn is the last
    assert got["mast:1.3"]["value"] == "no"
    assert not set(got) & {f"mast:{i}" for i in RULES_CANNOT_JUDGE}


def test_an_answer_flip_away_from_the_reference_is_found_with_its_agent_and_turn(template, rules):
    rounds = [
        [(RIGHT, False), (WRONG, False), (WRONG, False)],
        [(WRONG, False), (RIGHT, False), (RIGHT, False)],  # agent 0 flips from right to wrong here
        [(RIGHT, True), (RIGHT, True), (RIGHT, True)],
    ]
    record = debate(template, rounds, final=RIGHT)
    got = labelled(rules, record)
    assert got["mast:3.3"]["value"] == "yes" and got["mast:3.3"]["reason"].startswith("flip_to_wrong:")
    assert got["mast:3.3"]["turn_index"] == 1 and got["mast:3.3"]["agent_id"] == record["agents"][0]["agent_id"]
    assert got["mast:2.5"]["value"] == "no"


def test_a_correct_proposal_the_group_never_took_up_and_no_decision(template, rules):
    rounds = [[(RIGHT, False), (WRONG, False), (WRONG, False)], [(RIGHT, False), (WRONG, False), (WRONG, False)]]
    record = debate(template, rounds, final=WRONG, decided=False)
    got = labelled(rules, record)
    assert got["mast:2.5"]["value"] == "yes" and got["mast:2.5"]["turn_index"] == 0
    assert got["mast:2.5"]["agent_id"] == record["agents"][0]["agent_id"]
    assert got["mast:3.1"]["value"] == "yes" and got["mast:3.1"]["turn_index"] == 1
    assert got["mast:3.3"]["value"] == "no"  # no correct majority, nobody left the right answer


def test_going_on_after_consensus_and_a_repeated_message(template, rules):
    agent = template["agents"][1]["agent_id"]
    same = "My answer stays the same after reading everyone: B) No."
    rounds = [[(RIGHT, True)] * 3, [(RIGHT, True)] * 3]
    got = labelled(rules, debate(template, rounds, final=RIGHT, texts={(0, agent): same, (1, agent): same}))
    assert got["mast:1.5"]["value"] == "yes" and got["mast:1.5"]["turn_index"] == 0
    assert got["mast:1.3"]["value"] == "yes" and got["mast:1.3"]["agent_id"] == agent
    assert got["mast:1.3"]["turn_index"] == 1 and "repeats its message of turn 0" in got["mast:1.3"]["reason"]


def test_without_references_the_answer_rules_emit_nothing(template, rules):
    rounds = [[(RIGHT, False), (RIGHT, False), (WRONG, False)], [(WRONG, True)] * 3]
    got = labelled(rules, debate(template, rounds, final=WRONG, references=()))
    assert "mast:2.5" not in got and "mast:3.3" not in got  # omitted, not null: no rule applies
    assert {"mast:1.3", "mast:1.5", "mast:3.1"} <= set(got)


def test_a_rerun_replaces_the_rules_labels_and_keeps_the_others(template, rules):
    record = debate(template, [[(RIGHT, True)] * 3], final=RIGHT)
    human = make_label("success", "true", "human:ann1")
    judge = make_label("mast:1.1", "no", "llm:smollm2@0123456789ab")
    stale = make_label("mast:2.5", "yes", "rule:coord_bench.rules@rules-v0")
    record["annotations"]["coordination"] = {"rules": None, "judges": [], "consensus": None,
                                             "labels": [human, judge, stale]}  # fmt: skip
    rules.apply([record])
    rules.apply([record])
    labels = record["annotations"]["coordination"]["labels"]
    assert labels[:2] == [human, judge] and stale not in labels
    assert len([lb for lb in labels if lb["provenance"].startswith("rule:")]) == len(
        {lb["name"] for lb in labels if lb["provenance"].startswith("rule:")}
    )  # one label per mode, however often the layer ran


def test_the_rule_table_names_only_taxonomy_modes_and_the_rest_are_listed_as_not_judged():
    ids = [m.id for m in MAST_MODES]
    judged = {r.mode for r in MAST_RULES}
    assert judged <= set(ids) and set(RULES_CANNOT_JUDGE) == set(ids) - judged
    from importlib.resources import files

    method = files("coord_bench").joinpath("card_methods", "rules.md").read_text()
    for rule in MAST_RULES:  # the card's method text documents every rule with the mode it evidences
        assert f"`{rule.name}` -> {rule.mode} " in method
    import coord_bench.mappers.rules as module

    assert ", ".join(RULES_CANNOT_JUDGE[:-1]) + " and " + RULES_CANNOT_JUDGE[-1] in " ".join(module.__doc__.split())


def test_labels_that_read_back_null_take_new_labels():
    """A record whose labels column came back null from Parquet (no label was made) takes labels again."""
    annotations = {"coordination": {"rules": None, "judges": [], "consensus": None, "labels": None}}
    coordination = coordination_of(annotations)
    new = [make_label("mast:3.1", "yes", "rule:coord_bench.rules@v")]
    with_labels(coordination, "rule:", new)
    assert annotations["coordination"]["labels"] == new
