"""Honest quality checks for the latent models (numbers only, no plotting).

- next-turn prediction on the test split: one-step-ahead R^2 in the full embedding space, of the change
  y_{t+1} - y_t, and in the top-k principal subspace of the train turns, each with a bootstrap interval by
  conversation, against the baselines a latent model has to beat (train mean, copy the last turn, PCA with
  and without dynamics) and the order controls (the same model fitted on shuffled and on reversed turns);
  held-out log-likelihood per turn; and plain-language verdicts that say "no" unless an interval excludes 0;
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

N_BOOT = 1000  # bootstrap resamples of the test conversations


def _pooled_r2(predictions, targets, train_mean: np.ndarray) -> float:
    """1 - SSE / SST pooled over every predicted turn and dimension, SST around the TRAIN mean."""
    sse, sst = _sums(predictions, targets, train_mean).sum(axis=0)
    return 1.0 - sse / sst if sst > 0 else float("nan")


def _sums(predictions, targets, reference: np.ndarray) -> np.ndarray:
    """Per sequence (rows): [SSE of the predictions, SST around ``reference``] (sequences x 2)."""
    rows = []
    for predicted, target in zip(predictions, targets, strict=True):
        target = np.asarray(target, dtype=np.float64)
        rows.append([float(((target - predicted) ** 2).sum()), float(((target - reference) ** 2).sum())])
    return np.array(rows, dtype=np.float64).reshape(-1, 2)


def next_turn_r2(model, sequences, train_mean: np.ndarray) -> float:
    """Held-out one-step-ahead R^2 of `model.predict_next_many` (y_{t+1} from turns <= t and u_{t+1})."""
    return _pooled_r2(model.predict_next_many(sequences), [np.asarray(y)[1:] for _, y in sequences], train_mean)


def _shuffled(sequences, seed: int):
    """Each conversation with its turns (input and observation together) in a seeded random order."""
    rng = np.random.default_rng(seed)
    out = []
    for u, y in sequences:
        order = rng.permutation(len(y))
        out.append((np.asarray(u)[order], np.asarray(y)[order]))
    return out


def _reversed(sequences):
    return [(np.asarray(u)[::-1], np.asarray(y)[::-1]) for u, y in sequences]


def train_moments(sequences, covariance: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(mean turn, mean turn-to-turn change, covariance of the turns, or None without ``covariance``) of
    training sequences, summed one sequence at a time in float64: no copy of the corpus, which grows."""
    n = n_changes = 0
    total = change_total = gram_total = None
    for _, y in sequences:
        y = np.asarray(y, dtype=np.float64)
        if total is None:
            total, change_total = np.zeros(y.shape[1]), np.zeros(y.shape[1])
            gram_total = np.zeros((y.shape[1], y.shape[1])) if covariance else None
        n, total = n + len(y), total + y.sum(axis=0)
        if covariance:
            gram_total += y.T @ y
        if len(y) > 1:
            n_changes, change_total = n_changes + len(y) - 1, change_total + (y[-1] - y[0])  # the changes telescope
    mean = total / n
    mean_change = change_total / n_changes if n_changes else np.zeros_like(mean)
    return mean, mean_change, (gram_total / n - np.outer(mean, mean)) if covariance else None


def _spaces(moments: tuple[np.ndarray, np.ndarray, np.ndarray], k: int):
    """The three spaces predictions are scored in, as (name, transform of (predicted, test sequence), reference):
    the full embedding space around the train mean; the change y_{t+1} - y_t around the train mean change; and
    the top-k principal subspace of the train observations (around the train mean, so the reference is 0)."""
    mean, mean_change, covariance = moments
    values, vectors = np.linalg.eigh(covariance)
    basis = vectors[:, np.argsort(-values, kind="stable")[: min(k, len(values))]]  # dy x k

    def full(predicted, y):
        return predicted, y[1:]

    def change(predicted, y):
        return predicted - y[:-1], y[1:] - y[:-1]

    def subspace(predicted, y):
        return (predicted - mean) @ basis, (y[1:] - mean) @ basis

    return [("full", full, mean), ("change", change, mean_change), ("subspace", subspace, np.zeros(basis.shape[1]))]


def _interval(values) -> list[float]:
    return [float(v) for v in np.percentile(values, [2.5, 97.5])]


def _bootstrap_r2(sums: np.ndarray, resamples: list[np.ndarray]) -> list[float]:
    drawn = [sums[idx].sum(axis=0) for idx in resamples]
    return _interval([1.0 - sse / sst if sst > 0 else 0.0 for sse, sst in drawn])


def _paired(own: np.ndarray, other: np.ndarray, resamples: list[np.ndarray]) -> tuple[float, list[float]]:
    """R^2(own) - R^2(other) on the same targets, = (SSE_other - SSE_own) / SST, with its paired interval."""

    def difference(idx) -> float:
        sst = own[idx, 1].sum()
        return float((other[idx, 0].sum() - own[idx, 0].sum()) / sst) if sst > 0 else 0.0

    return difference(np.arange(len(own))), _interval([difference(idx) for idx in resamples])


def next_turn_report(
    model, train_sequences, test_sequences, k: int, seed: int, comparisons: dict | None = None, n_boot: int = N_BOOT
) -> dict[str, Any]:
    """Held-out next-turn quality of the fitted `model` and of its baselines, all on the test sequences' turns
    2..T, in three spaces (full, change, top-k subspace), each R^2 with a 95% bootstrap interval resampled by
    conversation, and each method's paired R^2 difference to copy-last with its interval.

    The flat keys ("model", "train_mean", "copy_last", "pca_no_dynamics", "pca_rrr", and one per entry of
    `comparisons`: other fitted models, e.g. the same model without dynamics or fitted on shuffled turns)
    are the full-space R^2s; "train_mean" is 0 there by construction (it is the SST reference).
    """
    moments = train_moments(train_sequences)
    train_mean = moments[0]
    test = [(u, np.asarray(y, dtype=np.float64)) for u, y in test_sequences]
    pca = PCAReducedRank(LDSConfig(k=k, seed=seed)).fit(train_sequences)
    predictions = {
        "model": model.predict_next_many(test),
        "train_mean": [np.broadcast_to(train_mean, (len(y) - 1, len(train_mean))) for _, y in test],
        "copy_last": [y[:-1] for _, y in test],
        "pca_no_dynamics": pca.predict_next_many(test, dynamics=False),
        "pca_rrr": pca.predict_next_many(test),
        **{name: other.predict_next_many(test) for name, other in (comparisons or {}).items()},
    }
    predicted_turns = int(sum(len(y) - 1 for _, y in test))
    report: dict[str, Any] = {
        "method": model.method,
        "model_hash": model.model_hash,
        "n_test_sequences": len(test),
        "n_predicted_turns": predicted_turns,
    }
    rng = np.random.default_rng(seed)
    resamples = [rng.integers(0, len(test), len(test)) for _ in range(n_boot)]
    spaces = {}
    for space, transform, reference in _spaces(moments, k):
        sums = {}
        for name, predicted in predictions.items():
            pairs = [transform(np.asarray(p, dtype=np.float64), y) for p, (_, y) in zip(predicted, test, strict=True)]
            sums[name] = _sums([p for p, _ in pairs], [t for _, t in pairs], reference)
        entry = {}
        for name, own in sums.items():
            sse, sst = own.sum(axis=0)
            result = {"r2": 1.0 - sse / sst if sst > 0 else float("nan")}
            result["ci"] = _bootstrap_r2(own, resamples) if predicted_turns else None
            others = ["copy_last"] + (["shuffled_order", "reversed_order"] if name == "model" else [])
            for other in others:
                if other != name and other in sums and predicted_turns:
                    result[f"minus_{other}"], result[f"minus_{other}_ci"] = _paired(own, sums[other], resamples)
            entry[name] = result
        spaces[space] = entry
        if space == "full":
            report.update({name: result["r2"] for name, result in entry.items()})
    report["spaces"] = spaces
    report["log_likelihood_per_turn"] = {
        name: float(m.score(test)) / sum(len(y) for _, y in test)
        for name, m in {"model": model, **(comparisons or {})}.items()
        if hasattr(m, "score")
    }
    return report


def order_controls(fit, train_sequences, seed: int) -> dict[str, Any]:
    """The same model fitted on turn-shuffled and on reversed training conversations: a latent whose
    predictions do not need the order of the turns is not recurrent."""
    return {"shuffled_order": fit(_shuffled(train_sequences, seed)), "reversed_order": fit(_reversed(train_sequences))}


def _claim(claim: str, difference: float, interval: list[float], what: str, digits: int, tail: str = "") -> str:
    """One verdict: "yes" only when the interval of the difference lies above 0."""
    low, high = interval
    answer = "yes" if low > 0 else "no evidence"
    return f"{claim}: {answer} ({what} {difference:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]{tail})"


def verdicts(report: dict[str, Any]) -> list[str]:
    """Plain-language claims, each with its number and interval; "no evidence" unless the interval excludes 0."""
    lines = []
    r2 = report.get("next_turn_r2") or {}
    change = (r2.get("spaces") or {}).get("change") or {}
    model = change.get("model") or {}
    if model.get("minus_copy_last_ci"):
        lines.append(
            _claim("beats copy-last on held-out turns", model["minus_copy_last"], model["minus_copy_last_ci"],
                   f"change R² {model['r2']:.3f}, difference", 4,
                   f" on {r2.get('n_predicted_turns')} turns of {r2.get('n_test_sequences')} test conversations")
        )  # fmt: skip
        if model.get("minus_shuffled_order_ci"):
            lines.append(
                _claim("beats the same model fitted on shuffled turns (does it use their order?)",
                       model["minus_shuffled_order"], model["minus_shuffled_order_ci"], "change R² difference", 4)
            )  # fmt: skip
    else:
        lines.append("beats copy-last on held-out turns: not enough data (no test conversation has two turns)")
    for target, probe in (report.get("probes") or {}).items():
        latents = ((probe.get("features") or {}).get("latents_plus_tokens")) or {}
        if probe.get("status") != "ok" or "delta_auc_ci" not in latents:
            lines.append(f"adds to token counts for predicting {target}: not enough data")
            continue
        claim = f"adds to token counts for predicting {target}"
        lines.append(_claim(claim, latents["delta_auc"], latents["delta_auc_ci"], "AUC", 3))
    return lines


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
