"""Ridge and reduced-rank regression from sufficient statistics, shared by the baseline and the EM M-step.

Both fits are written on sums (gram = sum x x^T, cross = sum x y^T) because the M-step only has expected
sums, never the latent rows themselves.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import solve_triangular


def symmetric(m: np.ndarray) -> np.ndarray:
    return 0.5 * (m + np.swapaxes(m, -1, -2))


def clip_eigenvalues(cov: np.ndarray, floor: float) -> np.ndarray:
    """Nearest covariance with eigenvalues >= floor: the exact maximiser of a Gaussian likelihood under that bound."""
    values, vectors = np.linalg.eigh(symmetric(cov))
    return symmetric((vectors * np.maximum(values, floor)) @ vectors.T)


def ridge_penalty(variances: np.ndarray, n: int, ridge: float) -> np.ndarray:
    """Per-regressor ridge proportional to its variance (scale-free), never zero, so the gram is always invertible."""
    variances = np.asarray(variances, dtype=np.float64)
    floor = 1e-3 * float(variances.mean()) + 1e-12 if variances.size else 0.0
    return ridge * max(n, 1) * np.maximum(variances, floor)


def ridge_coefficients(gram: np.ndarray, cross: np.ndarray) -> np.ndarray:
    """W (dy x p) minimising sum ||y - W x||^2 + tr(W D W^T), given gram = sum x x^T + D and cross = sum x y^T."""
    return np.linalg.solve(gram, cross).T


def reduce_rank(coef: np.ndarray, gram: np.ndarray, n_lead: int, rank: int, metric: np.ndarray) -> np.ndarray:
    """Constrain rank(coef[:, :n_lead]) <= rank, minimising tr(metric^-1 (W - coef) gram (W - coef)^T).

    `coef` is the unconstrained minimiser. The other columns (inputs, intercept) are re-optimised given the
    constrained block, so with metric = the residual covariance this is the Gaussian reduced-rank regression
    estimate (Reinsel & Velu), and for a fixed metric it is the exact conditional M-step.
    """
    if rank >= n_lead:
        return coef
    lead, rest = coef[:, :n_lead], coef[:, n_lead:]
    g_lead, g_cross, g_rest = gram[:n_lead, :n_lead], gram[:n_lead, n_lead:], gram[n_lead:, n_lead:]
    partial = np.linalg.solve(g_rest, g_cross.T).T if g_rest.size else np.zeros((n_lead, 0))
    schur = symmetric(g_lead - partial @ g_cross.T)  # gram of the lead regressors after partialling out the rest
    metric_half = np.linalg.cholesky(symmetric(metric))
    schur_half = np.linalg.cholesky(schur)
    whitened = solve_triangular(metric_half, lead, lower=True) @ schur_half
    u, s, vt = np.linalg.svd(whitened)
    best = (u[:, :rank] * s[:rank]) @ vt[:rank]  # Eckart-Young in the whitened metric
    new_lead = metric_half @ solve_triangular(schur_half, best.T, lower=True, trans="T").T
    return np.hstack([new_lead, rest - (new_lead - lead) @ partial])


def regress(
    gram: np.ndarray,
    cross: np.ndarray,
    target_gram: np.ndarray,
    n_lead: int = 0,
    rank: int | None = None,
    metric: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Ridge regression from sums, optionally with rank(coef[:, :n_lead]) <= rank in the metric^-1 norm.

    gram = sum x x^T + D, cross = sum x y^T, target_gram = sum y y^T. Returns the coefficients and the
    penalised residual scatter sum (y - W x)(y - W x)^T + W D W^T, whose 1/n is the maximising noise covariance.
    """
    coef = ridge_coefficients(gram, cross)
    if rank is not None and rank < n_lead:
        if metric is None:
            raise ValueError("a rank constraint needs a metric (the noise covariance)")
        coef = reduce_rank(coef, gram, n_lead, rank, metric)
    fitted = coef @ cross
    return coef, symmetric(target_gram - fitted - fitted.T + coef @ gram @ coef.T)


def transition_system(
    prev_gram: np.ndarray,
    prev_cross: np.ndarray,
    prev_sum: np.ndarray,
    cur_sum: np.ndarray,
    u_prev: np.ndarray,
    u_cur: np.ndarray,
    u_gram: np.ndarray,
    u_sum: np.ndarray,
    n: int,
    penalty: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Gram (+ ridge, none on the intercept) and cross sums of the regression z_t ~ [z_{t-1}; u_t; 1].

    prev_gram = sum z_{t-1} z_{t-1}^T, prev_cross = sum z_{t-1} z_t^T, u_prev = sum u_t z_{t-1}^T,
    u_cur = sum u_t z_t^T (expected values in the M-step), all over the n transitions.
    """
    gram = np.block(
        [
            [prev_gram, u_prev.T, prev_sum[:, None]],
            [u_prev, u_gram, u_sum[:, None]],
            [prev_sum[None, :], u_sum[None, :], np.full((1, 1), float(n))],
        ]
    )
    gram[np.diag_indices(len(gram) - 1)] += penalty
    return gram, np.vstack([prev_cross, u_cur, cur_sum[None, :]])
