"""When two answers are the same answer: the one rule that adapters, rules, and tasks all use.

DEBATE solutions, final answers and references are free text ("B) No.", "(b)", "no"); comparing them raw
would call most agreements disagreements. One module so that the DEBATE adapter's ``answer_correct``, the
rules' agreement, the mapping adapter's correctness and the benchmark tasks can never disagree.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

_OPTION = re.compile(r"\(?([a-z])(?:\)|\.|:|$)")


def normalize_answer(text: str) -> str:
    """Case, spaces and trailing punctuation do not change an answer: 'B) No.' == 'b) no'."""
    text = re.sub(r"\s+", " ", text).strip().casefold()
    return text.strip(" .!;:'\"`*")


def _option_letter(normalized: str) -> str | None:
    """'b) no', 'b.', '(b)' and 'b' name option b; 'no' and 'a dog' name none."""
    match = _OPTION.match(normalized)
    return match.group(1) if match else None


def answers_match(answer: str, reference: str) -> bool:
    """Equal after normalization, or the same option letter when both name one ('B) No' vs 'B')."""
    a, b = normalize_answer(answer), normalize_answer(reference)
    if a == b:
        return True
    letter_a, letter_b = _option_letter(a), _option_letter(b)
    return letter_a is not None and letter_a == letter_b


def is_correct(answer: str | None, references: list[str]) -> bool | None:
    """Whether ``answer`` matches any reference; None when there is no answer or nothing to compare with."""
    if answer is None or not references:
        return None
    return any(answers_match(answer, reference) for reference in references)


def turn_majority(messages: list[dict[str, Any]]) -> str | None:
    """The most common ``solution`` of a turn's messages after normalization (ties: the latest message's)."""
    solutions = [m["solution"] for m in messages if m["solution"] and m["solution"].strip()]
    if not solutions:
        return None
    counts = Counter(normalize_answer(s) for s in solutions)
    best = max(counts.values())
    return next(s for s in reversed(solutions) if counts[normalize_answer(s)] == best)
