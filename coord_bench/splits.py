"""Deterministic train/validation/test assignment by a group hash.

Records that share a group key (the same arena prompt, the same DEBATE question, the same scene setting)
share a hash and so a split: no question leaks from train into test.
"""

from __future__ import annotations

import hashlib
import re

DEFAULT_RATIOS = {"train": 0.8, "validation": 0.1, "test": 0.1}
SPLITS = tuple(DEFAULT_RATIOS)


def normalize_text(text: str) -> str:
    """Lower-case and collapse whitespace, so trivially different copies of a prompt group together."""
    return re.sub(r"\s+", " ", text).strip().casefold()


def group_hash(key: str) -> str:
    """16 hex digits of sha256 of the group key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def assign_split(group: str, ratios: dict[str, float] | None = None) -> str:
    """Map a group hash to a split: its position in [0, 1) against the cumulative ratios."""
    ratios = ratios or DEFAULT_RATIOS
    position = int(group, 16) / 16 ** len(group)
    total = sum(ratios.values())
    cumulative = 0.0
    for split, ratio in ratios.items():
        cumulative += ratio / total
        if position < cumulative:
            return split
    return split
