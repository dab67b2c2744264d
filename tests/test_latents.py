"""Latent-state models: planted dynamics are recovered, EM is monotone, artifacts are reproducible, the batched
Kalman filter/smoother equals an independent textbook one (and pykalman), the baseline and the probes behave."""

from __future__ import annotations

import json

import numpy as np
import pytest

from coord_bench.mappers.latents import (
    LDSConfig,
    LinearGaussianSSM,
    PCAReducedRank,
    kalman,
    load_model,
    next_turn_report,
    principal_angles,
    probe_report,
    stability_report,
)
from coord_bench.mappers.latents.packing import Packing


def planted(n_seq, eig, seed=0, k=4, dy=40, du=3, lengths=(5, 20), noise=0.1, state_noise=0.3):
    """Sequences from a known LDS whose transition matrix has eigenvalues `eig` (zeros make it low-rank)."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((k, k)))[0] + 0.3 * rng.standard_normal((k, k))
    truth = {
        "A": basis @ np.diag(eig) @ np.linalg.inv(basis),
        "B": 0.7 * rng.standard_normal((k, du)),
        "b": 0.2 * rng.standard_normal(k),
        "Q": state_noise**2 * np.eye(k),
        "C": rng.standard_normal((dy, k)),
        "d": rng.standard_normal(dy),
        "R": np.full(dy, noise**2),
        "mu0": np.zeros(k),
        "P0": np.eye(k),
    }
    sequences = []
    for _ in range(n_seq):
        length = int(rng.integers(lengths[0], lengths[1] + 1))
        u = rng.standard_normal((length, du))
        z = np.empty((length, k))
        z[0] = rng.standard_normal(k)
        for t in range(1, length):
            z[t] = truth["A"] @ z[t - 1] + truth["B"] @ u[t] + truth["b"] + state_noise * rng.standard_normal(k)
        sequences.append((u, z @ truth["C"].T + truth["d"] + noise * rng.standard_normal((length, dy))))
    return sequences, truth


def moduli(a):
    return np.sort(np.abs(np.linalg.eigvals(a)))[::-1]


@pytest.fixture(scope="module")
def planted_split():
    sequences, truth = planted(400, eig=(0.9, 0.7, 0.5, 0.3))
    return sequences[:300], sequences[300:], truth


@pytest.fixture(scope="module")
def fitted(planted_split):
    return LinearGaussianSSM(LDSConfig(k=4, max_iter=50, tol=1e-7)).fit(planted_split[0])


# ---- 1. planted low-rank dynamics ---------------------------------------------------------------------------


def test_lds_recovers_planted_dynamics_and_beats_baselines(planted_split, fitted):
    train, test, truth = planted_split
    assert np.abs(moduli(fitted.A) - moduli(truth["A"])).max() < 0.1
    report = next_turn_report(fitted, train, test, k=4, seed=0)
    assert report["train_mean"] == pytest.approx(0.0, abs=1e-12)
    assert report["model"] > 0.9
    assert report["model"] > max(report["train_mean"], report["copy_last"], report["pca_no_dynamics"]) + 0.2
    # the fit is as good as the truth on held-out data (per observed scalar, in nats)
    n_scalars = sum(y.size for _, y in test)
    truth_score = LinearGaussianSSM.from_params(truth).score(test)
    assert (fitted.score(test) - truth_score) / n_scalars > -0.01


def test_rank_constraint_recovers_rank_two_dynamics():
    sequences, truth = planted(300, eig=(0.9, 0.6, 0.0, 0.0), seed=3)
    model = LinearGaussianSSM(LDSConfig(k=4, r=2, max_iter=40)).fit(sequences)
    singular = np.linalg.svd(model.A, compute_uv=False)
    assert singular[2] < 1e-10 * singular[0]
    assert np.abs(moduli(model.A)[:2] - [0.9, 0.6]).max() < 0.1


# ---- 2. EM monotonicity and degenerate data -----------------------------------------------------------------


def test_em_never_decreases_the_log_likelihood():
    sequences, _ = planted(120, eig=(0.8, 0.4, 0.2), k=3, dy=12, du=2, lengths=(1, 9), noise=0.5, seed=5)
    sequences = [(u, np.hstack([y, np.full((len(y), 1), 2.0)])) for u, y in sequences]  # plus a constant column
    for rank in (None, 1):
        model = LinearGaussianSSM(LDSConfig(k=3, r=rank, max_iter=40, tol=0.0)).fit(sequences)
        lls, objectives = np.array(model.log_likelihoods), np.array(model.objectives)
        assert len(lls) == 41 and np.isfinite(lls).all()
        assert (np.diff(objectives) >= -1e-9 * np.abs(objectives[1:])).all()
        assert (np.diff(lls) >= -1e-6 * np.abs(lls[1:])).all()


@pytest.mark.parametrize("du", [0, 2])
def test_degenerate_data_stays_finite(du):
    rng = np.random.default_rng(0)
    sequences = []
    for _ in range(40):  # single-turn sequences only: no transitions at all; constant and duplicated columns
        y = rng.standard_normal((1, 6)).astype(np.float32)
        y[:, 4], y[:, 5] = 1.0, y[:, 0]
        sequences.append((np.zeros((1, du), dtype=np.float32), y))
    model = LinearGaussianSSM(LDSConfig(k=3, max_iter=5)).fit(sequences)
    assert all(np.isfinite(getattr(model, name)).all() for name in model.PARAMS)
    smoothed, filtered = model.transform(np.zeros((3, du)), rng.standard_normal((3, 6)))
    assert np.isfinite(smoothed).all() and np.isfinite(filtered).all()
    assert np.isfinite(model.log_likelihoods).all()


# ---- 3. determinism and artifacts ---------------------------------------------------------------------------


def test_fit_is_deterministic_and_artifacts_round_trip(planted_split, fitted, tmp_path):
    train, test, _ = planted_split
    again = LinearGaussianSSM(LDSConfig(k=4, max_iter=50, tol=1e-7)).fit(train)
    for name in LinearGaussianSSM.PARAMS:
        assert np.array_equal(getattr(fitted, name), getattr(again, name)), name
    assert again.model_hash == fitted.model_hash

    other_seed = LinearGaussianSSM(LDSConfig(k=4, max_iter=50, tol=1e-7, seed=1)).fit(train)
    assert other_seed.model_hash != fitted.model_hash
    assert stability_report(fitted, other_seed)["max_angle_deg"] < 1.0

    digest = fitted.save(tmp_path / "lds")
    assert digest == fitted.model_hash
    meta = json.loads((tmp_path / "lds.json").read_text())
    assert meta["sha256"] == digest and meta["method"] == "lds-em" and meta["dims"]["dy"] == 40
    with np.load(tmp_path / "lds.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(LinearGaussianSSM.PARAMS)
    loaded = load_model(tmp_path / "lds")
    assert isinstance(loaded, LinearGaussianSSM)
    assert loaded.model_hash == digest and loaded.log_likelihoods == fitted.log_likelihoods
    for (s1, f1), (s2, f2) in zip(fitted.transform_many(test), loaded.transform_many(test), strict=True):
        assert np.array_equal(s1, s2) and np.array_equal(f1, f2)

    loaded.A = loaded.A.copy()
    loaded.A[0, 0] += 1e-12
    assert loaded.model_hash != digest
    loaded.save(tmp_path / "edited")
    (tmp_path / "edited.json").write_text((tmp_path / "lds.json").read_text())  # hash no longer matches arrays
    with pytest.raises(ValueError, match="sha256"):
        LinearGaussianSSM.load(tmp_path / "edited")
    with pytest.raises(ValueError, match="method"):
        PCAReducedRank.load(tmp_path / "lds")


# ---- 4. the batched filter/smoother against independent references ------------------------------------------


def random_model(seed=0, k=3, dy=5, du=2):
    rng = np.random.default_rng(seed)

    def spd(n, scale):
        m = rng.standard_normal((n, n))
        return scale * (m @ m.T / n + 0.3 * np.eye(n))

    return {
        "A": 0.5 * rng.standard_normal((k, k)),
        "B": rng.standard_normal((k, du)),
        "b": rng.standard_normal(k),
        "Q": spd(k, 0.5),
        "C": rng.standard_normal((dy, k)),
        "d": rng.standard_normal(dy),
        "R": rng.uniform(0.2, 1.0, dy),
        "mu0": rng.standard_normal(k),
        "P0": spd(k, 1.0),
    }


def textbook_smoother(p, u, y):
    """Covariance-form Kalman filter + RTS smoother + Shumway-Stoffer lag-one recursion, one sequence, dense."""
    length, k = len(y), len(p["A"])
    a, c, r = p["A"], p["C"], np.diag(p["R"])
    m_pred, p_pred, m_filt, p_filt, gains = [], [], [], [], []
    loglik = 0.0
    for t in range(length):
        m = p["mu0"] if t == 0 else a @ m_filt[-1] + p["B"] @ u[t] + p["b"]
        cov = p["P0"] if t == 0 else a @ p_filt[-1] @ a.T + p["Q"]
        s = c @ cov @ c.T + r
        gain = cov @ c.T @ np.linalg.inv(s)
        e = y[t] - c @ m - p["d"]
        loglik -= 0.5 * (len(e) * np.log(2 * np.pi) + np.linalg.slogdet(s)[1] + e @ np.linalg.solve(s, e))
        m_pred.append(m)
        p_pred.append(cov)
        gains.append(gain)
        m_filt.append(m + gain @ e)
        p_filt.append((np.eye(k) - gain @ c) @ cov)
    m_s, p_s, smoother_gain = [None] * length, [None] * length, [None] * length
    m_s[-1], p_s[-1] = m_filt[-1], p_filt[-1]
    for t in range(length - 2, -1, -1):
        smoother_gain[t] = p_filt[t] @ a.T @ np.linalg.inv(p_pred[t + 1])
        m_s[t] = m_filt[t] + smoother_gain[t] @ (m_s[t + 1] - m_pred[t + 1])
        p_s[t] = p_filt[t] + smoother_gain[t] @ (p_s[t + 1] - p_pred[t + 1]) @ smoother_gain[t].T
    lag = [None] * length  # lag[t] = Cov(z_t, z_{t-1} | y_1..T)
    if length > 1:
        lag[-1] = (np.eye(k) - gains[-1] @ c) @ a @ p_filt[-2]
        for t in range(length - 2, 0, -1):
            lag[t] = (
                p_filt[t] @ smoother_gain[t - 1].T
                + smoother_gain[t] @ (lag[t + 1] - a @ p_filt[t]) @ smoother_gain[t - 1].T
            )
    return {
        "pred": np.array(m_pred),
        "filt": np.array(m_filt),
        "smooth": np.array(m_s),
        "p_filt": np.array(p_filt),
        "p_smooth": np.array(p_s),
        "lag": lag,
        "loglik": loglik,
    }


def test_batched_smoother_matches_textbook_reference():
    params = random_model()
    model = LinearGaussianSSM.from_params(params)
    rng = np.random.default_rng(1)
    sequences = [(rng.standard_normal((n, 2)), rng.standard_normal((n, 5))) for n in (7, 1, 4, 7, 2)]
    info = (params["C"] / params["R"][:, None]).T @ params["C"]
    cov = kalman.filter_covariances(params["A"], params["Q"], params["P0"], info, 7)
    for u, y in sequences:
        ref = textbook_smoother(params, u, y)
        smoothed, filtered = model.transform(u, y)
        np.testing.assert_allclose(smoothed, ref["smooth"], atol=1e-8)
        np.testing.assert_allclose(filtered, ref["filt"], atol=1e-8)
        p_filt, p_smooth = model.covariances(len(y))
        np.testing.assert_allclose(p_filt, ref["p_filt"], atol=1e-8)
        np.testing.assert_allclose(p_smooth, ref["p_smooth"], atol=1e-8)
        for t in range(1, len(y)):  # what the M-step uses: Cov(z_t, z_{t-1}) = P_{t|T} G_{t-1}^T
            np.testing.assert_allclose(p_smooth[t] @ cov.gain[t - 1].T, ref["lag"][t], atol=1e-8)
        assert model.score([(u, y)]) == pytest.approx(ref["loglik"], abs=1e-8)
        expected_next = ref["pred"][1:] @ params["C"].T + params["d"]
        np.testing.assert_allclose(model.predict_next_observation(u, y), expected_next, atol=1e-8)

    many = model.transform_many(sequences)
    for (u, y), (smoothed, filtered) in zip(sequences, many, strict=True):
        single_smoothed, single_filtered = model.transform(u, y)
        np.testing.assert_allclose(smoothed, single_smoothed, atol=1e-12)
        np.testing.assert_allclose(filtered, single_filtered, atol=1e-12)

    counts = np.array([5, 4, 3, 3, 2, 2, 2])  # lengths 7, 1, 4, 7, 2: sequences longer than t
    np.testing.assert_array_equal(Packing.from_lengths([7, 1, 4, 7, 2]).counts, counts)
    summed = kalman.summed_smoothed_covariances(cov, counts)
    explicit = np.zeros_like(summed)
    for n in (7, 1, 4, 7, 2):
        explicit[:n] += kalman.smoothed_covariances(cov, n)
    np.testing.assert_allclose(summed, explicit, atol=1e-10)


def test_batched_smoother_matches_pykalman():
    pykalman = pytest.importorskip("pykalman")
    params = random_model(seed=2)
    rng = np.random.default_rng(3)
    u, y = rng.standard_normal((9, 2)), rng.standard_normal((9, 5))
    reference = pykalman.KalmanFilter(
        transition_matrices=params["A"],
        observation_matrices=params["C"],
        transition_covariance=params["Q"],
        observation_covariance=np.diag(params["R"]),
        transition_offsets=u[1:] @ params["B"].T + params["b"],  # offsets[t] drives z_{t+1}
        observation_offsets=params["d"],
        initial_state_mean=params["mu0"],
        initial_state_covariance=params["P0"],
    )
    ref_means, ref_covs = reference.smooth(y)
    model = LinearGaussianSSM.from_params(params)
    smoothed, _ = model.transform(u, y)
    np.testing.assert_allclose(smoothed, ref_means, atol=1e-8)
    np.testing.assert_allclose(model.covariances(9)[1], ref_covs, atol=1e-8)
    assert model.score([(u, y)]) == pytest.approx(reference.loglikelihood(y), abs=1e-8)


# ---- 5. baseline --------------------------------------------------------------------------------------------


def test_pca_reduced_rank_baseline(planted_split, tmp_path):
    train, test, _ = planted_split
    base = PCAReducedRank(LDSConfig(k=4, r=2)).fit(train)
    assert base.components.shape == (4, 40) and base.A.shape == (4, 4) and base.B.shape == (4, 3)
    singular = np.linalg.svd(base.A, compute_uv=False)
    assert singular[2] < 1e-10 * singular[0]
    u, y = test[0]
    smoothed, filtered = base.transform(u, y)
    assert smoothed.shape == (len(y), 4) and np.array_equal(smoothed, filtered)
    assert base.predict_next_observation(u, y).shape == (len(y) - 1, 40)
    reconstruction = smoothed @ base.components + base.mean
    np.testing.assert_allclose(base.predict_next_observation(u, y, dynamics=False), reconstruction[:-1], atol=1e-10)

    again = PCAReducedRank(LDSConfig(k=4, r=2)).fit(train)
    assert all(np.array_equal(getattr(base, n), getattr(again, n)) for n in PCAReducedRank.PARAMS)
    assert base.save(tmp_path / "base") == again.model_hash
    loaded = load_model(tmp_path / "base")
    assert isinstance(loaded, PCAReducedRank)
    assert np.array_equal(loaded.predict_next_observation(u, y), base.predict_next_observation(u, y))


# ---- 6. probes and stability --------------------------------------------------------------------------------


def test_probe_report_on_separable_and_tiny_data():
    rng = np.random.default_rng(0)
    n = 240
    groups = np.repeat(np.arange(60), 4)
    y = rng.integers(0, 2, n)
    informative = y[:, None] * 2.0 + rng.standard_normal((n, 3))
    features = {"informative": informative, "noise": rng.standard_normal((n, 3))}
    report = probe_report(features, y, groups, seed=0, n_boot=100, baseline="noise")
    assert report["status"] == "ok" and report["n_groups"] == 60
    good = report["features"]["informative"]
    assert good["auc"] > 0.9
    assert good["auc_ci"][0] <= good["auc"] <= good["auc_ci"][1]
    assert good["log_loss_ci"][0] <= good["log_loss"] <= good["log_loss_ci"][1]
    assert good["delta_auc_ci"][0] > 0
    assert 0.3 < report["features"]["noise"]["auc"] < 0.7
    assert report == probe_report(features, y, groups, seed=0, n_boot=100, baseline="noise")

    three = rng.integers(0, 3, n)
    multi = probe_report({"x": np.eye(3)[three] * 3 + rng.standard_normal((n, 3))}, three, groups, seed=1, n_boot=50)
    assert multi["status"] == "ok" and multi["features"]["x"]["auc"] > 0.9

    tiny = probe_report({"x": rng.standard_normal((6, 2))}, [0, 1, 0, 1, 0, 1], [0, 0, 1, 1, 2, 2], seed=0)
    assert tiny["status"] == "insufficient data" and tiny["n_rows"] == 6


def test_principal_angles():
    rng = np.random.default_rng(0)
    basis = rng.standard_normal((10, 3))
    assert principal_angles(basis, basis @ rng.standard_normal((3, 3))).max() < 1e-6
    orthogonal = np.eye(6)
    np.testing.assert_allclose(principal_angles(orthogonal[:, :2], orthogonal[:, 2:4]), [90.0, 90.0])
