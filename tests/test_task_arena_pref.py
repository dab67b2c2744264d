"""arena_pref: the baseline that matches a planted signal wins with an interval away from chance, noise stays at
chance, a user's predictions file scores exactly like the built-in baseline, and bad predictions are refused
with the line and the field."""

from __future__ import annotations

import json
import random

import pytest
from synthetic import arena, round_trip, write_build

from coord_bench.evaluate import collect, score_predictions, score_task
from coord_bench.tasks.base import PredictionError
from coord_bench.tasks.metrics import excludes

SPLITS = ("train", "validation", "test")


def battles(n: int, planted: bool, seed: int = 0) -> list[dict]:
    """Arena votes that follow response length (planted) or a coin (noise); model ids are random either way."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        la, lb = rng.randint(1, 30), rng.randint(1, 30)
        if planted:
            winner = "model_a" if la > lb + 2 else "model_b" if lb > la + 2 else rng.choice(["tie", "tie (bothbad)"])
        else:
            winner = rng.choice(["model_a", "model_b", "tie", "tie (bothbad)"])
        split = rng.choices(SPLITS, [0.6, 0.2, 0.2])[0]
        records.append(arena(i, split, winner, "yes " * la, "no " * lb, rng.choice("pqr"), rng.choice("pqr")))
    return records


def results(folder) -> dict:
    _, tasks, examples = collect(folder, ["arena_pref"], progress=False)
    entry = score_task(tasks["arena_pref"], examples["arena_pref"])
    assert entry["status"] == "ok", entry["reason"]
    return {(r["predictor"], r["subset"]): r for r in entry["results"]}, tasks["arena_pref"], examples["arena_pref"]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return write_build(tmp_path_factory.mktemp("planted") / "build", battles(240, planted=True))


def test_the_length_signal_is_found_by_longer_wins_and_not_by_the_prior_or_model_ids(planted):
    rows, _, _ = results(planted)
    longer = rows["longer_wins", "all"]["metrics"]
    assert excludes(longer["accuracy_decisive"], 0.5) and longer["accuracy_decisive"]["low"] > 0.5
    assert longer["log_loss"]["high"] < rows["prior", "all"]["metrics"]["log_loss"]["low"]  # clearly better
    ids = rows["bradley_terry_model_ids", "all"]["metrics"]["accuracy_decisive"]
    assert ids["low"] <= 0.5 <= ids["high"]  # model identity carries nothing here
    assert longer["swap_consistency"]["value"] == 1.0  # it judges the responses, not their positions
    assert rows["prior", "all"]["metrics"]["swap_consistency"]["value"] == 0.0  # it always picks one position
    assert "reason" in rows["judge", "all"]  # an unlabelled build has no judge verdicts: said, not crashed


def test_noise_leaves_every_interval_at_chance(tmp_path):
    rows, _, _ = results(write_build(tmp_path / "noise", battles(240, planted=False, seed=1)))
    for predictor in ("longer_wins", "bradley_terry_model_ids", "minilm_logreg"):
        accuracy = rows[predictor, "all"]["metrics"]["accuracy_decisive"]
        assert accuracy["low"] <= 0.5 <= accuracy["high"], predictor


def test_a_predictions_file_of_a_baseline_scores_exactly_like_the_baseline(planted, tmp_path):
    rows, _, _ = results(planted)
    scored = round_trip(planted, "arena_pref", "longer_wins", tmp_path / "longer.jsonl")
    built_in = [{k: v for k, v in r.items() if k != "predictor"} for (p, _), r in rows.items() if p == "longer_wins"]
    assert scored == built_in


def test_bad_predictions_name_the_line_and_the_field(planted, tmp_path):
    _, _, examples = results(planted)
    test_ids = sorted(e.id for e in examples if e.split == "test")
    good = {"p_model_a": 0.5, "p_model_b": 0.3, "p_tie": 0.2}
    cases = [
        ({"p_model_a": 0.5, "p_model_b": 0.3, "p_tie": 0.3},
         "line 2: fields p_model_a, p_model_b, p_tie: the probabilities sum to 1.1"),
        ({"p_model_a": "0.5", "p_model_b": 0.3, "p_tie": 0.2}, "line 2: field 'p_model_a': expected a probability"),
        ({"p_model_a": 0.5, "p_model_b": 0.5}, "line 2: field 'p_tie' is missing"),
        ({**good, "p_model_a_swapped": 1.0}, "line 2: field 'p_model_b_swapped' is missing"),
    ]  # fmt: skip
    for bad, message in cases:
        path = tmp_path / "bad.jsonl"
        lines = [{"id": test_ids[0], **good}, {"id": test_ids[1], **bad}]
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        with pytest.raises(PredictionError, match=message.replace("(", r"\(").replace(")", r"\)")):
            score_predictions(planted, "arena_pref", path, progress=False)
    path.write_text(json.dumps({"id": "chatbot_arena:nope", **good}) + "\n")
    with pytest.raises(PredictionError, match="line 1: id 'chatbot_arena:nope' is not a test example"):
        score_predictions(planted, "arena_pref", path, progress=False)
    path.write_text(json.dumps({"id": test_ids[0], **good}) + "\n")
    with pytest.raises(PredictionError, match=f"{len(test_ids) - 1} test example\\(s\\) of task arena_pref have no"):
        score_predictions(planted, "arena_pref", path, progress=False)


def test_the_card_section_is_rendered_from_the_benchmark_report(planted):
    from coord_bench.evaluate import card_section, run_benchmark

    report = run_benchmark(planted, ["arena_pref"], progress=False)
    section = card_section(planted)
    row = next(r for r in report["tasks"]["arena_pref"]["results"] if r["predictor"] == "longer_wins")
    est = row["metrics"]["log_loss"]
    assert f"| longer_wins | all | {est['value']:.3f} [{est['low']:.3f}, {est['high']:.3f}] (n={est['n']})" in section
    assert report["tasks"]["arena_pref"]["definition"] in section
    assert "coord-bench evaluate DIR --task NAME --predictions FILE" in section
