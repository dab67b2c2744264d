"""Default latent model "lds-em": a linear-Gaussian state-space model with inputs, shared by all sequences.

    z_1 ~ N(mu0, P0);  z_t = A z_{t-1} + B u_t + b + w_t, w ~ N(0, Q);  y_t = C z_t + d + v_t, v ~ N(0, diag R)

(u_1 does not enter: the first state has its own prior.) Fitted by EM (Shumway & Stoffer 1982; Ghahramani &
Hinton 1996 for many sequences): the E-step is the batched Kalman filter + RTS smoother of `kalman`, the
M-step closed-form regressions of y on z (C, d, R) and of z_t on [z_{t-1}, u_t, 1] (A, B, b, Q), with
rank(A) <= r by reduced-rank regression in the Q^-1 metric. Degenerate data stay finite: the expected latent
grams include posterior covariances (positive definite, as Q and P0 have eigenvalue floors), R has a floor
(constrained maxima keep EM monotone), and only B, whose inputs may be wide, collinear or constant, gets a
small ridge: a Gaussian prior scaled by Q, so the M-step stays closed-form. EM never decreases the penalised
log-likelihood (`objectives`); `log_likelihoods` is the plain data log-likelihood, which differs from it by
that small penalty. Initialised from the `PCAReducedRank` baseline in whitened coordinates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from coord_bench.mappers.latents import kalman
from coord_bench.mappers.latents.artifact import ArtifactModel
from coord_bench.mappers.latents.baseline import PCAReducedRank, flip_signs
from coord_bench.mappers.latents.config import LDSConfig
from coord_bench.mappers.latents.packing import PackedSequences, chunks, column_sums, gram, matmul
from coord_bench.mappers.latents.regression import (
    clip_eigenvalues,
    regress,
    ridge_coefficients,
    ridge_penalty,
    symmetric,
    transition_system,
)

__all__ = ["LDSConfig", "LinearGaussianSSM"]


@dataclass
class _Posterior:
    cov: kalman.Covariances
    pred: np.ndarray  # packed E[z_t | y_1..t-1]
    filt: np.ndarray  # packed E[z_t | y_1..t]
    smooth: np.ndarray  # packed E[z_t | y_1..T]
    summed: np.ndarray | None = None  # per position, sum over sequences of Cov[z_t | y_1..T]
    loglik: float = float("nan")


@dataclass
class _DataSums:
    """Sums over the training data that do not change between EM iterations."""

    y_sum: np.ndarray
    y_sq_sum: np.ndarray
    u_gram: np.ndarray  # over transition rows
    u_sum: np.ndarray
    y_var_mean: float
    ridge_u: np.ndarray  # ridge on each column of B

    @classmethod
    def of(cls, data: PackedSequences, ridge: float) -> _DataSums:
        n, n_trans, u = data.packing.n_rows, data.n_transitions, data.u_next
        y_sum, y_sq_sum = column_sums(data.y), column_sums(data.y, square=True)
        u_gram, u_sum = gram(u, u), column_sums(u)
        u_var = np.diag(u_gram) / max(n_trans, 1) - (u_sum / max(n_trans, 1)) ** 2
        y_var = np.maximum(y_sq_sum / n - (y_sum / n) ** 2, 0.0)
        return cls(y_sum, y_sq_sum, u_gram, u_sum, float(y_var.mean()), ridge_penalty(u_var, n_trans, ridge))


class LinearGaussianSSM(ArtifactModel):
    method = "lds-em"
    PARAMS = ("A", "B", "b", "Q", "C", "d", "R", "mu0", "P0")
    PARAMS_FITTED = PARAMS  # what EM changes (a subclass may add parameters of its own that EM does not touch)

    def __init__(self, config: LDSConfig | None = None):
        self.config = config or LDSConfig()
        self.A = self.B = self.b = self.Q = self.C = self.d = self.R = self.mu0 = self.P0 = None
        self.dims: dict[str, int] = {}
        self.log_likelihoods: list[float] = []
        self.objectives: list[float] = []  # log-likelihood minus the ridge penalty: what EM increases
        self.validation_log_likelihoods: list[float] = []  # per iteration, when fitted with validation sequences

    @classmethod
    def from_params(cls, params: dict[str, np.ndarray], config: LDSConfig | None = None) -> LinearGaussianSSM:
        """A model with given parameters (A, B, b, Q, C, d, R as a vector, mu0, P0), e.g. to simulate or test."""
        model = cls(config or LDSConfig(k=len(params["A"])))
        for name in cls.PARAMS:
            setattr(model, name, np.asarray(params[name], dtype=np.float64))
        model.dims = {"k": len(model.A), "du": model.B.shape[1], "dy": len(model.d)}
        return model

    # ---- fitting -------------------------------------------------------------------------------------------

    def fit(
        self,
        sequences: list[tuple[np.ndarray, np.ndarray]],
        validation: list[tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> LinearGaussianSSM:
        """EM on (U: T x du, Y: T x dy) sequences, T >= 1. float32 data stay float32 in the packed copy (the PCA
        initialisation makes one transient float64 copy of Y). With ``validation`` sequences, EM stops once their
        log-likelihood has not improved for ``patience`` iterations and keeps the parameters that scored best
        there (early stopping: the training likelihood always rises, the held-out one stops when EM overfits)."""
        cfg = self.config
        data = PackedSequences.build(sequences)
        held_out = PackedSequences.build(validation, data.u.shape[1], data.y.shape[1]) if validation else None
        sums = _DataSums.of(data, cfg.ridge)
        self._initialise(PCAReducedRank(cfg).fit_packed(data))
        self.log_likelihoods, self.objectives, self.validation_log_likelihoods = [], [], []
        posterior = self._record(data, sums, held_out)
        best = self._snapshot()
        for _ in range(cfg.max_iter):
            self._m_step(data, sums, posterior)
            posterior = self._record(data, sums, held_out)
            if held_out is not None:
                if self.validation_log_likelihoods[-1] > max(self.validation_log_likelihoods[:-1]):
                    best = self._snapshot()
                elif len(self.log_likelihoods) - 1 - best["iteration"] >= cfg.patience:
                    break
            if self.objectives[-1] - self.objectives[-2] <= cfg.tol * abs(self.objectives[-2]):
                break
        if held_out is not None and best["iteration"] != len(self.log_likelihoods) - 1:
            self._restore_snapshot(best)
            posterior = self._posterior(data, likelihood=True)
        self._canonicalise(posterior, data.packing.n_rows)
        self.dims = {
            "k": cfg.k,
            "du": data.u.shape[1],
            "dy": data.y.shape[1],
            "n_sequences": len(data.packing.order),
            "n_rows": data.packing.n_rows,
            "n_iter": len(self.log_likelihoods) - 1,
            "best_iter": best["iteration"] if held_out is not None else len(self.log_likelihoods) - 1,
        }
        return self

    def _snapshot(self) -> dict[str, Any]:
        return {"iteration": len(self.log_likelihoods) - 1, **{n: getattr(self, n).copy() for n in self.PARAMS_FITTED}}

    def _restore_snapshot(self, snapshot: dict[str, Any]) -> None:
        for name in self.PARAMS_FITTED:
            setattr(self, name, snapshot[name])

    def _initialise(self, base: PCAReducedRank) -> None:
        """Baseline parameters in whitened coordinates (z / sqrt(explained variance)), C seeded-perturbed."""
        cfg = self.config
        scale = np.sqrt(np.maximum(base.explained_variance, max(1e-12 * base.explained_variance.max(), 1e-300)))
        self.C = base.components.T * scale
        self.d, self.R = base.mean.copy(), base.noise_var.copy()
        self.A = base.A * scale[None, :] / scale[:, None]
        self.B, self.b = base.B / scale[:, None], base.b / scale
        self.Q = clip_eigenvalues(base.Q / np.outer(scale, scale), cfg.var_floor)
        self.mu0 = base.mu0 / scale
        self.P0 = clip_eigenvalues(base.P0 / np.outer(scale, scale), cfg.var_floor)
        if cfg.init_noise > 0:
            rng = np.random.default_rng(cfg.seed)
            column_rms = np.sqrt((self.C**2).mean(axis=0))
            self.C = self.C + cfg.init_noise * column_rms * rng.standard_normal(self.C.shape)

    def _record(self, data: PackedSequences, sums: _DataSums, held_out: PackedSequences | None) -> _Posterior:
        posterior = self._posterior(data, likelihood=True)
        self.log_likelihoods.append(posterior.loglik)
        self.objectives.append(posterior.loglik - self._penalty(sums))
        if held_out is not None:
            self.validation_log_likelihoods.append(self._posterior(held_out, likelihood=True).loglik)
        return posterior

    def _penalty(self, sums: _DataSums) -> float:
        """Minus the log of the ridge prior on B, 1/2 tr(Q^-1 B D B^T) (scaled by Q: keeps the M-step exact)."""
        return 0.5 * float(np.trace(np.linalg.solve(self.Q, self.B * sums.ridge_u) @ self.B.T))

    def _m_step(self, data: PackedSequences, sums: _DataSums, posterior: _Posterior) -> None:
        cfg, k = self.config, self.config.k
        packing, m, summed, cov = data.packing, posterior.smooth, posterior.summed, posterior.cov
        n = packing.n_rows

        # emission: y_t ~ [z_t; 1], all rows
        z_sum = m.sum(axis=0)
        latent_gram = summed.sum(axis=0) + m.T @ m
        x_gram = np.block([[latent_gram, z_sum[:, None]], [z_sum[None, :], np.full((1, 1), float(n))]])
        cross = np.vstack([gram(data.y, m).T, sums.y_sum[None, :]])  # sum x y^T
        coef = ridge_coefficients(x_gram, cross)
        self.C, self.d = coef[:, :k], coef[:, k]
        r_floor = cfg.var_floor * sums.y_var_mean + 1e-12
        self.R = np.maximum((sums.y_sq_sum - (coef * cross.T).sum(axis=1)) / n, r_floor)

        # transition: z_t ~ [z_{t-1}; u_t; 1], rows at positions t >= 1
        n_trans = data.n_transitions
        if n_trans:
            ends = packing.counts[:-1] - packing.counts[1:]  # sequences whose last position is t
            prev_cov = (summed[:-1] - ends[:, None, None] * cov.filt[:-1]).sum(axis=0)
            cross_cov = np.einsum("tij,tjk->ik", cov.gain, summed[1:])  # Cov(z_t, z_{t+1}) = G_t P_{t+1|T}
            prev, cur = m[data.previous], m[packing.offsets[1] :]
            u_z = gram(data.u_next, np.hstack([prev, cur]))
            system = transition_system(
                prev_cov + prev.T @ prev, cross_cov + prev.T @ cur, prev.sum(0), cur.sum(0), u_z[:, :k], u_z[:, k:],
                sums.u_gram, sums.u_sum, n_trans, np.concatenate([np.zeros(k), sums.ridge_u]),
            )  # fmt: skip
            cur_gram = summed[1:].sum(axis=0) + cur.T @ cur
            coef, scatter = regress(*system, cur_gram, n_lead=k, rank=cfg.rank, metric=self.Q)
            du = data.u.shape[1]
            self.A, self.B, self.b = coef[:, :k], coef[:, k : k + du], coef[:, -1]
            self.Q = clip_eigenvalues(scatter / n_trans, cfg.var_floor)

        # initial state
        first = m[packing.block(0)]
        self.mu0 = first.mean(axis=0)
        second = (summed[0] + first.T @ first) / len(first)
        self.P0 = clip_eigenvalues(second - np.outer(self.mu0, self.mu0), cfg.var_floor)

    def _canonicalise(self, posterior: _Posterior, n: int) -> None:
        """Fix the latent basis (the likelihood is invariant to z -> T z): whiten the posterior latent
        covariance over all turns, rotate so C's columns are orthogonal in decreasing norm, largest entry of
        each column positive. Refits then share one convention, and latents are on a unit scale."""
        m = posterior.smooth
        mean = m.mean(axis=0)
        latent_cov = symmetric((posterior.summed.sum(axis=0) + m.T @ m) / n - np.outer(mean, mean))
        values, vectors = np.linalg.eigh(latent_cov)
        values = np.maximum(values, 1e-10 * values.max())
        half, inv_half = (vectors * np.sqrt(values)) @ vectors.T, (vectors / np.sqrt(values)) @ vectors.T
        energy, rotation = np.linalg.eigh(symmetric(half @ self.C.T @ self.C @ half))
        rotation = rotation[:, np.argsort(-energy, kind="stable")]
        forward, backward = rotation.T @ inv_half, half @ rotation
        signs = flip_signs(self.C @ backward)
        forward, backward = forward * signs[:, None], backward * signs[None, :]
        self.A, self.B, self.b = forward @ self.A @ backward, forward @ self.B, forward @ self.b
        self.Q, self.P0 = symmetric(forward @ self.Q @ forward.T), symmetric(forward @ self.P0 @ forward.T)
        self.mu0, self.C = forward @ self.mu0, self.C @ backward

    # ---- inference -----------------------------------------------------------------------------------------

    def _posterior(self, data: PackedSequences, likelihood: bool) -> _Posterior:
        packing, k = data.packing, len(self.A)
        inv_sd = 1.0 / np.sqrt(self.R)
        scaled_c = self.C * inv_sd[:, None]
        h, q = np.empty((packing.n_rows, k)), np.empty(packing.n_rows)
        for rows in chunks(packing.n_rows):
            ys = (data.y[rows] - self.d) * inv_sd
            h[rows] = ys @ scaled_c  # C^T R^-1 (y - d)
            q[rows] = np.einsum("ij,ij->i", ys, ys)  # (y - d)^T R^-1 (y - d)
        drive = np.zeros((packing.n_rows, k))
        drive[packing.offsets[1] :] = matmul(data.u_next, self.B.T) + self.b
        cov = kalman.filter_covariances(self.A, self.Q, self.P0, scaled_c.T @ scaled_c, packing.n_steps)
        pred, filt = kalman.filter_means(packing, cov, self.A, self.mu0, h, drive)
        posterior = _Posterior(cov, pred, filt, kalman.smooth_means(packing, cov, pred, filt))
        if likelihood:
            posterior.summed = kalman.summed_smoothed_covariances(cov, packing.counts)
            const = len(self.R) * np.log(2 * np.pi) + float(np.log(self.R).sum())
            posterior.loglik = kalman.log_likelihood(packing, cov, pred, h, q, const)
        return posterior

    def _pack(self, sequences) -> PackedSequences:
        self._state()  # raises unless fitted or loaded
        return PackedSequences.build(sequences, self.dims["du"], self.dims["dy"])

    def transform(self, U: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(smoothed means E[z_t | all turns], filtered means E[z_t | turns <= t]) of one sequence, T x k each."""
        return self.transform_many([(U, Y)])[0]

    def transform_many(self, sequences) -> list[tuple[np.ndarray, np.ndarray]]:
        """`transform` of many sequences at once (batched by position), in the input order."""
        data = self._pack(sequences)
        posterior = self._posterior(data, likelihood=False)
        return list(zip(data.packing.unpack(posterior.smooth), data.packing.unpack(posterior.filt), strict=True))

    def predict_next_observation(self, U: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """E[y_{t+1} | y_1..y_t, u_1..u_{t+1}] for t = 1..T-1, shape (T-1) x dy."""
        return self.predict_next_many([(U, Y)])[0]

    def predict_next_many(self, sequences) -> list[np.ndarray]:
        data = self._pack(sequences)
        pred = self._posterior(data, likelihood=False).pred
        return [p[1:] @ self.C.T + self.d for p in data.packing.unpack(pred)]

    def score(self, sequences) -> float:
        """Total log-likelihood log p(Y | U) of the sequences (e.g. held-out) under the fitted model."""
        return self._posterior(self._pack(sequences), likelihood=True).loglik

    def covariances(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        """(filtered, smoothed) state covariances, length x k x k, of any sequence of that length: with one
        model and no missing turns they do not depend on the data."""
        self._state()
        info = (self.C / self.R[:, None]).T @ self.C
        cov = kalman.filter_covariances(self.A, self.Q, self.P0, info, length)
        return cov.filt, kalman.smoothed_covariances(cov, length)

    @property
    def loadings(self) -> np.ndarray:
        """dy x k emission matrix C (its column space is compared between refits)."""
        return self.C

    # ---- artifact ------------------------------------------------------------------------------------------

    def _metadata(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "dims": self.dims,
            "log_likelihoods": self.log_likelihoods,
            "objectives": self.objectives,
            "validation_log_likelihoods": self.validation_log_likelihoods,
        }

    def _restore(self, meta: dict[str, Any]) -> None:
        self.config = LDSConfig(**meta["config"])
        self.dims = meta["dims"]
        self.log_likelihoods, self.objectives = meta["log_likelihoods"], meta["objectives"]
        self.validation_log_likelihoods = meta.get("validation_log_likelihoods", [])
