"""The labels report (coord_bench/label_report.py): the judge against the arena's voters and the near-duplicate
consistency on fixtures whose answers are computed by hand, and the card section rendered from the file."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
from judge_helpers import records_of

from coord_bench.cli import main
from coord_bench.label_report import REPORT, Conversation, arena_judge, card_section, same_prompt
from coord_bench.labels import make_label


def _arena_row(template, n, winner, preferred, consistent, len_a, len_b):
    record = copy.deepcopy(template)
    record["id"] = f"chatbot_arena:fixture{n}"
    record["outcome"]["winner"] = winner
    for turn in record["turns"]:
        for message in turn["messages"]:
            message["n_tokens"] = {"model_a": len_a, "model_b": len_b}.get(message["agent_id"], 7)
    judge = {"model": "tiny", "status": "ok", "preferred": preferred, "position_consistent": consistent}
    record["annotations"]["coordination"] = {"rules": None, "judges": [judge], "consensus": None}
    return Conversation(record)


def test_judge_against_the_arena_voters_matches_a_hand_computation(real_build):
    template = next(r for r in records_of(real_build) if r["source"] == "chatbot_arena")
    rows = [  # vote, judge's preferred, swap-consistent, tokens of A, tokens of B
        _arena_row(template, 1, "model_a", "A", True, 100, 105),  # agree; matched (5 <= 10.5)
        _arena_row(template, 2, "model_b", "A", False, 100, 200),  # disagree; unmatched
        _arena_row(template, 3, "tie", "tie", None, 50, 52),  # agree; matched
        _arena_row(template, 4, "tie (bothbad)", "B", True, 80, 40),  # disagree; unmatched
        _arena_row(template, 5, "model_b", "B", True, 100, 300),  # agree; unmatched
        _arena_row(template, 6, "model_a", "tie", None, 90, 99),  # disagree; matched (9 <= 9.9)
    ]
    entry = arena_judge(rows)["tiny"]
    # with ties: rows 1, 3, 5 agree: 3/6
    assert entry["n"] == 6 and entry["agreement_with_ties"]["value"] == pytest.approx(3 / 6)
    # without ties (vote and verdict both for a side): rows 1 (agree), 2 (no), 5 (agree): 2/3
    assert entry["agreement_without_ties"]["value"] == pytest.approx(2 / 3)
    assert entry["agreement_without_ties"]["n"] == 3
    # judged in both orders: rows 1, 2, 4, 5; consistent: 1, 4, 5: 3/4
    assert entry["position_consistency"]["value"] == pytest.approx(3 / 4)
    # length-matched rows 1, 3, 6 agree on 1, 3: 2/3; the unmatched rows 2, 4, 5 on 5 only: 1/3
    matched = entry["length_matched"]
    assert matched["pairs"] == 3 and matched["agreement_with_ties"]["value"] == pytest.approx(2 / 3)
    assert matched["agreement_unmatched_with_ties"]["value"] == pytest.approx(1 / 3)
    # decisive verdicts (1 A<B, 2 A<B, 4 B<A, 5 B>A): only 5 picks the longer: 1/4
    assert entry["judge_prefers_longer"]["value"] == pytest.approx(1 / 4)
    # decisive votes (1 A<B, 2 B>A, 5 B>A, 6 A<B): 2 and 5 picked the longer: 2/4
    assert entry["voters_prefer_longer"]["value"] == pytest.approx(2 / 4)
    assert entry["length_unit"] == ["tokens"]
    ci = entry["agreement_with_ties"]
    assert ci["low"] <= 0.5 <= ci["high"] and ci["groups"] == 6


def test_near_duplicates_share_of_agreeing_pairs(real_build):
    template = next(r for r in records_of(real_build) if r["source"] == "debate")
    rows = []
    for n, (success, level) in enumerate([(True, "full"), (True, "full"), (False, "full"), (True, "none")]):
        record = copy.deepcopy(template)
        record["id"] = f"debate:fixture{n}"
        if n == 3:  # another question: in no pair
            record["task"]["input"] = "A different question?"
        else:  # the same question up to case and spacing
            record["task"]["input"] = "  " + (record["task"]["input"].upper() if n else record["task"]["input"])
        rules = {"success": success, "agreement_level": level}
        # a label only some conversations have: the rules' collapse evidence on 0 (yes) and 2 (no), none on 1
        labels = [make_label("mast:3.3", "yes" if n == 0 else "no", "rule:coord_bench.rules@v")] if n in (0, 2) else []
        record["annotations"]["coordination"] = {"rules": rules, "judges": [], "consensus": None, "labels": labels}
        rows.append(Conversation(record))
    found = same_prompt(rows)
    # one group of 3: pairs (0,1) agree on success, (0,2) and (1,2) do not: 1/3; all 3 agree on the level
    assert found["groups"] == 1 and found["pairs"] == 3
    assert found["labels"]["rules:success"]["agree"]["value"] == pytest.approx(1 / 3)
    assert found["labels"]["rules:agreement_level"]["agree"]["value"] == pytest.approx(1.0)
    # mast:3.3 only on 0 and 2, which disagree: one pair, agreement 0
    assert found["labels"]["rules:mast:3.3"]["pairs"] == 1
    assert found["labels"]["rules:mast:3.3"]["agree"]["value"] == pytest.approx(0.0)


def test_the_card_section_is_rendered_from_labels_json(real_build, tmp_path):
    folder = tmp_path / "build"
    shutil.copytree(real_build, folder)
    assert main(["report", str(folder)]) == 0  # writes reports/labels.json and the card
    report = json.loads((folder / REPORT).read_text(encoding="utf-8"))
    assert report["near_duplicates"]["embedding_cosine"] == {"skipped": "the build has no embeddings layer"}
    assert "## How good are the labels" in (folder / "README.md").read_text(encoding="utf-8")
    report["arena_judge_vs_voters"]["by_model"]["fixture-judge"] = {
        key: {"value": 0.4321, "low": 0.3, "high": 0.5, "n": 12}
        for key in ("agreement_with_ties", "agreement_without_ties", "position_consistency", "judge_prefers_longer")
    } | {"length_matched": {"agreement_with_ties": {"value": 0.1234, "low": None, "high": None, "n": 4}}}
    (folder / REPORT).write_text(json.dumps(report), encoding="utf-8")
    section = card_section(folder)
    assert "| `fixture-judge` | 0.432 [0.300, 0.500] (n=12) |" in section and "0.123 (n=4)" in section
    assert "arXiv:2306.05685" in section and "proves the plumbing, not the quality" in section


def _reviewed(template, n, rules_success, human, consensus_success=None):
    from coord_bench.labels import make_label

    record = copy.deepcopy(template)
    record["id"] = f"debate:fixture{n}"
    labels = [make_label("success", value, f"human:{who}") for who, value in human.items()]
    consensus = None if consensus_success is None else {"success": consensus_success}
    record["annotations"]["coordination"] = {
        "rules": {"success": rules_success, "agreement_level": None}, "judges": [], "consensus": consensus,
        "labels": labels,
    }  # fmt: skip
    return Conversation(record)


def test_rules_and_judge_against_the_annotators_majority(real_build):
    from coord_bench.label_report import machine_vs_humans

    template = next(r for r in records_of(real_build) if r["source"] == "debate")
    rows = [
        _reviewed(template, 1, True, {"alice": "true", "bob": "true"}, consensus_success=True),  # agree
        _reviewed(template, 2, False, {"alice": "false", "bob": "true"}),  # annotators tie: left out
        _reviewed(template, 3, True, {"alice": "false", "bob": "false"}),  # disagree
        _reviewed(template, 4, False, {"alice": "false", "bob": "false", "carol": "true"}),  # agree (2 of 3)
        _reviewed(template, 5, None, {"alice": "true"}),  # no rule label
    ]
    rules = machine_vs_humans(rows, "rules")["success"]
    # rows 1, 3, 4: rules T T F, majority T F F: accuracy 2/3; p_o = 2/3, p_e = (2*1 + 1*2)/9 = 4/9,
    # kappa = (6/9 - 4/9) / (5/9) = 2/5
    assert (rules["reviewed"], rules["n"], rules["no_human_majority"], rules["no_machine_label"]) == (5, 3, 1, 1)
    assert rules["accuracy"]["value"] == pytest.approx(2 / 3) and rules["cohen_kappa"]["value"] == pytest.approx(0.4)
    judge = machine_vs_humans(rows, "judge")["success"]
    assert judge["n"] == 1 and judge["accuracy"]["value"] == 1.0
    assert judge["cohen_kappa"]["value"] is None and judge["cohen_kappa"]["reason"] == "one class only"


def test_near_duplicates_by_embedding_cosine(real_build):
    import numpy as np

    from coord_bench.label_report import COSINE_THRESHOLD, similar_embeddings

    template = next(r for r in records_of(real_build) if r["source"] == "debate")
    rows = [_reviewed(template, n, success, {}) for n, success in enumerate([True, False, True])]
    angle = np.arccos(0.99)  # rows 0 and 1 at cosine 0.99 (>= the threshold); row 2 orthogonal to both
    vectors = dict(zip([r.id for r in rows], [np.array([1.0, 0, 0]), np.array([np.cos(angle), np.sin(angle), 0]),
                                              np.array([0, 0, 1.0])], strict=True))  # fmt: skip
    assert COSINE_THRESHOLD <= 0.99
    found = similar_embeddings(rows, vectors)
    assert found["pairs"] == 1 and found["labels"]["rules:success"]["agree"]["value"] == 0.0  # True vs False


def test_conversation_embeddings_come_from_the_layer_cache(tmp_path):
    import numpy as np
    from realdata import source_dir_args

    from coord_bench.label_report import conversation_vectors
    from coord_bench.mappers.embeddings import Embedder

    out = tmp_path / "b"
    args = ["build", "--no-progress", "--out", str(out), "--limit", "2", "--sources", "debate",
            "--annotate", "embeddings", "--set", "output.report=false", *source_dir_args(("debate",))]  # fmt: skip
    assert main(args) == 0
    records = records_of(out)
    found = conversation_vectors(out, json.loads((out / "build_manifest.json").read_text()))
    assert set(found) == {r["id"] for r in records}
    encoder = Embedder(progress=False)
    for record in records:  # the model itself on the messages (not the cache), their mean at unit length
        direct = encoder.encode([m["text"] for t in record["turns"] for m in t["messages"]]).mean(axis=0)
        assert float(found[record["id"]] @ (direct / np.linalg.norm(direct))) == pytest.approx(1.0, abs=1e-4)
