"""turn_events: find the turns where a debate reaches or breaks agreement, and how its answer moved.

Gold comes from the native fields only. A turn's agreement state is "agreed" when it has agreement flags and
all of them are true; a turn without flags keeps the previous state. ``agreement_reached`` is a turn whose
state is agreed after one that was not (the state before the first turn is "not agreed"), and
``agreement_broken`` the reverse. The transition compares the majority solution of the first and of the last
turn with the references: CC, CW (a collapse), WC (a correction), WW.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np

from coord_bench.answers import is_correct, turn_majority
from coord_bench.tasks.base import Example, PredictionError, Task
from coord_bench.tasks.metrics import Undefined, accuracy, estimate

EVENTS = ("agreement_reached", "agreement_broken")
TRANSITIONS = ("CC", "CW", "WC", "WW")
TOLERANCE = 1  # a predicted event matches a gold event of the same kind at most this many turns away
AGREE = re.compile(r"\b(i agree|we agree|agreed|i concur|consensus)\b", re.IGNORECASE)
DISAGREE = re.compile(r"\b(disagree|do not agree|don't agree|i object|not convinced)\b", re.IGNORECASE)


def agreement_events(states: list[bool | None]) -> list[dict[str, Any]]:
    """Events of a sequence of per-turn agreement states (None: no flags, the previous state holds)."""
    events, previous = [], False
    for turn, state in enumerate(states):
        if state is None:
            continue
        if state != previous:
            events.append({"turn_index": turn, "event": EVENTS[0] if state else EVENTS[1]})
        previous = state
    return events


def matched(predicted: list[dict[str, Any]], gold: list[dict[str, Any]]) -> int:
    """Predicted events that match a distinct gold event of the same kind within ``TOLERANCE`` turns
    (greedy, nearest first)."""
    free = list(gold)
    hits = 0
    for p in sorted(predicted, key=lambda e: e["turn_index"]):
        near = [g for g in free if g["event"] == p["event"] and abs(g["turn_index"] - p["turn_index"]) <= TOLERANCE]
        if near:
            free.remove(min(near, key=lambda g: abs(g["turn_index"] - p["turn_index"])))
            hits += 1
    return hits


def f1(hits: np.ndarray, predicted: np.ndarray, gold: np.ndarray) -> float:
    """Micro F1 over conversations: 2 * matches / (predicted + gold events)."""
    total = predicted.sum() + gold.sum()
    if not total:
        raise Undefined("no gold and no predicted event")
    return float(2 * hits.sum() / total)


class TurnEvents(Task):
    name = "turn_events"
    definition = (
        "Per turn of a debate, detect where the agents reach or break agreement (gold: the native agreement "
        "flags, a turn is agreed when all its flags are true), and name the conversation's answer transition "
        "from its first to its last turn against the references (CC, CW = collapse, WC = correction, WW). "
        "Metrics on test: event F1 with a +-1 turn tolerance (micro over conversations) and transition "
        "accuracy. A detector must not read the agreement flags or the solutions of later turns: they are the "
        "gold. Baselines: keyword cues in the message texts; the rules layer's events (which read the same "
        "flags: an upper bound, not a detector); the judge layer's events where labelled; for the transition, "
        "the first turn's correctness kept to the end, and the most common transition of train."
    )
    prediction_fields = {
        "events": 'list of {"turn_index": int (0-based position of the turn), "event": "agreement_reached" | '
        '"agreement_broken"}; give it on every line or on none',
        "transition": '"CC" | "CW" | "WC" | "WW"; give it on every line or on none',
    }

    def example(self, record: dict[str, Any]) -> Example | None:
        turns = record["turns"]
        states = []
        for turn in turns:
            flags = [m["agreement"] for m in turn["messages"] if m["agreement"] is not None]
            states.append(all(flags) if flags else None)
        references = record["task"]["references"]
        majorities = [turn_majority(turns[0]["messages"]), turn_majority(turns[-1]["messages"])] if turns else []
        transition = None
        if references and majorities and None not in majorities:
            right = ["C" if is_correct(m, references) else "W" for m in majorities]
            transition = "".join(right)
        has_flags = any(s is not None for s in states)
        if not has_flags and transition is None:
            return None
        coordination = (record["annotations"] or {}).get("coordination") or {}
        position = {t["index"]: i for i, t in enumerate(turns)}
        rules = (coordination.get("rules") or {}).get("events")
        judged = [j for j in coordination.get("judges") or [] if j["status"] == "ok"]
        return Example(
            record["id"], record["split"], record["split_group"],
            {"events": agreement_events(states) if has_flags else None, "transition": transition},
            {"cue_states": [_cue_state(t["messages"]) for t in turns], "first": majorities[0] if majorities else None,
             "first_right": transition[0] if transition else None,
             "rules": None if rules is None else _ours(rules, position),
             "judge": _ours(judged[0]["events"], position) if judged else None},
        )  # fmt: skip

    def unsupported(self, examples: list[Example]) -> str | None:
        reason = super().unsupported(examples)
        if reason:
            return reason
        test = [e for e in examples if e.split == "test"]
        if not any(e.gold["events"] is not None for e in test) and not any(e.gold["transition"] for e in test):
            return "no test conversation has agreement flags or references"
        return None

    def baselines(self):
        return {
            "text_cues": lambda train, validation, test: {
                e.id: {"events": agreement_events(e.features["cue_states"])} for e in test},
            "rules_layer": _from_layer("rules", "the rules layer did not run"),
            "judge": _from_layer("judge", "no judge labels in this build (label the build first)"),
            "first_turn_kept": lambda train, validation, test: {
                e.id: {"transition": (e.features["first_right"] or "W") * 2} for e in test},
            "majority_transition": _majority_transition,
        }  # fmt: skip

    def check_prediction(self, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - {"events", "transition"})
        if unknown or not value:
            raise PredictionError(f"expected the fields events and/or transition, found {', '.join(unknown) or 'none'}")
        out = {}
        if "events" in value:
            events = value["events"]
            if not isinstance(events, list):
                raise PredictionError(f"field 'events': expected a list, found {type(events).__name__}")
            for i, event in enumerate(events):
                if (not isinstance(event, dict) or set(event) != {"turn_index", "event"} or event["event"] not in EVENTS
                        or isinstance(event["turn_index"], bool) or not isinstance(event["turn_index"], int)):
                    raise PredictionError(f"field 'events' item {i}: expected {{\"turn_index\": int, \"event\": one "
                                          f"of {', '.join(EVENTS)}}}, found {event!r}")  # fmt: skip
            out["events"] = events
        if "transition" in value:
            if value["transition"] not in TRANSITIONS:
                raise PredictionError(f"field 'transition': expected one of {', '.join(TRANSITIONS)}, "
                                      f"found {value['transition']!r}")  # fmt: skip
            out["transition"] = value["transition"]
        return out

    def score(self, test: list[Example], predictions: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        rows = []
        kinds = {field for p in predictions.values() for field in p}
        for field in sorted(kinds):
            missing = [e.id for e in test if field not in predictions[e.id]]
            if missing:
                raise PredictionError(f"{missing[0]}: field '{field}' is given for other test rows, not this one")
        if "events" in kinds:
            flagged = [e for e in test if e.gold["events"] is not None]
            hits = np.array([matched(predictions[e.id]["events"], e.gold["events"]) for e in flagged])
            counts = [np.array([len(predictions[e.id]["events"]) for e in flagged]),
                      np.array([len(e.gold["events"]) for e in flagged])]  # fmt: skip
            metrics = {"event_f1": estimate(f1, [e.group for e in flagged], hits, *counts)}
            rows.append({"subset": "events", "metrics": metrics})
        if "transition" in kinds:
            known = [e for e in test if e.gold["transition"]]
            gold = [e.gold["transition"] for e in known]
            guess = [predictions[e.id]["transition"] for e in known]
            metrics = {"accuracy": estimate(accuracy, [e.group for e in known], gold, guess)}
            rows.append({"subset": "transition", "metrics": metrics})
        return rows


def _cue_state(messages: list[dict[str, Any]]) -> bool | None:
    """Agreed when more messages voice agreement than disagreement; None when no message voices either."""
    agree = sum(bool(AGREE.search(m["text"])) and not DISAGREE.search(m["text"]) for m in messages)
    disagree = sum(bool(DISAGREE.search(m["text"])) for m in messages)
    return None if not agree and not disagree else agree > disagree


def _ours(events: list[dict[str, Any]], position: dict[int, int]) -> list[dict[str, Any]]:
    """A layer's events of the two kinds, with turns counted by position as the task counts them."""
    return [{"turn_index": position.get(e["turn_index"], e["turn_index"]), "event": e["event"]}
            for e in events if e["event"] in EVENTS]  # fmt: skip


def _from_layer(name: str, missing: str):
    def predict(train, validation, test):
        if any(e.features[name] is None for e in test):
            raise PredictionError(missing)
        return {e.id: {"events": e.features[name]} for e in test}

    return predict


def _majority_transition(train, validation, test):
    counts = Counter(e.gold["transition"] for e in train if e.gold["transition"])
    if not counts:
        raise PredictionError("no train conversation has references")
    guess = counts.most_common(1)[0][0]
    return {e.id: {"transition": guess} for e in test}
