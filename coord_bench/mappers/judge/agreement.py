"""Consensus of several judges and agreement statistics.

- per conversation: the median of the judges' scores; the majority class (agreement level ties go to the
  lower level, preferred ties to ``tie``);
- between judges: Cohen's kappa for each pair (``(p_o - p_e) / (1 - p_e)``) and Krippendorff's alpha over all
  judges (``1 - D_o / D_e`` from the coincidence matrix; nominal for classes, interval for scores), which
  allows missing labels;
- against ground truth: accuracy and Cohen's kappa of the judges' success (median score >= threshold)
  against the arena's decisive vote and against DEBATE correctness; the arena preference against the vote.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Hashable, Sequence
from itertools import combinations
from typing import Any

LEVELS = ("none", "partial", "full")


def median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def majority_level(levels: Sequence[str]) -> str | None:
    if not levels:
        return None
    counts = Counter(levels)
    best = max(counts.values())
    return min((lv for lv, c in counts.items() if c == best), key=LEVELS.index)


def majority_preference(values: Sequence[str]) -> str | None:
    if not values:
        return None
    counts = Counter(values)
    best = max(counts.values())
    winners = [v for v, c in counts.items() if c == best]
    return winners[0] if len(winners) == 1 else "tie"


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Cohen's kappa of two raters over the same items; None without items, 1.0 for perfect trivial agreement."""
    if len(a) != len(b):
        raise ValueError("cohen_kappa needs two equally long label lists")
    n = len(a)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(a, b, strict=True)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / (n * n)
    if expected == 1:
        return 1.0 if observed == 1 else 0.0
    return (observed - expected) / (1 - expected)


def krippendorff_alpha(units: Sequence[Sequence[Any]], metric: str = "nominal") -> float | None:
    """Krippendorff's alpha; ``units[i]`` holds the labels of item i by each rater (None = missing)."""
    values = [[v for v in unit if v is not None] for unit in units]
    values = [u for u in values if len(u) >= 2]
    n = sum(len(u) for u in values)
    if n < 2:
        return None

    def delta(x: Any, y: Any) -> float:
        if metric == "nominal":
            return 0.0 if x == y else 1.0
        if metric == "interval":
            return (float(x) - float(y)) ** 2
        raise ValueError(f"unknown metric {metric!r}")

    observed = 0.0
    for unit in values:
        m = len(unit)
        observed += sum(delta(x, y) for i, x in enumerate(unit) for j, y in enumerate(unit) if i != j) / (m - 1)
    observed /= n
    pooled = [v for u in values for v in u]
    expected = sum(delta(x, y) for i, x in enumerate(pooled) for j, y in enumerate(pooled) if i != j)
    expected /= n * (n - 1)
    if expected == 0:
        return 1.0 if observed == 0 else None
    return 1 - observed / expected


def binary_agreement(truth: Sequence[bool], predicted: Sequence[bool]) -> dict[str, Any]:
    n = len(truth)
    return {
        "n": n,
        "accuracy": (sum(t == p for t, p in zip(truth, predicted, strict=True)) / n) if n else None,
        "kappa": cohen_kappa(list(truth), list(predicted)),
    }


def inter_judge(per_row: dict[str, dict[str, dict[str, Any]]], models: list[str], threshold: float) -> dict[str, Any]:
    """Agreement between judges over the rows each pair (or all) labelled ok."""
    if len(models) < 2:
        return {"note": "one judge model: no inter-judge agreement"}
    out: dict[str, Any] = {"pairs": []}
    for a, b in combinations(models, 2):
        both = [
            r for r in per_row.values() if r.get(a, {}).get("status") == "ok" and r.get(b, {}).get("status") == "ok"
        ]
        out["pairs"].append(
            {
                "judges": [a, b],
                "n": len(both),
                "kappa_agreement_level": cohen_kappa(
                    [r[a]["agreement_level"] for r in both], [r[b]["agreement_level"] for r in both]
                ),
                "kappa_success": cohen_kappa(
                    [r[a]["success_score"] >= threshold for r in both],
                    [r[b]["success_score"] >= threshold for r in both],
                ),
            }
        )

    def column(field: str, transform=lambda v: v) -> list[list[Any]]:
        return [
            [transform(r[m][field]) if r.get(m, {}).get("status") == "ok" else None for m in models]
            for r in per_row.values()
        ]

    out["krippendorff_alpha"] = {
        "agreement_level": krippendorff_alpha(column("agreement_level")),
        "success": krippendorff_alpha(column("success_score", lambda v: v >= threshold)),
        "success_score_interval": krippendorff_alpha(column("success_score"), metric="interval"),
        "n_rows": sum(1 for unit in column("success_score") if sum(v is not None for v in unit) >= 2),
    }
    return out
