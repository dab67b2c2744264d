"""Batched Kalman filter and RTS smoother for one shared linear-Gaussian model over many packed sequences.

Model: z_1 ~ N(mu0, P0); z_t = A z_{t-1} + B u_t + b + w_t, w ~ N(0, Q); y_t = C z_t + d + v_t, v ~ N(0, R),
R diagonal. With one model and no missing data the covariances depend only on the position (filter) or on the
position and the length (smoother), never on the data: they are computed once per position and only the
means run over the data, one matrix product per position across all sequences (see `packing`).

Information form for the update: only J = C^T R^-1 C (k x k) and h_t = C^T R^-1 (y_t - d) enter, so the
observation width dy costs one pass over Y per call, not a dy x dy inverse per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coord_bench.mappers.latents.packing import Packing
from coord_bench.mappers.latents.regression import symmetric


@dataclass(frozen=True)
class Covariances:
    info: np.ndarray  # J = C^T R^-1 C
    pred: np.ndarray  # (n, k, k) P_{t|t-1}; P_{1|0} = P0
    filt: np.ndarray  # (n, k, k) P_{t|t}
    gain: np.ndarray  # (n - 1, k, k) smoother gains G_t = P_{t|t} A^T P_{t+1|t}^-1
    logdet: np.ndarray  # (n,) log|I + P_{t|t-1} J| = log|C P C^T + R| - log|R|


def filter_covariances(a: np.ndarray, q: np.ndarray, p0: np.ndarray, info: np.ndarray, n_steps: int) -> Covariances:
    k = len(a)
    eye = np.eye(k)
    pred, filt, logdet = np.empty((n_steps, k, k)), np.empty((n_steps, k, k)), np.empty(n_steps)
    p = symmetric(p0)
    for t in range(n_steps):
        pred[t] = p
        inflate = eye + p @ info
        logdet[t] = np.linalg.slogdet(inflate)[1]
        filt[t] = symmetric(np.linalg.solve(inflate, p))  # (P^-1 + J)^-1 without inverting P
        p = symmetric(a @ filt[t] @ a.T + q)
    gain = np.empty((max(n_steps - 1, 0), k, k))
    for t in range(n_steps - 1):
        gain[t] = np.linalg.solve(pred[t + 1], a @ filt[t]).T
    return Covariances(info, pred, filt, gain, logdet)


def smoothed_covariances(cov: Covariances, length: int) -> np.ndarray:
    """P_{t|T} for t = 1..T of one sequence of length T (T <= the filtered steps)."""
    out = np.empty((length,) + cov.info.shape)
    out[-1] = cov.filt[length - 1]
    for t in range(length - 2, -1, -1):
        g = cov.gain[t]
        out[t] = symmetric(cov.filt[t] + g @ (out[t + 1] - cov.pred[t + 1]) @ g.T)
    return out


def summed_smoothed_covariances(cov: Covariances, counts: np.ndarray) -> np.ndarray:
    """S_t = sum of P_{t|T} over the counts[t] sequences active at position t.

    The RTS recursion is linear in P_{t+1|T}, so the sum over lengths obeys the same recursion:
    S_t = n_t P_{t|t} + G_t (S_{t+1} - n_{t+1} P_{t+1|t}) G_t^T. No loop over lengths.
    """
    n = len(counts)
    out = np.empty((n,) + cov.info.shape)
    out[-1] = counts[-1] * cov.filt[n - 1]
    for t in range(n - 2, -1, -1):
        g = cov.gain[t]
        out[t] = symmetric(counts[t] * cov.filt[t] + g @ (out[t + 1] - counts[t + 1] * cov.pred[t + 1]) @ g.T)
    return out


def filter_means(
    packing: Packing, cov: Covariances, a: np.ndarray, mu0: np.ndarray, h: np.ndarray, drive: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and filtered means (packed rows). drive = B u_t + b per row (rows at position 0 unused)."""
    pred, filt = np.empty_like(h), np.empty_like(h)
    eye = np.eye(len(a))
    for t in range(packing.n_steps):
        rows = packing.block(t)
        if t == 0:
            pred[rows] = mu0
        else:
            prev = packing.block(t - 1)
            pred[rows] = filt[prev.start : prev.start + packing.counts[t]] @ a.T + drive[rows]
        # m_t|t = P_t|t (P_t|t-1^-1 m_t|t-1 + h_t) = (I - P_t|t J) m_t|t-1 + P_t|t h_t
        filt[rows] = pred[rows] @ (eye - cov.filt[t] @ cov.info).T + h[rows] @ cov.filt[t]
    return pred, filt


def smooth_means(packing: Packing, cov: Covariances, pred: np.ndarray, filt: np.ndarray) -> np.ndarray:
    smooth = filt.copy()
    for t in range(packing.n_steps - 2, -1, -1):
        rows, nxt = packing.block(t), packing.block(t + 1)
        smooth[rows.start : rows.start + packing.counts[t + 1]] += (smooth[nxt] - pred[nxt]) @ cov.gain[t].T
    return smooth


def log_likelihood(
    packing: Packing, cov: Covariances, pred: np.ndarray, h: np.ndarray, q: np.ndarray, const: float
) -> float:
    """Sum over rows of log N(y_t; C m_t|t-1 + d, C P_t|t-1 C^T + R), from k-dimensional quantities only.

    With e = y - d - C m, g = C^T R^-1 e = h - J m: the determinant lemma gives log|S| = log|R| + logdet_t and
    Woodbury gives e^T S^-1 e = e^T R^-1 e - g^T P_t|t g, where e^T R^-1 e = q - 2 m.h + m^T J m,
    q = (y - d)^T R^-1 (y - d). const = dy log(2 pi) + log|R|.
    """
    total = 0.0
    for t in range(packing.n_steps):
        rows = packing.block(t)
        m, ht = pred[rows], h[rows]
        jm = m @ cov.info
        g = ht - jm
        quad = q[rows] - 2.0 * (m * ht).sum(1) + (jm * m).sum(1) - ((g @ cov.filt[t]) * g).sum(1)
        total -= 0.5 * (packing.counts[t] * (const + cov.logdet[t]) + quad.sum())
    return float(total)
