"""Answer matching: the one rule behind DEBATE correctness, the rules' agreement and the benchmark tasks."""

from __future__ import annotations

import pytest

from coord_bench.answers import answers_match, is_correct, normalize_answer, turn_majority


def said(*solutions):
    return [{"solution": s} for s in solutions]


@pytest.mark.parametrize(
    ("answer", "reference", "same"),
    [
        ("B) No.", "b) no", True),  # case and trailing punctuation
        ("  the   answer  ", "The answer!", True),  # spaces
        ("(b)", "B", True),  # the same option letter
        ("B) No", "B) Yes", True),  # both name option b: the letter decides
        ("a dog", "A", False),  # 'a dog' names no option
        ("no", "yes", False),
        ("C", "B", False),
    ],
)
def test_answers_match_ignores_form_but_not_content(answer, reference, same):
    assert answers_match(answer, reference) is same


def test_normalize_answer_keeps_inner_punctuation():
    assert normalize_answer(" 3.14\n") == "3.14"
    assert normalize_answer("`x = 1`;") == "x = 1"


def test_is_correct_is_unknown_without_an_answer_or_references():
    assert is_correct(None, ["B"]) is None
    assert is_correct("B", []) is None
    assert is_correct("b.", ["A", "B"]) is True
    assert is_correct("C", ["A", "B"]) is False


def test_turn_majority_counts_normalized_answers_and_breaks_ties_by_the_latest():
    assert turn_majority(said("B) No", "b) no.", "A")) == "b) no."  # two votes for one answer: its latest form
    assert turn_majority(said("B) No", "b", "A")) == "A"  # three answers as text (letters are not merged here)
    assert turn_majority(said("yes", "Yes.", "no")) == "Yes."
    assert turn_majority(said("A", "B")) == "B"
    assert turn_majority(said(None, "  ", "")) is None
    assert turn_majority([]) is None
