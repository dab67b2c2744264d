"""Choosing the latent dimension k and the rank bound r on the validation split, never on the test split.

Each candidate is fitted on the training conversations (EM stopping early on the validation ones) and scored
by its next-turn R^2 on the validation conversations; the best wins, the smaller model on a tie. Without a
validation conversation of two or more turns nothing can be chosen honestly: the first feasible candidate
is kept, and the record says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

K_GRID = (4, 8, 12, 16)
DEFAULT_K = 8


def candidates(k: int | None, r: int | str | None, k_grid, max_k: int) -> list[tuple[int, int | None]]:
    """(k, r) pairs to try: the given k or every feasible k of the grid; the given r, or with r "auto" full
    rank (None) and k // 2."""
    ks = [k] if k is not None else [g for g in k_grid if g <= max_k] or [min(k_grid)]
    pairs = []
    for each in ks:
        ranks = [None, each // 2] if r == "auto" else [r]
        pairs += [(each, rank) for rank in dict.fromkeys(ranks)]
    return pairs


def select(
    fit: Callable[[int, int | None], Any], train, validation, pairs: list[tuple[int, int | None]]
) -> tuple[Any, dict[str, Any]]:
    """The fitted model of the best (k, r) and the record of the choice (criterion, every candidate's score)."""
    from coord_bench.mappers.latents.quality import next_turn_r2, train_moments  # sklearn: only when fitting

    scored = [s for s in validation if len(s[1]) > 1]
    if len(pairs) == 1 or not scored:
        k, r = (DEFAULT_K, None) if (DEFAULT_K, None) in pairs else pairs[0]
        reason = "one candidate" if len(pairs) == 1 else "no validation conversation has two turns: nothing chosen"
        return fit(k, r), {"criterion": None, "reason": reason, "chosen": {"k": k, "r": r}, "candidates": []}
    train_mean = train_moments(train, covariance=False)[0]
    table, best = [], None
    for k, r in pairs:
        model = fit(k, r)
        score = next_turn_r2(model, scored, train_mean)
        table.append({"k": k, "r": r, "validation_r2": score, "em_iterations": model.dims.get("best_iter")})
        if best is None or (np.isfinite(score) and score > best[0]):
            best = (score, model, k, r)
    _, model, k, r = best
    record = {
        "criterion": "next-turn R² on the validation split",
        "validation_sequences": len(scored),
        "chosen": {"k": k, "r": r},
        "candidates": table,
    }
    return model, record
