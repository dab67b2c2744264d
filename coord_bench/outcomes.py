"""One readable label for a record's native outcome, shared by the judge's strata and the report's colours."""

from __future__ import annotations

from typing import Any


def outcome_label(outcome: dict[str, Any]) -> str:
    """The arena winner, else DEBATE correctness, else whether a decision was reached, else none."""
    if outcome.get("winner") is not None:
        return str(outcome["winner"])
    if outcome.get("answer_correct") is not None:
        return "answer correct" if outcome["answer_correct"] else "answer wrong"
    if outcome.get("decision_success") is not None:
        return "decision reached" if outcome["decision_success"] else "no decision"
    return "no native outcome"
