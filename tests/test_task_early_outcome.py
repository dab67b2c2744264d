"""early_outcome: a planted first-turn vote signal is found early and honestly; noise is not; files round-trip."""

import json
import random

import pytest
from realdata import build_realdata
from synthetic import debate, round_trip, write_build

from coord_bench.evaluate import collect, run_benchmark, score_predictions, score_task
from coord_bench.tasks.base import PredictionError, TaskContext, split_examples
from coord_bench.tasks.early_outcome import FRACTIONS, EarlyOutcome, field_name

SPLITS = ["train"] * 110 + ["validation"] * 50 + ["test"] * 90
LETTERS = "ABCD"


def corpus(planted: bool, seed: int = 0) -> list[dict]:
    """Debates of 4 turns and 3 agents. Planted: a unanimous first turn is correct 90% of the time, a split
    first turn 10%; later turns are random, so only the first turn tells. Noise: correctness is a coin."""
    rng = random.Random(seed)
    records = []
    for i, split in enumerate(SPLITS):
        unanimous = rng.random() < 0.5
        first = ["A"] * 3 if unanimous else rng.sample(LETTERS, 3)
        later = [[rng.choice(LETTERS) for _ in range(3)] for _ in range(3)]
        turns = [[(s, None) for s in first], *[[(s, rng.random() < 0.5) for s in t] for t in later]]
        correct = (rng.random() < 0.9) == unanimous if planted else rng.random() < 0.5
        records.append(debate(i, split, turns, correct, decided=rng.random() < 0.6))
    return records


def examples(records, layers=frozenset()):
    task = EarlyOutcome(TaskContext(lambda: pytest.fail("these tests embed nothing"), layers=layers))
    return task, [task.example(r) for r in records]


def rows_of(task, items, baseline):
    train, validation, test = split_examples(items)
    predictions = task.baselines()[baseline](train, validation, test)
    return {row["subset"]: row for row in task.score(test, predictions)}


def test_prefix_features_see_only_the_prefix():
    record = debate(0, "test", [[("A", None)] * 3, [("B", True)] * 3, [("B", True)] * 3,
                                [("C", True), ("B", True), ("B", True)]], True)  # fmt: skip
    filtered = [[float(t), 0.0] for t in range(4)]
    record["annotations"]["latents"] = {"method": "x", "model_hash": "h", "k": 2, "filtered": filtered,
                                        "smoothed": [[9.0, 9.0]] * 4}  # fmt: skip
    task, (example,) = examples([record])
    prefixes = example.features["prefixes"]
    assert [p["latent"] for p in prefixes] == filtered  # the filtered state of the prefix's last turn, never smoothed
    assert [p["changes"] for p in prefixes] == [0, 3, 3, 4]  # f=0.25 -> 1 turn, 0.5 -> 2, 0.75 -> 3, 1.0 -> 4
    assert [p["last_vote_share"] for p in prefixes] == [1.0, 1.0, 1.0, pytest.approx(2 / 3)]
    assert all(p["first_vote_share"] == 1.0 and p["first_vote_entropy"] == 0.0 for p in prefixes)
    assert prefixes[0]["chars"] < prefixes[1]["chars"] < prefixes[3]["chars"]


def test_planted_first_turn_vote_share_wins_early_with_an_interval_above_chance():
    task, items = examples(corpus(planted=True))
    vote = rows_of(task, items, "first_turn_vote_share")
    for fraction in FRACTIONS:
        auroc = vote[f"answer_correct@f={fraction}"]["metrics"]["auroc"]
        assert auroc["low"] > 0.5 and auroc["value"] > 0.75, (fraction, auroc)
    assert vote["answer_correct@earliness"]["metrics"]["auroc_area"]["low"] > 0.5
    prior = rows_of(task, items, "class_prior")["answer_correct@f=0.25"]["metrics"]
    later = rows_of(task, items, "last_turn_vote_share")["answer_correct@f=1.0"]["metrics"]["auroc"]
    assert prior["auroc"]["value"] == 0.5  # a constant ranks nothing
    assert vote["answer_correct@f=0.25"]["metrics"]["brier"]["value"] < prior["brier"]["value"]
    assert later["value"] < vote["answer_correct@f=1.0"]["metrics"]["auroc"]["low"]  # the last turn is noise here
    # decision_success was drawn at random: no baseline may find it
    assert vote["decision_success@f=0.25"]["metrics"]["auroc"]["low"] < 0.5


def test_pure_noise_intervals_include_chance():
    task, items = examples(corpus(planted=False, seed=1))
    for baseline in ("first_turn_vote_share", "last_turn_vote_entropy", "answer_changes"):
        rows = rows_of(task, items, baseline)
        for fraction in FRACTIONS:
            auroc = rows[f"answer_correct@f={fraction}"]["metrics"]["auroc"]
            assert auroc["low"] <= 0.5 <= auroc["high"], (baseline, fraction, auroc)  # constant at f=0.25: 0.5
        area = rows["answer_correct@earliness"]["metrics"]["auroc_area"]
        assert area["low"] <= 0.5 <= area["high"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("early") / "build"
    cache = tmp_path_factory.mktemp("cache")
    return write_build(folder, corpus(planted=True), {"embeddings": {"params": {"cache_dir": str(cache)}}})


def test_report_has_every_baseline_and_reasons_for_absent_layers(built):
    entry = run_benchmark(built, ["early_outcome"], progress=False)["tasks"]["early_outcome"]
    assert entry["status"] == "ok" and entry["splits"] == {"train": 110, "validation": 50, "test": 90}
    by = {}
    for row in entry["results"]:
        by.setdefault(row["predictor"], []).append(row)
    assert "annotations.latents" in by["latent_filtered"][0]["reason"]
    assert "annotations.token_usage" in by["tokens_so_far"][0]["reason"]
    embedding = {r["subset"]: r for r in by["mean_embedding_so_far"]}
    assert embedding["answer_correct@f=0.25"]["metrics"]["auroc"]["value"] is not None
    assert embedding["answer_correct@f=0.25"]["setting"]["C_chosen_on"] == "validation log loss"
    on_disk = json.loads((built / "reports" / "benchmark.json").read_text())
    assert on_disk["tasks"]["early_outcome"] == entry


def test_a_baselines_own_predictions_file_scores_the_same(built, tmp_path):
    report = run_benchmark(built, ["early_outcome"], progress=False)["tasks"]["early_outcome"]
    for baseline in ("first_turn_vote_share", "mean_embedding_so_far"):
        scored = round_trip(built, "early_outcome", baseline, tmp_path / f"{baseline}.jsonl")
        expected = [r for r in report["results"] if r["predictor"] == baseline]
        assert [r["metrics"] for r in scored] == [r["metrics"] for r in expected]
        assert [r["subset"] for r in scored] == [r["subset"] for r in expected]


def test_bad_predictions_name_the_line_and_field(built, tmp_path):
    _, _, found = collect(built, ["early_outcome"], progress=False)
    ids = sorted(e.id for e in found["early_outcome"] if e.split == "test")
    good = {field_name("answer_correct", f): 0.5 for f in FRACTIONS}
    cases = {
        "above one": ({**good, field_name("answer_correct", 0.5): 1.5}, "'p_answer_correct_f0.5'"),
        "a string": ({**good, field_name("answer_correct", 1.0): "0.3"}, "'p_answer_correct_f1.0'"),
        "a fraction left out": ({k: v for k, v in good.items() if "f0.75" not in k}, "'p_answer_correct_f0.75'"),
        "unknown field": ({**good, "p_answer_correct_f0.3": 0.2}, "'p_answer_correct_f0.3'"),
    }
    for name, (bad, field) in cases.items():
        path = tmp_path / "bad.jsonl"
        lines = [{"id": i, **good} for i in ids]
        lines[1] = {"id": ids[1], **bad}
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        with pytest.raises(PredictionError, match=r"line 2: .*" + field.replace(".", r"\.")) as err:
            score_predictions(built, "early_outcome", path, progress=False)
        assert str(path) in str(err.value), name


def test_inconsistent_targets_across_lines_are_refused():
    task, items = examples(corpus(planted=True))
    _, _, test = split_examples(items)
    both = {field_name(t, f): 0.5 for t in ("answer_correct", "decision_success") for f in FRACTIONS}
    predictions = {e.id: dict(both) for e in test}
    predictions[test[3].id] = {k: v for k, v in both.items() if "decision" not in k}
    with pytest.raises(PredictionError, match=test[3].id):
        task.score(test, predictions)


def test_real_records_run_or_say_why(tmp_path):
    out = build_realdata(tmp_path / "real")
    entry = score_task(*_real_task(out))
    assert entry["status"] in ("ok", "unsupported")
    assert entry["status"] == "ok" or "test example" in entry["reason"] or "both classes" in entry["reason"]


def _real_task(out):
    _, tasks, found = collect(out, ["early_outcome"], progress=False)
    return tasks["early_outcome"], found["early_outcome"]
