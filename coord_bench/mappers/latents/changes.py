"""Default latent model "delta-lds-em": the coordinator explains how the messages CHANGE from turn to turn.

    z_t = A z_{t-1} + B u_t + b + w_t;   y_t = y_{t-1} + C z_t + d + v_t   (y_0 := the train mean of first turns)

It is the LDS of ``lds.py`` fitted on the changes ``y_t - y_{t-1}``. Its baselines are special cases of it:
C = 0, d = 0 is "copy the last turn"; A = 0 (rank bound r = 0) is a coordinator without dynamics; so a fit
can only lose to them on held-out turns by overfitting, which the selection on validation turns guards
against. The change of variables has Jacobian 1, so its log-likelihood is that of the turns themselves and
compares with the level LDS's.
"""

from __future__ import annotations

import numpy as np

from coord_bench.mappers.latents.lds import LinearGaussianSSM

Sequences = list[tuple[np.ndarray, np.ndarray]]


def turn_changes(y: np.ndarray, first_mean: np.ndarray) -> np.ndarray:
    """y_t - y_{t-1} per turn (T x dy), the first turn relative to ``first_mean``; in y's float type."""
    y = np.asarray(y)
    previous = np.vstack([first_mean[None, :].astype(y.dtype), y[:-1]])
    return y - previous


class ChangeLDS(LinearGaussianSSM):
    method = "delta-lds-em"
    PARAMS = (*LinearGaussianSSM.PARAMS, "first_mean")
    PARAMS_FITTED = LinearGaussianSSM.PARAMS

    def __init__(self, config=None):
        super().__init__(config)
        self.first_mean = None

    def _changes(self, sequences: Sequences) -> Sequences:
        return [(u, turn_changes(y, self.first_mean)) for u, y in sequences]

    def fit(self, sequences: Sequences, validation: Sequences | None = None) -> ChangeLDS:
        sequences = list(sequences)
        self.first_mean = np.mean([np.asarray(y[0], dtype=np.float64) for _, y in sequences], axis=0)
        validation = self._changes(validation) if validation else None
        return super().fit(self._changes(sequences), validation)

    def transform_many(self, sequences: Sequences) -> list[tuple[np.ndarray, np.ndarray]]:
        return super().transform_many(self._changes(sequences))

    def predict_next_many(self, sequences: Sequences) -> list[np.ndarray]:
        """E[y_{t+1} | turns <= t, u_{t+1}] = y_t + C E[z_{t+1} | ...] + d, for t = 1..T-1."""
        changes = super().predict_next_many(self._changes(sequences))
        return [np.asarray(y, dtype=np.float64)[:-1] + c for c, (_, y) in zip(changes, sequences, strict=True)]

    def score(self, sequences: Sequences) -> float:
        return super().score(self._changes(sequences))
