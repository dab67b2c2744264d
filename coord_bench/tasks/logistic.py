"""The feature-set baselines' probe: standardized logistic regression, C chosen on validation.

C is chosen from a small grid by the validation log loss (ties: the smaller C, the stronger regularization);
when the validation rows hold one class only, log loss cannot rank the grid well and C is fixed at 1. Which of
the two happened is part of the probe, so a baseline can say it in its result rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coord_bench.tasks.base import PredictionError
from coord_bench.tasks.metrics import log_loss

C_GRID = (0.01, 0.1, 1.0, 10.0)
FIXED_C = 1.0


@dataclass
class Probe:
    model: object  # a fitted sklearn pipeline: StandardScaler -> LogisticRegression
    C: float
    chosen_on: str

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probability of the positive class, one per row of ``x``."""
        return self.model.predict_proba(np.asarray(x, float))[:, 1]

    @property
    def setting(self) -> dict[str, object]:
        return {"C": self.C, "C_chosen_on": self.chosen_on}


def fit_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> Probe:
    """A probe fitted on train; ``PredictionError`` when the train rows hold one class only."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, y_train = np.asarray(x_train, float), np.asarray(y_train, bool)
    if len(np.unique(y_train)) < 2:
        raise PredictionError(f"the {len(y_train)} labelled train rows hold one class only")

    def fit(c: float):
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(x_train, y_train)

    y_val = np.asarray(y_val, bool)
    if len(np.unique(y_val)) < 2:
        return Probe(fit(FIXED_C), FIXED_C, "fixed (validation rows lack a class)")
    x_val = np.asarray(x_val, float)
    fits = {c: fit(c) for c in C_GRID}
    losses = {c: log_loss(y_val.astype(int), model.predict_proba(x_val)) for c, model in fits.items()}
    best = min(C_GRID, key=lambda c: (losses[c], c))
    return Probe(fits[best], best, "validation log loss")
