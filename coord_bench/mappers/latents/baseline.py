"""Baseline latent model "pca-rrr": PCA of the observations, then a reduced-rank linear transition.

z_t = PCA scores of y_t (causal per turn: filtered = smoothed); z_{t+1} = A z_t + B u_{t+1} + b with
rank(A) <= r, fitted by ridge + reduced-rank regression. It is the LDS's initialisation and the yardstick
the LDS has to beat; `predict_next_observation(..., dynamics=False)` is the "PCA without dynamics" baseline.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import numpy as np
from sklearn.decomposition import PCA

from coord_bench.mappers.latents.artifact import ArtifactModel
from coord_bench.mappers.latents.config import LDSConfig
from coord_bench.mappers.latents.packing import PackedSequences, column_sums, gram, matmul
from coord_bench.mappers.latents.regression import clip_eigenvalues, regress, ridge_penalty, transition_system


def flip_signs(columns: np.ndarray) -> np.ndarray:
    """+1/-1 per column so that each column's largest-magnitude entry is positive (fixes the sign ambiguity)."""
    picked = columns[np.argmax(np.abs(columns), axis=0), np.arange(columns.shape[1])]
    return np.where(picked < 0, -1.0, 1.0)


class PCAReducedRank(ArtifactModel):
    method = "pca-rrr"
    PARAMS = ("mean", "components", "explained_variance", "noise_var", "A", "B", "b", "Q", "mu0", "P0")

    def __init__(self, config: LDSConfig | None = None):
        self.config = config or LDSConfig()
        self.mean = self.components = self.explained_variance = self.noise_var = None
        self.A = self.B = self.b = self.Q = self.mu0 = self.P0 = None
        self.dims: dict[str, int] = {}
        self.log_likelihoods: list[float] = []  # none: not a likelihood fit; kept for a uniform interface

    def fit(self, sequences: list[tuple[np.ndarray, np.ndarray]], validation=None) -> PCAReducedRank:
        """Closed form, so ``validation`` (taken for the models' common interface) has nothing to stop early."""
        return self.fit_packed(PackedSequences.build(sequences))

    def fit_packed(self, data: PackedSequences) -> PCAReducedRank:
        cfg, y = self.config, data.y
        n, dy, du = len(y), y.shape[1], data.u.shape[1]
        if cfg.k > min(n, dy):
            raise ValueError(f"k={cfg.k} needs at least k observation rows and columns, got {n} x {dy}")
        pca = PCA(n_components=cfg.k, svd_solver="covariance_eigh").fit(y.astype(np.float64))
        signs = flip_signs(pca.components_.T)
        self.mean, self.components = pca.mean_, pca.components_ * signs[:, None]
        self.explained_variance = pca.explained_variance_
        y_var = np.maximum(column_sums(y, square=True) - n * self.mean**2, 0.0) / max(n - 1, 1)
        explained = (self.components**2 * self.explained_variance[:, None]).sum(axis=0)
        self.noise_var = np.maximum(y_var - explained, cfg.var_floor * float(y_var.mean()) + 1e-12)

        z = self._scores(y)
        first = z[data.packing.block(0)]
        self.mu0 = first.mean(axis=0)
        latent_floor = cfg.var_floor * max(float(self.explained_variance.mean()), np.finfo(float).tiny)
        self.P0 = clip_eigenvalues(np.cov(first.T, bias=True).reshape(cfg.k, cfg.k), latent_floor)
        self.A, self.B, self.b = np.zeros((cfg.k, cfg.k)), np.zeros((cfg.k, du)), np.zeros(cfg.k)
        self.Q = np.diag(self.explained_variance)
        n_trans = data.n_transitions
        if n_trans:
            prev, cur, u = z[data.previous], z[data.packing.offsets[1] :], data.u_next
            u_sum = column_sums(u)
            u_gram = gram(u, u)
            u_var = np.diag(u_gram) / n_trans - (u_sum / n_trans) ** 2
            penalty = ridge_penalty(np.concatenate([self.explained_variance, u_var]), n_trans, cfg.ridge)
            u_z = gram(u, np.hstack([prev, cur]))
            system = transition_system(
                prev.T @ prev, prev.T @ cur, prev.sum(0), cur.sum(0), u_z[:, : cfg.k], u_z[:, cfg.k :],
                u_gram, u_sum, n_trans, penalty,
            )  # fmt: skip
            _, scatter = regress(*system, cur.T @ cur)
            metric = clip_eigenvalues(scatter / n_trans, latent_floor)  # full-rank residual: Gaussian RRR
            coef, scatter = regress(*system, cur.T @ cur, n_lead=cfg.k, rank=cfg.rank, metric=metric)
            self.A, self.B, self.b = coef[:, : cfg.k], coef[:, cfg.k : cfg.k + du], coef[:, -1]
            self.Q = clip_eigenvalues(scatter / n_trans, latent_floor)
        self.dims = {"k": cfg.k, "du": du, "dy": dy, "n_sequences": len(data.packing.order), "n_rows": n}
        return self

    def _scores(self, y: np.ndarray) -> np.ndarray:
        return matmul(y, self.components.T) - self.mean @ self.components.T

    @property
    def loadings(self) -> np.ndarray:
        """dy x k basis of the latent subspace in observation space (for principal angles between refits)."""
        return self.components.T

    def transform(self, U: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.transform_many([(U, Y)])[0]

    def transform_many(self, sequences) -> list[tuple[np.ndarray, np.ndarray]]:
        """(smoothed, filtered) latents per sequence; both are the PCA scores, which use only the turn itself."""
        self._state()
        data = PackedSequences.build(sequences, self.dims["du"], self.dims["dy"])
        return [(z, z.copy()) for z in data.packing.unpack(self._scores(data.y))]

    def predict_next_observation(self, U: np.ndarray, Y: np.ndarray, dynamics: bool = True) -> np.ndarray:
        return self.predict_next_many([(U, Y)], dynamics)[0]

    def predict_next_many(self, sequences, dynamics: bool = True) -> list[np.ndarray]:
        """y_{t+1} for t = 1..T-1 per sequence: transition then PCA inverse, or (dynamics=False) the PCA
        reconstruction of y_t, i.e. "the next turn looks like a denoised copy of this one"."""
        self._state()
        data = PackedSequences.build(sequences, self.dims["du"], self.dims["dy"])
        z = self._scores(data.y)
        rows = data.packing.offsets[1]
        nxt = np.zeros_like(z)
        if dynamics:
            nxt[rows:] = z[data.previous] @ self.A.T + matmul(data.u_next, self.B.T) + self.b
        else:
            nxt[rows:] = z[data.previous]
        predicted = nxt @ self.components + self.mean
        return [p[1:] for p in data.packing.unpack(predicted)]

    def _metadata(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "dims": self.dims, "log_likelihoods": self.log_likelihoods}

    def _restore(self, meta: dict[str, Any]) -> None:
        self.config = LDSConfig(**meta["config"])
        self.dims = meta["dims"]
        self.log_likelihoods = meta["log_likelihoods"]
