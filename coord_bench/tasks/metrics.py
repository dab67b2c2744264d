"""Metrics of the benchmark tasks, each with a 95% interval from a bootstrap that resamples split groups.

Rows of one split group (a DEBATE exampleId, an arena prompt) are not independent, so the bootstrap draws
whole groups with replacement (``BOOTSTRAP_SAMPLES`` draws, seed fixed) and takes the 2.5 and 97.5
percentiles of the metric over the draws where it is defined (AUROC needs both classes). A metric that is
undefined on the test rows themselves is reported as null with the reason, never as a number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

BOOTSTRAP_SAMPLES = 1000
BOOTSTRAP_SEED = 0
ECE_BINS = 10


class Undefined(ValueError):
    """The metric has no value on these rows (the message says why)."""


def auroc(gold: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve: the chance a positive row scores above a negative one (ties count half)."""
    gold = np.asarray(gold, dtype=bool)
    positives, negatives = np.asarray(score, float)[gold], np.asarray(score, float)[~gold]
    if not len(positives) or not len(negatives):
        raise Undefined("AUROC needs rows of both classes")
    ranks = _midranks(np.concatenate([positives, negatives]))
    return float((ranks[: len(positives)].sum() - len(positives) * (len(positives) + 1) / 2)
                 / (len(positives) * len(negatives)))  # fmt: skip


def _midranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def brier(gold: np.ndarray, probability: np.ndarray) -> float:
    """Mean squared error of the predicted probability of the positive class."""
    return float(np.mean((np.asarray(probability, float) - np.asarray(gold, float)) ** 2))


def log_loss(gold: np.ndarray, probabilities: np.ndarray, eps: float = 1e-15) -> float:
    """Mean negative log-probability of the gold class; ``gold`` holds class indices, one row per example."""
    p = np.clip(np.asarray(probabilities, float)[np.arange(len(gold)), np.asarray(gold, int)], eps, 1.0)
    return float(-np.mean(np.log(p)))


def accuracy(gold: np.ndarray, predicted: np.ndarray) -> float:
    if not len(gold):
        raise Undefined("no rows")
    return float(np.mean(np.asarray(gold) == np.asarray(predicted)))


def expected_calibration_error(gold: np.ndarray, probabilities: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE: |accuracy - confidence| of the most likely class, weighted over equal-width bins."""
    probabilities = np.asarray(probabilities, float)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(gold, int)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def estimate(
    metric: Callable[..., float],
    groups: Sequence[str],
    *columns: Sequence[Any],
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, Any]:
    """``metric(*columns)`` on every row, with the group-bootstrap 95% interval: {value, low, high, n, ...}."""
    columns = [np.asarray(c) for c in columns]
    n = len(groups)
    try:
        value = float(metric(*columns))
    except Undefined as why:
        return {"value": None, "low": None, "high": None, "n": n, "reason": str(why)}
    names, index = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    members = [np.flatnonzero(index == g) for g in range(len(names))]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(samples):
        rows = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        try:
            draws.append(float(metric(*(c[rows] for c in columns))))
        except Undefined:
            continue
    low, high = (np.percentile(draws, [2.5, 97.5]).tolist() if draws else (None, None))
    return {"value": value, "low": low, "high": high, "n": n, "groups": len(members), "bootstrap_valid": len(draws)}


def difference(
    metric: Callable[..., float],
    groups: Sequence[str],
    gold: Sequence[Any],
    first: Sequence[Any],
    second: Sequence[Any],
) -> dict[str, Any]:
    """metric(gold, first) - metric(gold, second), paired: both on the same bootstrap draws."""
    return estimate(lambda g, a, b: metric(g, a) - metric(g, b), groups, gold, first, second)


def format_estimate(est: dict[str, Any], with_n: bool = False) -> str:
    """``0.612 [0.540, 0.690]`` (and ``(n=40)``), or ``n/a (why)`` for an undefined metric."""
    if est["value"] is None:
        return f"n/a ({est.get('reason', 'undefined')})"
    interval = f" [{est['low']:.3f}, {est['high']:.3f}]" if est["low"] is not None else ""
    return f"{est['value']:.3f}{interval}" + (f" (n={est['n']})" if with_n else "")


def excludes(est: dict[str, Any], value: float) -> bool:
    """Whether the interval of ``est`` lies wholly on one side of ``value`` (evidence of a difference)."""
    return est["low"] is not None and (est["low"] > value or est["high"] < value)
