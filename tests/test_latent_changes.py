"""The change model (delta-lds-em) nests its baselines, recovers a planted coordinator, says "no" when there is
none, stops EM on validation, and is chosen (k, r) on validation only."""

from __future__ import annotations

import numpy as np
import pytest
from test_latents import planted

from coord_bench.mappers.latents import ChangeLDS, LDSConfig, load_model, next_turn_report, principal_angles
from coord_bench.mappers.latents.changes import turn_changes
from coord_bench.mappers.latents.quality import order_controls, verdicts
from coord_bench.mappers.latents.selection import candidates, select


def drifting(n_seq, seed=0, k=2, dy=64, lengths=(3, 10), noise=0.05):
    """Conversations whose turns drift along a k-dim direction: y_t = y_{t-1} + C z_t + d + noise, with z a
    latent of known dynamics (eigenvalues 0.9 and 0.6): the increments are a planted LDS's observations."""
    increments, truth = planted(n_seq, eig=(0.9, 0.6), seed=seed, k=k, dy=dy, du=2, lengths=lengths, noise=noise)
    return [(u, np.cumsum(x, axis=0)) for u, x in increments], truth


def random_walks(n_seq, seed=0, dy=64, lengths=(3, 10)):
    """Turns that change by independent noise: nothing to predict beyond the last turn."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_seq):
        length = int(rng.integers(lengths[0], lengths[1] + 1))
        out.append((rng.standard_normal((length, 2)), np.cumsum(rng.standard_normal((length, dy)), axis=0)))
    return out


def fit(train, validation, k, r=None, seed=0):
    return ChangeLDS(LDSConfig(k=k, r=r, seed=seed, max_iter=40)).fit(train, validation)


@pytest.fixture(scope="module")
def planted_corpus():
    sequences, truth = drifting(260)
    return sequences[:160], sequences[160:200], sequences[200:], truth


@pytest.fixture(scope="module")
def planted_report(planted_corpus):
    train, validation, test, _ = planted_corpus
    model = fit(train, validation, k=2)
    comparisons = {"model_no_dynamics": fit(train, validation, k=2, r=0)}
    comparisons.update(order_controls(lambda s: fit(s, validation, k=2), train, seed=0))
    return model, next_turn_report(model, train, test, k=2, seed=0, comparisons=comparisons)


def test_with_no_coordinator_the_model_is_copy_last():
    y = np.random.default_rng(0).standard_normal((6, 5))
    u = np.zeros((6, 1))
    params = {"A": np.eye(2) * 0.5, "B": np.zeros((2, 1)), "b": np.zeros(2), "Q": np.eye(2), "C": np.zeros((5, 2)),
              "d": np.zeros(5), "R": np.ones(5), "mu0": np.zeros(2), "P0": np.eye(2),
              "first_mean": np.zeros(5)}  # fmt: skip
    model = ChangeLDS.from_params(params)
    np.testing.assert_allclose(model.predict_next_observation(u, y), y[:-1], atol=1e-12)


def test_a_fit_without_dynamics_predicts_the_last_turn_plus_the_mean_change():
    """A = 0 (rank bound 0) leaves no state to carry over: the prediction is the last turn plus one fixed step,
    the mean change of the training turns, which is the right model for a random walk with drift."""
    drift = np.linspace(-1, 1, 64)
    walks = [(u, y + drift * np.arange(len(y))[:, None]) for u, y in random_walks(150, seed=2)]
    no_inputs = [(np.zeros((len(y), 1)), y) for _, y in walks]
    model = ChangeLDS(LDSConfig(k=2, r=0, max_iter=40)).fit(no_inputs[:120])
    assert np.all(model.A == 0)
    mean_change = np.concatenate([np.diff(y, axis=0) for _, y in no_inputs[:120]]).mean(axis=0)
    u, y = no_inputs[130]
    step = model.predict_next_observation(u, y) - y[:-1]
    np.testing.assert_allclose(step, np.broadcast_to(step[0], step.shape), atol=1e-8)
    assert np.linalg.norm(step[0] - mean_change) < 0.02 * np.linalg.norm(mean_change)


def test_turn_changes_are_differences_with_the_first_turn_against_the_mean():
    y = np.arange(12.0).reshape(4, 3)
    first = np.array([1.0, 1.0, 1.0])
    np.testing.assert_allclose(turn_changes(y, first), np.vstack([y[0] - first, np.full((3, 3), 3.0)]))


def test_a_planted_coordinator_is_recovered_and_beats_copy_last_and_the_shuffled_fit(planted_corpus, planted_report):
    truth = planted_corpus[3]
    model, report = planted_report
    assert principal_angles(model.C, truth["C"]).max() < 10
    change = report["spaces"]["change"]
    assert change["model"]["minus_copy_last_ci"][0] > 0  # the interval excludes 0
    assert change["model"]["minus_shuffled_order_ci"][0] > 0
    assert change["model"]["r2"] > change["model_no_dynamics"]["r2"]  # the dynamics are real
    assert report["model"] >= report["copy_last"]
    said = verdicts({"next_turn_r2": report})
    assert said[0].startswith("beats copy-last on held-out turns: yes")
    assert said[1].startswith("beats the same model fitted on shuffled turns (does it use their order?): yes")


def test_without_a_coordinator_the_report_says_no():
    sequences = random_walks(200, seed=1)
    train, validation, test = sequences[:120], sequences[120:150], sequences[150:]
    model = fit(train, validation, k=2)
    report = next_turn_report(model, train, test, k=2, seed=0)
    low, high = report["spaces"]["change"]["model"]["minus_copy_last_ci"]
    assert low <= 0 <= high or high < 0
    assert verdicts({"next_turn_r2": report})[0].startswith("beats copy-last on held-out turns: no evidence")
    assert report["model"] >= report["copy_last"] - (high - low)  # nested: it can only lose by overfitting


def test_em_stops_on_validation_and_keeps_the_best_iteration():
    """Few, wide training conversations: EM overfits them, and the held-out likelihood says when."""
    sequences, _ = drifting(60, seed=3, dy=120, noise=0.5)
    train, validation = sequences[:12], sequences[12:]
    model = ChangeLDS(LDSConfig(k=6, max_iter=40, tol=0, patience=2)).fit(train, validation)
    held_out = model.validation_log_likelihoods
    best = model.dims["best_iter"]
    assert held_out[best] == max(held_out)
    assert model.dims["n_iter"] < 40 and model.dims["n_iter"] - best == 2  # stopped 2 iterations after the best
    assert model.score(validation) == pytest.approx(held_out[best], rel=1e-6)  # the kept parameters are the best
    assert np.all(np.diff(model.objectives) >= -1e-6 * np.abs(model.objectives[:-1]))  # EM never goes down


def test_the_artifact_reapplies_identically(planted_corpus, planted_report, tmp_path):
    model, _ = planted_report
    test = planted_corpus[2]
    digest = model.save(tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, ChangeLDS) and loaded.model_hash == digest == model.model_hash
    for (a_s, a_f), (b_s, b_f) in zip(model.transform_many(test[:5]), loaded.transform_many(test[:5]), strict=True):
        np.testing.assert_array_equal(a_s, b_s)
        np.testing.assert_array_equal(a_f, b_f)
    np.testing.assert_array_equal(model.predict_next_many(test[:5])[0], loaded.predict_next_many(test[:5])[0])


def test_candidates_follow_the_grid_and_the_given_values():
    assert candidates(None, "auto", (4, 8, 12, 16), max_k=10) == [(4, None), (4, 2), (8, None), (8, 4)]
    assert candidates(12, "auto", (4, 8), max_k=100) == [(12, None), (12, 6)]
    assert candidates(None, None, (4, 8), max_k=100) == [(4, None), (8, None)]
    assert candidates(None, 0, (16,), max_k=3) == [(16, 0)]  # nothing feasible: the smallest, which then says so


def test_selection_picks_the_best_validation_score_and_never_sees_the_test_split(planted_corpus):
    train, validation, test, _ = planted_corpus
    seen = []

    def fitting(k, r):
        model = fit(train, validation, k, r)
        seen.append(model)
        return model

    chosen, record = select(fitting, train, validation, [(1, None), (2, None), (4, None)])
    scores = [c["validation_r2"] for c in record["candidates"]]
    assert record["chosen"]["k"] == [1, 2, 4][int(np.argmax(scores))] and chosen is seen[int(np.argmax(scores))]
    assert record["chosen"]["k"] >= 2  # one latent cannot explain a two-dimensional coordinator
    _, alone = select(fitting, train, [(u, y[:1]) for u, y in validation], [(2, None), (4, None)])
    assert alone["criterion"] is None and "no validation conversation" in alone["reason"]
