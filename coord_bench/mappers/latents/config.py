"""Settings shared by the latent-state models (the LDS and its PCA + reduced-rank baseline)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class LDSConfig:
    k: int = 8  # latent dimension
    r: int | None = None  # rank bound on the transition matrix A (None: full rank)
    max_iter: int = 30  # EM iterations at most
    tol: float = 1e-4  # stop when the penalised log-likelihood rises by less than tol * |value|
    seed: int = 0  # seeds the perturbation of the initial emission matrix (see init_noise)
    ridge: float = 1e-3  # ridge on input coefficients B (and, in the baseline, A), x regressor variance x rows
    init_noise: float = 0.05  # relative noise on the baseline's C at init: refits with other seeds test stability
    var_floor: float = 1e-4  # noise variances >= var_floor x mean data variance (R) or x latent variance (Q, P0)
    patience: int = 3  # with validation sequences: stop after this many EM iterations without a better score

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.r is not None and self.r < 0:
            raise ValueError(f"r must be None or >= 0, got {self.r}")
        if self.max_iter < 0 or self.patience < 1 or self.tol < 0 or self.ridge <= 0:
            raise ValueError(f"invalid settings: {self}")
        if self.init_noise < 0 or self.var_floor <= 0:
            raise ValueError(f"invalid settings: {self}")

    @property
    def rank(self) -> int:
        return self.k if self.r is None else min(self.r, self.k)
