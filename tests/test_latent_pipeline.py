"""The latent layer inside a build: one model fitted on train, applied to every turn, saved, reused, reported."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from coord_bench.cli import main
from coord_bench.mappers.latents import load_model


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COORD_BENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


WITH_TEST = ["--set", "splits.ratios={train: 0.5, validation: 0.2, test: 0.3}"]  # the sample's test split is empty


def build(out, *args):
    assert main(["build", "--no-progress", "--out", str(out), "--annotate", "latents", *WITH_TEST, *args]) == 0
    return json.loads((out / "build_manifest.json").read_text())


def records(out):
    return {r["id"]: r for p in sorted((out / "all").glob("*.parquet")) for r in pq.read_table(p).to_pylist()}


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, cache):
    out = tmp_path_factory.mktemp("latents") / "out"
    return out, build(out)


def test_every_turn_gets_smoothed_and_filtered_states(fitted, capsys):
    out, manifest = fitted
    model = load_model(out / "artifacts" / "latent_model")
    info = manifest["annotations"]["latents"]
    assert info["fitted"] is True and info["model_hash"] == model.model_hash
    k = info["k"]
    assert k == model.config.k == info["quality"]["selection"]["chosen"]["k"]  # chosen on the validation split
    for record in records(out).values():
        latents = record["annotations"]["latents"]
        assert latents["k"] == k and latents["model_hash"] == model.model_hash and latents["method"] == "delta-lds-em"
        assert np.array(latents["smoothed"]).shape == np.array(latents["filtered"]).shape == (record["n_turns"], k)
        # the last filtered state uses every turn, as the smoothed one does
        np.testing.assert_allclose(latents["smoothed"][-1], latents["filtered"][-1], atol=1e-6)
    assert main(["validate", str(out)]) == 0


def test_quality_report_compares_with_baselines_and_probes(fitted):
    out, _ = fitted
    report = json.loads((out / "reports" / "latent_quality.json").read_text())
    assert set(report["next_turn_r2"]) >= {"model", "train_mean", "copy_last", "pca_no_dynamics"}
    assert report["stability"]["max_angle_deg"] >= 0
    assert set(report["probes"]) == {"arena_winner", "debate_answer_correct", "debate_decision_success"}
    assert report["train_sequences"] + report["validation_sequences"] + report["held_out_sequences"] == len(
        records(out)
    )
    assert report["verdicts"][0].startswith("beats copy-last on held-out turns: ")


def test_set_overrides_reach_the_latent_model(tmp_path, cache):
    manifest = build(
        tmp_path / "k12", "--set", "annotations.latents.k=12", "--set", "annotations.latents.method=pca_rrr"
    )
    assert manifest["annotations"]["latents"]["params"]["k"] == 12
    for record in records(tmp_path / "k12").values():
        assert record["annotations"]["latents"]["k"] == 12
        assert record["annotations"]["latents"]["method"] == "pca-rrr"
        assert len(record["annotations"]["latents"]["smoothed"][0]) == 12


def test_a_saved_model_is_applied_without_refitting(fitted, tmp_path, cache):
    out, manifest = fitted
    reused = build(tmp_path / "reuse", "--latent-model", str(out / "artifacts" / "latent_model"))
    assert reused["annotations"]["latents"]["fitted"] is False
    assert reused["annotations"]["latents"]["model_hash"] == manifest["annotations"]["latents"]["model_hash"]
    first, second = records(out), records(tmp_path / "reuse")
    for record_id, record in first.items():
        assert second[record_id]["annotations"]["latents"] == record["annotations"]["latents"]


def test_refits_with_the_same_seed_are_identical(fitted, tmp_path, cache):
    out, manifest = fitted
    again = build(tmp_path / "again")
    assert again["annotations"]["latents"]["model_hash"] == manifest["annotations"]["latents"]["model_hash"]


def test_past_the_memory_budget_the_arrays_spill_to_the_staging_folder_and_give_the_same_states(
    fitted, tmp_path, cache
):
    out, _ = fitted
    small = tmp_path / "small"
    model = ["--latent-model", str(out / "artifacts" / "latent_model")]
    manifest = build(small, *model, "--set", "annotations.latents.memory_budget_mb=0.05")
    memory = manifest["annotations"]["latents"]["quality"]["memory"]
    assert memory["spilled"] is True and memory["sequence_mb"] > 0.05
    for split in ("train", "validation", "test"):  # the reports' samples fit their shares of the budget
        assert 1 <= memory["sequences"][split]["used"] < memory["sequences"][split]["of"]
    assert not [p for p in small.rglob("*") if p.name.startswith(".latent-arrays")]  # unlinked, never in the output
    in_memory, spilled = records(out), records(small)
    assert in_memory.keys() == spilled.keys()
    for record_id, record in in_memory.items():
        for kind in ("smoothed", "filtered"):
            np.testing.assert_allclose(
                spilled[record_id]["annotations"]["latents"][kind], record["annotations"]["latents"][kind], atol=1e-9
            )


def test_under_the_memory_budget_nothing_is_sampled(fitted):
    memory = fitted[1]["annotations"]["latents"]["quality"]["memory"]
    assert memory["spilled"] is False and memory["sequence_mb"] < memory["memory_budget_mb"]
    assert all(n["used"] == n["of"] for n in memory["sequences"].values())
