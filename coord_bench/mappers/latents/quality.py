"""Honest quality checks for the latent models (numbers only, no plotting).

- next-turn prediction: held-out one-step-ahead R^2 in observation space against the baselines a latent model
  has to beat (train mean, copy the last turn, PCA without dynamics);
- probes: does a feature set predict the native outcome under grouped cross-validation, with bootstrap
  intervals (latents must add to token counts before they can be said to carry coordination information);
- stability: principal angles between the latent subspaces of two refits.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.linalg import subspace_angles
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from coord_bench.mappers.latents.baseline import PCAReducedRank
from coord_bench.mappers.latents.config import LDSConfig

# ---- next-turn prediction -----------------------------------------------------------------------------------


def _pooled_r2(predictions, targets, train_mean: np.ndarray) -> float:
    """1 - SSE / SST pooled over every predicted turn and dimension, SST around the TRAIN mean."""
    sse = sst = 0.0
    for predicted, target in zip(predictions, targets, strict=True):
        target = np.asarray(target, dtype=np.float64)
        sse += float(((target - predicted) ** 2).sum())
        sst += float(((target - train_mean) ** 2).sum())
    return 1.0 - sse / sst if sst > 0 else float("nan")


def next_turn_r2(model, sequences, train_mean: np.ndarray) -> float:
    """Held-out one-step-ahead R^2 of `model.predict_next_many` (y_{t+1} from turns <= t and u_{t+1})."""
    return _pooled_r2(model.predict_next_many(sequences), [np.asarray(y)[1:] for _, y in sequences], train_mean)


def next_turn_report(model, train_sequences, test_sequences, k: int, seed: int) -> dict[str, Any]:
    """R^2 of the fitted `model` and of the baselines, all on the test sequences' turns 2..T.

    "train_mean" is 0 by construction (it is the SST reference); "pca_rrr" (PCA + linear transition, the
    LDS's initialisation) is reported too, since an LDS that does not beat it adds nothing.
    """
    train_mean = np.concatenate([np.asarray(y, dtype=np.float64) for _, y in train_sequences]).mean(axis=0)
    targets = [np.asarray(y)[1:] for _, y in test_sequences]
    pca = PCAReducedRank(LDSConfig(k=k, seed=seed)).fit(train_sequences)
    return {
        "method": model.method,
        "model_hash": model.model_hash,
        "n_predicted_turns": int(sum(len(t) for t in targets)),
        "model": next_turn_r2(model, test_sequences, train_mean),
        "train_mean": _pooled_r2([np.broadcast_to(train_mean, t.shape) for t in targets], targets, train_mean),
        "copy_last": _pooled_r2([np.asarray(y)[:-1] for _, y in test_sequences], targets, train_mean),
        "pca_no_dynamics": _pooled_r2(pca.predict_next_many(test_sequences, dynamics=False), targets, train_mean),
        "pca_rrr": _pooled_r2(pca.predict_next_many(test_sequences), targets, train_mean),
    }


# ---- probes -------------------------------------------------------------------------------------------------


def _grouped_splits(codes: np.ndarray, groups: np.ndarray, n_splits: int, seed: int):
    """Stratified grouped folds if every training fold keeps every class, else plain grouped folds."""
    n_classes = codes.max() + 1
    candidates = [
        ("StratifiedGroupKFold", StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)),
        ("GroupKFold", GroupKFold(n_splits=n_splits)),
    ]
    for name, splitter in candidates:
        splits = list(splitter.split(np.zeros(len(codes)), codes, groups))
        if all(len(np.unique(codes[train])) == n_classes for train, _ in splits):
            return name, splits
    return None, []


def _out_of_fold(x: np.ndarray, codes: np.ndarray, n_classes: int, splits, c: float) -> np.ndarray:
    prob = np.zeros((len(codes), n_classes))
    for train, test in splits:
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
        model.fit(x[train], codes[train])
        prob[test] = model.predict_proba(x[test])
    return prob


def _metrics(codes: np.ndarray, prob: np.ndarray) -> tuple[float, float]:
    labels = np.arange(prob.shape[1])
    loss = float(log_loss(codes, prob, labels=labels))
    if prob.shape[1] == 2:
        return loss, float(roc_auc_score(codes, prob[:, 1]))
    return loss, float(roc_auc_score(codes, prob, multi_class="ovr", average="macro", labels=labels))


def _interval(values: list[float]) -> list[float]:
    return [float(v) for v in np.percentile(values, [2.5, 97.5])]


def probe_report(
    features: dict[str, np.ndarray],
    y: np.ndarray,
    groups: np.ndarray,
    seed: int,
    n_boot: int = 200,
    c: float = 1.0,
    baseline: str | None = None,
) -> dict[str, Any]:
    """Grouped-CV logistic-regression probes of the outcome `y` from each feature set (rows x features).

    Standardised features, L2 penalty C=`c` (multinomial for > 2 classes); all feature sets share the folds
    and the bootstrap resamples. Out-of-fold log-loss and AUC (one-vs-rest macro for > 2 classes), each with
    a seeded 95% percentile bootstrap interval over rows (rows of one group are correlated, so these
    intervals are if anything narrow). With `baseline` (e.g. "tokens"), every other set also gets the paired
    difference to it ("delta_auc" > 0 and "delta_log_loss" < 0 mean better), with its interval.
    Tiny data (< 10 rows, < 2 classes, or a class seen in < 2 groups) gives status "insufficient data".
    """
    y, groups = np.asarray(y), np.asarray(groups)
    classes, codes = np.unique(y, return_inverse=True)
    groups_per_class = {str(cls): int(len(np.unique(groups[codes == i]))) for i, cls in enumerate(classes)}
    summary: dict[str, Any] = {
        "n_rows": int(len(y)),
        "n_groups": int(len(np.unique(groups))),
        "class_counts": {str(cls): int((codes == i).sum()) for i, cls in enumerate(classes)},
        "groups_per_class": groups_per_class,
    }
    if len(y) < 10 or len(classes) < 2 or min(groups_per_class.values()) < 2:
        return {"status": "insufficient data", **summary}
    n_splits = min(5, min(groups_per_class.values()))
    cv_name, splits = _grouped_splits(codes, groups, n_splits, seed)
    if not splits:
        return {"status": "insufficient data", "reason": "no grouped split keeps every class in training", **summary}
    if baseline is not None and baseline not in features:
        raise ValueError(f"baseline {baseline!r} is not one of the feature sets {sorted(features)}")

    probs = {}
    for name, x in features.items():
        x = np.asarray(x, dtype=np.float64).reshape(len(y), -1)
        if not np.isfinite(x).all():
            raise ValueError(f"feature set {name!r} has non-finite values")
        probs[name] = _out_of_fold(x, codes, len(classes), splits, c)

    rng = np.random.default_rng(seed)
    resamples = [rng.integers(0, len(y), len(y)) for _ in range(n_boot)]
    resamples = [idx for idx in resamples if len(np.unique(codes[idx])) == len(classes)]  # AUC needs all classes
    boot = {name: [_metrics(codes[idx], prob[idx]) for idx in resamples] for name, prob in probs.items()}

    report: dict[str, Any] = {}
    for name, prob in probs.items():
        loss, auc = _metrics(codes, prob)
        entry: dict[str, Any] = {
            "n_features": int(np.asarray(features[name]).reshape(len(y), -1).shape[1]),
            "log_loss": loss,
            "log_loss_ci": _interval([b[0] for b in boot[name]]),
            "auc": auc,
            "auc_ci": _interval([b[1] for b in boot[name]]),
        }
        if baseline is not None and name != baseline:
            base_loss, base_auc = _metrics(codes, probs[baseline])
            paired = list(zip(boot[baseline], boot[name], strict=True))
            entry["delta_auc"] = auc - base_auc
            entry["delta_auc_ci"] = _interval([mine[1] - base[1] for base, mine in paired])
            entry["delta_log_loss"] = loss - base_loss
            entry["delta_log_loss_ci"] = _interval([mine[0] - base[0] for base, mine in paired])
        report[name] = entry
    return {
        "status": "ok",
        **summary,
        "classes": [str(cls) for cls in classes],
        "cv": cv_name,
        "n_splits": n_splits,
        "n_boot": len(resamples),
        "features": report,
    }


# ---- stability ----------------------------------------------------------------------------------------------


def principal_angles(c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """Principal angles in degrees, ascending, between the column spaces of two dy x k loading matrices."""
    return np.sort(np.degrees(subspace_angles(np.asarray(c1, dtype=np.float64), np.asarray(c2, dtype=np.float64))))


def stability_report(model_a, model_b) -> dict[str, Any]:
    """How far apart the latent subspaces (C, or the PCA loadings) of two refits are; 0 degrees = identical."""
    angles = principal_angles(model_a.loadings, model_b.loadings)
    return {
        "method": model_a.method,
        "max_angle_deg": float(angles.max()),
        "mean_angle_deg": float(angles.mean()),
        "angles_deg": [float(a) for a in angles],
        "model_hashes": [model_a.model_hash, model_b.model_hash],
    }
