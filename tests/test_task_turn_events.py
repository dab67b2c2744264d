"""turn_events: keyword cues that follow the agreement flags find the agreement events, cues that ignore them
do not; the first turn's correctness predicts the transition only where answers do not move; a user's events
score like the baseline's, and malformed events are named."""

from __future__ import annotations

import json
import random

import pytest
from synthetic import debate, round_trip, write_build

from coord_bench.evaluate import collect, score_predictions, score_task
from coord_bench.tasks.base import PredictionError
from coord_bench.tasks.turn_events import agreement_events, matched

SPLITS = ("train", "validation", "test")


def debates(n: int, cues_follow_flags: bool, answers_move: bool, seed: int = 0) -> list[dict]:
    """Four-turn debates with random agreement per turn; the texts voice agreement as the flags say (or at
    random); the answer stays at its first-turn value (or flips at random)."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        first = rng.choice("AB")
        turns, texts = [], []
        for t in range(4):
            agreed = rng.random() < 0.5
            answer = rng.choice("AB") if answers_move and t else first
            turns.append([(answer, agreed), (answer, agreed), (answer, None)])
            voiced = agreed if cues_follow_flags else rng.random() < 0.5
            texts.append("I agree with that." if voiced else "I disagree with that.")
        record = debate(i, rng.choices(SPLITS, [0.6, 0.2, 0.2])[0], turns, correct=None, reference="A")
        for turn, text in zip(record["turns"], texts, strict=True):
            for m in turn["messages"]:
                m["text"], m["n_chars"] = f"{text} I say {m['solution']}.", len(text) + 9
        records.append(record)
    return records


def rows_of(folder):
    _, tasks, examples = collect(folder, ["turn_events"], progress=False)
    entry = score_task(tasks["turn_events"], examples["turn_events"])
    assert entry["status"] == "ok", entry["reason"]
    return {(r["predictor"], r["subset"]): r for r in entry["results"]}, tasks["turn_events"], examples["turn_events"]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return write_build(tmp_path_factory.mktemp("events") / "build", debates(200, True, answers_move=False))


def test_events_follow_the_flags_with_a_one_turn_tolerance():
    assert agreement_events([None, True, True, False, None, True]) == [
        {"turn_index": 1, "event": "agreement_reached"}, {"turn_index": 3, "event": "agreement_broken"},
        {"turn_index": 5, "event": "agreement_reached"},
    ]  # fmt: skip
    gold = [{"turn_index": 2, "event": "agreement_reached"}]
    assert matched([{"turn_index": 3, "event": "agreement_reached"}], gold) == 1
    assert matched([{"turn_index": 4, "event": "agreement_reached"}], gold) == 0
    assert matched([{"turn_index": 2, "event": "agreement_broken"}], gold) == 0
    assert matched([{"turn_index": 1, "event": "agreement_reached"}] * 2, gold) == 1  # one gold event, one match


def test_cues_that_follow_the_flags_find_the_events_and_cues_that_do_not_fail(planted, tmp_path):
    rows, _, _ = rows_of(planted)
    found = rows["text_cues", "events"]["metrics"]["event_f1"]
    assert found["value"] == 1.0
    kept = rows["first_turn_kept", "transition"]["metrics"]["accuracy"]
    assert kept["value"] == 1.0  # answers never move here
    assert "reason" in rows["rules_layer", "all"] and "reason" in rows["judge", "all"]
    noise, _, _ = rows_of(write_build(tmp_path / "noise", debates(200, False, answers_move=True, seed=1)))
    lost = noise["text_cues", "events"]["metrics"]["event_f1"]
    assert lost["high"] < found["low"]
    moved = noise["first_turn_kept", "transition"]["metrics"]["accuracy"]
    assert moved["low"] <= 0.5 <= moved["high"]  # the last answer is a coin: the first turn tells nothing


def test_a_users_events_score_like_the_baseline_and_malformed_ones_are_named(planted, tmp_path):
    rows, _, _ = rows_of(planted)
    path = tmp_path / "events.jsonl"
    scored = round_trip(planted, "turn_events", "text_cues", path)
    assert scored[0]["metrics"] == rows["text_cues", "events"]["metrics"]
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for bad, message in (
        ({"events": [{"turn_index": "1", "event": "agreement_reached"}]}, "field 'events' item 0: expected"),
        ({"events": [{"turn_index": 1, "event": "handoff"}]}, "field 'events' item 0: expected"),
        ({"transition": "CX"}, "field 'transition': expected one of CC, CW, WC, WW"),
        ({"events": {}}, "field 'events': expected a list"),
    ):
        path.write_text("".join(json.dumps({"id": line["id"], **bad}) + "\n" for line in lines[:1])
                        + "".join(json.dumps(line) + "\n" for line in lines[1:]))  # fmt: skip
        with pytest.raises(PredictionError, match=f"line 1: {message}"):
            score_predictions(planted, "turn_events", path, progress=False)
