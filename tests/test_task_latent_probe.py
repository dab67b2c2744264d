"""latent_probe: planted latent signal gives a gain, noise and random labels give none, files round-trip."""

import json
import random

import numpy as np
import pytest
from realdata import build_realdata
from synthetic import debate, round_trip, write_build

from coord_bench.evaluate import collect, run_benchmark, score_predictions
from coord_bench.mappers.embeddings import Embedder
from coord_bench.mappers.latents import LDSConfig, PCAReducedRank
from coord_bench.mappers.latents.layer import ARTIFACT, sequence_of
from coord_bench.tasks.base import PredictionError, split_examples
from coord_bench.tasks.latent_probe import _labels

K = 4
SPLITS = ["train"] * 120 + ["validation"] * 60 + ["test"] * 100


def corpus(planted: bool, seed: int) -> list[dict]:
    """Debates whose texts carry no label; their latent states' first coordinate does when ``planted``."""
    rng = random.Random(seed)
    records = []
    for i, split in enumerate(SPLITS):
        turns = [[(rng.choice("AB"), rng.random() < 0.5) for _ in range(3)] for _ in range(rng.choice((2, 3)))]
        records.append(debate(i, split, turns, correct=rng.random() < 0.5, decided=rng.random() < 0.5))
    return records


def plant(records, folder, cache, planted: bool, seed: int):
    """Fit a real latent model on the records' texts (its artifact serves the shuffle control), then give each
    record states: the label plus noise in coordinate 0 when ``planted``, pure noise otherwise."""
    embedder = Embedder(cache_dir=cache, progress=False)
    sequences = [sequence_of(r, embedder) for r in records]
    train = [s for s, r in zip(sequences, records, strict=True) if r["split"] == "train"]
    model = PCAReducedRank(LDSConfig(k=K, seed=0)).fit(train)
    model_hash = model.save(folder / ARTIFACT)
    rng = np.random.default_rng(seed)
    for record in records:
        states = rng.normal(size=(record["n_turns"], K))
        if planted:
            states[:, 0] += 1.5 * record["outcome"]["answer_correct"]
        record["annotations"]["latents"] = {"method": model.method, "model_hash": model_hash, "k": K,
                                            "smoothed": states.tolist(), "filtered": states.tolist()}  # fmt: skip
    layers = {"embeddings": {"params": {"cache_dir": str(cache)}}, "latents": {"params": {"k": K}}}
    return write_build(folder, records, layers)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def planted(tmp_path_factory, cache):
    folder = tmp_path_factory.mktemp("planted") / "build"
    folder.mkdir()
    folder = plant(corpus(True, 0), folder, cache, planted=True, seed=0)
    return folder, run_benchmark(folder, ["latent_probe"], progress=False)["tasks"]["latent_probe"]


def rows(entry):
    return {(r["predictor"], r["subset"]): r for r in entry["results"]}


def test_planted_latents_show_a_gain_over_the_best_cheap_features(planted):
    _, entry = planted
    assert entry["status"] == "ok", entry["reason"]
    found = rows(entry)
    gain = found[("best_plus_latents", "answer_correct")]
    assert gain["metrics"]["gain"]["low"] > 0 and gain["setting"]["verdict"] == "gain"
    assert gain["setting"]["best_baseline"] in ("embedding_pca", "metadata")  # no token layer in this build
    assert gain["setting"]["latent_states"].startswith("smoothed")
    assert found[("latents", "answer_correct")]["metrics"]["auroc"]["low"] > 0.5
    for cheap in ("embedding_pca", "metadata"):
        auroc = found[(cheap, "answer_correct")]["metrics"]["auroc"]
        assert auroc["low"] < 0.5 < auroc["high"]
    assert "annotations.token_usage" in found[("tokens", "all")]["reason"]


def test_controls_random_labels_and_shuffled_turns(planted):
    _, entry = planted
    found = rows(entry)
    control = found[("best_plus_latents", "random_answer_correct")]
    assert control["setting"]["verdict"] == "no evidence"
    assert control["metrics"]["gain"]["low"] <= 0 <= control["metrics"]["gain"]["high"]
    # the re-inferred, turn-shuffled states come from the texts, which carry no label: no gain, and the planted
    # latents beat them
    shuffled = found[("best_plus_shuffled_latents", "answer_correct")]
    assert shuffled["setting"]["verdict"] == "no evidence"
    assert found[("latents_vs_shuffled", "answer_correct")]["setting"]["verdict"] == "gain"
    # decision_success was a coin: nothing anywhere
    assert found[("best_plus_latents", "decision_success")]["setting"]["verdict"] == "no evidence"


def test_random_labels_keep_the_class_balance_and_are_fixed(planted):
    folder, _ = planted
    _, _, found = collect(folder, ["latent_probe"], progress=False)
    _, _, test = split_examples(found["latent_probe"])
    rows_real, real = _labels(test, "answer_correct")
    rows_random, random_labels = _labels(test, "random_answer_correct")
    assert (rows_real == rows_random).all() and real.sum() == random_labels.sum()
    assert (real != random_labels).any()
    assert (_labels(list(reversed(test)), "random_answer_correct")[1][::-1] == random_labels).all()


def test_pure_noise_latents_give_no_evidence(tmp_path, cache):
    folder = tmp_path / "noise"
    folder.mkdir()
    plant(corpus(False, 1), folder, cache, planted=False, seed=1)
    found = rows(run_benchmark(folder, ["latent_probe"], progress=False)["tasks"]["latent_probe"])
    for target in ("answer_correct", "decision_success", "random_answer_correct"):
        gain = found[("best_plus_latents", target)]
        assert gain["metrics"]["gain"]["low"] <= 0 <= gain["metrics"]["gain"]["high"], target
        assert gain["setting"]["verdict"] == "no evidence"


def test_a_baselines_own_predictions_file_scores_the_same(planted, tmp_path):
    folder, entry = planted
    for baseline in ("best_plus_latents", "embedding_pca"):
        scored = round_trip(folder, "latent_probe", baseline, tmp_path / f"{baseline}.jsonl")
        expected = [r for r in entry["results"] if r["predictor"] == baseline]
        assert [r["metrics"] for r in scored] == [r["metrics"] for r in expected]
        assert [r.get("setting", {}).get("verdict") for r in scored] == [r["setting"].get("verdict") for r in expected]


def test_bad_predictions_name_the_line_and_field(planted, tmp_path):
    folder, _ = planted
    _, _, found = collect(folder, ["latent_probe"], progress=False)
    ids = sorted(e.id for e in found["latent_probe"] if e.split == "test")
    cases = {
        "above one": ({"p_answer_correct": 1.2}, "'p_answer_correct'"),
        "a bool": ({"p_answer_correct": True}, "'p_answer_correct'"),
        "unknown outcome": ({"p_winner": 0.2}, "'p_winner'"),
        "a reference alone": ({"ref_answer_correct": 0.2}, "'ref_answer_correct'"),
    }
    for name, (bad, field) in cases.items():
        path = tmp_path / f"{name}.jsonl"
        lines = [{"id": i, "p_answer_correct": 0.5} for i in ids]
        lines[2] = {"id": ids[2], **bad}
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        with pytest.raises(PredictionError, match=f"line 3: .*{field}"):
            score_predictions(folder, "latent_probe", path, progress=False)


def test_real_records_run_or_say_why(tmp_path, monkeypatch):
    monkeypatch.setenv("COORD_BENCH_CACHE", str(tmp_path / "cache"))
    base = run_benchmark(build_realdata(tmp_path / "base"), ["latent_probe"], progress=False)["tasks"]["latent_probe"]
    assert base["status"] == "unsupported" and "annotations.latents is null" in base["reason"]
    out = build_realdata(tmp_path / "latents", "--annotate", "latents")
    entry = run_benchmark(out, ["latent_probe"], progress=False)["tasks"]["latent_probe"]  # schema-checked
    assert entry["status"] == "ok", entry["reason"]
    found = rows(entry)
    # the real arena conversations have one turn each: shuffling them changes nothing, so no gain over shuffled
    assert found[("latents_vs_shuffled", "arena_model_a")]["metrics"]["gain"]["value"] == 0.0
    assert all(r["metrics"] or r.get("reason") for r in entry["results"])
