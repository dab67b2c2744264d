"""Rule-based coordination labels for every conversation: success, efficiency, agreement level, turn events,
and the MAST failure modes that native evidence can decide.

The method and its formulas, as the dataset card publishes them: ``coord_bench/card_methods/rules.md``.

MAST (``coord_bench.labels``): each rule of ``MAST_RULES`` evidences one mode. A mode is ``yes`` when one of
its rules finds its evidence, ``no`` when its rules can be evaluated on the record and none finds it, and
absent (no label) when none can be evaluated there (e.g. answer rules without references). A ``no`` says the
operationalized criterion is absent, not that the mode in its full sense is. The rules cannot judge modes
1.1, 1.2, 1.4, 2.1, 2.2, 2.3, 2.4, 2.6 and 3.2 (they need reading the text): those are never emitted here,
not emitted as null either, so that a missing rule label always means "no rule applies".
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from coord_bench.answers import answers_match, is_correct, turn_majority
from coord_bench.labels import (
    LABEL_SCHEMA_VERSION,
    MAST_MODES,
    coordination_of,
    make_label,
    rule_provenance,
    with_labels,
)
from coord_bench.mappers.layer import Layer, LayerContext
from coord_bench.record import agent_roles
from coord_bench.schema import DECISIVE_WINNERS

VERSION = "rules-v2"
RULE_SET = "coord_bench.rules"
PROVENANCE = rule_provenance(RULE_SET, VERSION)
MIN_REPEAT_CHARS = 20  # shorter lines ("Yes.", "*nods*") recur in any dialogue without being a repeated step


def efficiency(success: bool | None, total_tokens: int | None) -> float | None:
    """Successes per 1,000 tokens (see the module docstring)."""
    if success is None or not total_tokens:
        return None
    return (1.0 if success else 0.0) / (total_tokens / 1000)


def flag_fraction(messages: list[dict[str, Any]]) -> float | None:
    flags = [m["agreement"] for m in messages if m.get("agreement") is not None]
    return sum(flags) / len(flags) if flags else None


def solution_share(messages: list[dict[str, Any]]) -> tuple[float | None, int]:
    """(largest matching group / number of solutions, largest group size); (None, 0) with fewer than 2."""
    solutions = [m["solution"] for m in messages if m.get("solution") and m["solution"].strip()]
    if len(solutions) < 2:
        return None, 0
    largest = max(sum(answers_match(a, b) for b in solutions) for a in solutions)
    return largest / len(solutions), largest


def flag_agreement(messages: list[dict[str, Any]]) -> str | None:
    """full / partial / none from the agreement flags and solutions of one turn (see the module docstring)."""
    f = flag_fraction(messages)
    s, largest = solution_share(messages)
    if f is None and s is None:
        return None
    if (f is None or f == 1) and (s is None or s == 1):
        return "full"
    if (f is None or f == 0) and (s is None or largest == 1):
        return "none"
    return "partial"


def level_from_similarity(similarity: float | None, full: float, partial: float) -> str | None:
    if similarity is None:
        return None
    return "full" if similarity >= full else "partial" if similarity >= partial else "none"


def _has_flags(record: dict[str, Any]) -> bool:
    return any(
        m.get("agreement") is not None or (m.get("solution") or "").strip()
        for t in record["turns"]
        for m in t["messages"]
    )


def final_messages(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages whose embeddings decide agreement: the last message of each non-user agent of the final
    turn when two or more speak there, else the last message of each of the last two distinct speakers."""
    roles = agent_roles(record)
    last_turn = [m for m in record["turns"][-1]["messages"] if roles.get(m["agent_id"]) != "user"]
    by_agent: dict[str, dict[str, Any]] = {}
    for m in last_turn:
        by_agent[m["agent_id"]] = m
    if len(by_agent) >= 2:
        return list(by_agent.values())
    picked: dict[str, dict[str, Any]] = {}
    for turn in reversed(record["turns"]):
        for m in reversed(turn["messages"]):
            if roles.get(m["agent_id"]) != "user" and m["agent_id"] not in picked:
                picked[m["agent_id"]] = m
            if len(picked) == 2:
                return list(picked.values())[::-1]
    return list(picked.values())


def turn_pairs(record: dict[str, Any]) -> list[tuple[int, list[dict[str, Any]]]]:
    """Per turn, the last message of each non-user agent, where two or more agents speak in that turn."""
    roles = agent_roles(record)
    out = []
    for turn in record["turns"]:
        by_agent: dict[str, dict[str, Any]] = {}
        for m in turn["messages"]:
            if roles.get(m["agent_id"]) != "user":
                by_agent[m["agent_id"]] = m
        if len(by_agent) >= 2:
            out.append((turn["index"], list(by_agent.values())))
    return out


def mean_similarity(messages: list[dict[str, Any]], vectors: dict[str, np.ndarray]) -> float | None:
    """Mean pairwise cosine similarity of the messages' embeddings; 0 when a message is empty."""
    if len(messages) < 2:
        return None
    texts = [m["text"] for m in messages]
    if all(not t.strip() for t in texts):
        return None
    sims = []
    for a, b in combinations(texts, 2):
        if not a.strip() or not b.strip():
            sims.append(0.0)
            continue
        va, vb = vectors[a], vectors[b]
        sims.append(float(np.dot(va, vb) / max(np.linalg.norm(va) * np.linalg.norm(vb), 1e-12)))
    return float(np.mean(sims))


@dataclass(frozen=True)
class Evidence:
    turn_index: int
    agent_id: str | None
    text: str


Finding = Evidence | bool | None  # evidence found; False: evaluated, not found; None: cannot be evaluated here


def _speaking(record: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """(turn index, message) of every non-user message, in order."""
    roles = agent_roles(record)
    return [(t["index"], m) for t in record["turns"] for m in t["messages"] if roles.get(m["agent_id"]) != "user"]


def repeated_message(record: dict[str, Any]) -> Finding:
    seen: dict[tuple[str, str], int] = {}
    speakers: Counter[str] = Counter()
    for index, m in _speaking(record):
        speakers[m["agent_id"]] += 1
        text = re.sub(r"\s+", " ", m["text"]).strip().casefold()
        if len(text) < MIN_REPEAT_CHARS:
            continue
        if (m["agent_id"], text) in seen and seen[m["agent_id"], text] != index:
            return Evidence(index, m["agent_id"], f"repeats its message of turn {seen[m['agent_id'], text]}")
        seen.setdefault((m["agent_id"], text), index)
    return False if any(n >= 2 for n in speakers.values()) else None


def continued_after_consensus(record: dict[str, Any]) -> Finding:
    if not _has_flags(record):
        return None
    for turn in record["turns"][:-1]:
        if flag_fraction(turn["messages"]) == 1 and solution_share(turn["messages"])[0] in (None, 1):
            return Evidence(
                turn["index"], None, f"every agent agreed at turn {turn['index']}, yet the discussion went on"
            )
    return False


def _solutions(record: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    return [(index, m) for index, m in _speaking(record) if (m.get("solution") or "").strip()]


def _answers(record: dict[str, Any]) -> tuple[list[str], str | None] | None:
    """(references, final answer) when the record's answers can be checked; None otherwise."""
    references, final = record["task"]["references"], record["outcome"]["final_answer"]
    if not references or final is None or not _solutions(record):
        return None
    return references, final


def _correct_majorities(record: dict[str, Any], references: list[str]) -> list[tuple[int, str]]:
    out = []
    for turn in record["turns"]:
        majority = turn_majority(turn["messages"])
        if majority is not None and is_correct(majority, references):
            out.append((turn["index"], majority))
    return out


def correct_majority_lost(record: dict[str, Any]) -> Finding:
    answers = _answers(record)
    if answers is None:
        return None
    references, final = answers
    majorities = _correct_majorities(record, references)
    if is_correct(final, references) or not majorities:
        return False
    index, majority = majorities[-1]
    return Evidence(
        index, None, f"turn {index}'s majority {majority!r} was correct; the final answer {final!r} is wrong"
    )


def correct_proposal_ignored(record: dict[str, Any]) -> Finding:
    answers = _answers(record)
    if answers is None:
        return None
    references, final = answers
    if is_correct(final, references) or _correct_majorities(record, references):
        return False
    for index, m in _solutions(record):
        if is_correct(m["solution"], references):
            return Evidence(
                index, m["agent_id"], f"proposed the correct {m['solution']!r}; the group ended on {final!r}"
            )
    return False


def flip_to_wrong(record: dict[str, Any]) -> Finding:
    if _answers(record) is None:
        return None
    references = record["task"]["references"]
    last: dict[str, tuple[int, str]] = {}
    for index, m in _solutions(record):
        previous = last.get(m["agent_id"])
        wrong_now = not is_correct(m["solution"], references)
        if previous and previous[0] != index and is_correct(previous[1], references) and wrong_now:
            return Evidence(index, m["agent_id"], f"changed its correct {previous[1]!r} to {m['solution']!r}")
        last[m["agent_id"]] = (index, m["solution"])
    return False


def ended_without_decision(record: dict[str, Any]) -> Finding:
    decided = record["outcome"]["decision_success"]
    if decided is None:
        return None
    return False if decided else Evidence(record["turns"][-1]["index"], None, "the discussion ended without a decision")


@dataclass(frozen=True)
class MastRule:
    name: str
    mode: str  # the MAST mode id it evidences
    find: Callable[[dict[str, Any]], Finding]


MAST_RULES = (
    MastRule("repeated_message", "1.3", repeated_message),
    MastRule("continued_after_consensus", "1.5", continued_after_consensus),
    MastRule("correct_proposal_ignored", "2.5", correct_proposal_ignored),
    MastRule("ended_without_decision", "3.1", ended_without_decision),
    MastRule("correct_majority_lost", "3.3", correct_majority_lost),
    MastRule("flip_to_wrong", "3.3", flip_to_wrong),
)  # the one table of rule -> MAST mode (documented in card_methods/rules.md)
RULES_CANNOT_JUDGE = tuple(m.id for m in MAST_MODES if m.id not in {r.mode for r in MAST_RULES})


def mast_labels(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``mast:<id>`` labels the rules can decide on this record (see the module docstring)."""
    labels = []
    for mode in MAST_MODES:
        findings = [(rule, rule.find(record)) for rule in MAST_RULES if rule.mode == mode.id]
        found = [(rule, f) for rule, f in findings if isinstance(f, Evidence)]
        if found:
            rule, evidence = found[0]
            labels.append(
                make_label(
                    mode.label,
                    "yes",
                    PROVENANCE,
                    turn_index=evidence.turn_index,
                    agent_id=evidence.agent_id,
                    reason=f"{rule.name}: {evidence.text}",
                )
            )
        elif any(f is False for _, f in findings):
            names = ", ".join(rule.name for rule, f in findings if f is False)
            labels.append(make_label(mode.label, "no", PROVENANCE, reason=f"no evidence: {names}"))
    return labels


@dataclass
class RulesConfig:
    max_token_overhead: float = 0.5
    agreement_full_similarity: float = 0.85
    agreement_partial_similarity: float = 0.6

    def __post_init__(self) -> None:
        if self.agreement_partial_similarity > self.agreement_full_similarity:
            raise ValueError("annotations.rules: agreement_partial_similarity must be <= agreement_full_similarity")


class RulesMapper(Layer):
    """Fills ``annotations.coordination.rules`` for every record. It needs no corpus pass: the embeddings
    layer has already encoded every message."""

    name = "rules"
    needs = ("tokens", "embeddings")
    reads = ("agents", "turns", "protocol", "outcome", "annotations")
    writes = ("annotations",)
    Config = RulesConfig

    def __init__(self, config: RulesConfig, context: LayerContext):
        self.config = config
        self.embedder = context.require_embedder(self.name)
        self.success_counts: Counter[str] = Counter()  # of the records labelled: apply runs once per record
        self.level_counts: Counter[str] = Counter()
        self.mast_counts: dict[str, Counter[str]] = {f"mast:{m.id}": Counter() for m in MAST_MODES}

    def apply(self, batch: list[dict[str, Any]]) -> None:
        texts: set[str] = set()
        for record in batch:
            if not _has_flags(record):
                texts.update(m["text"] for m in final_messages(record) if m["text"].strip())
                for _, messages in turn_pairs(record):
                    texts.update(m["text"] for m in messages if m["text"].strip())
        ordered = sorted(texts)
        vectors = dict(zip(ordered, self.embedder.vectors(ordered), strict=True)) if ordered else {}
        for record in batch:
            rules = self.label(record, vectors)
            coordination = coordination_of(record["annotations"])
            coordination["rules"] = rules
            labels = mast_labels(record)
            with_labels(coordination, "rule:", labels)
            for label in labels:
                self.mast_counts[label["name"]][label["value"]] += 1
            self.success_counts[str(rules["success"]).lower()] += 1
            self.level_counts[str(rules["agreement_level"]).lower()] += 1

    def label(self, record: dict[str, Any], vectors: dict[str, np.ndarray]) -> dict[str, Any]:
        """The rules object of one record (``vectors``: text -> embedding, for the embedding-based agreement)."""
        p = self.config
        usage = (record.get("annotations") or {}).get("token_usage") or {}
        success = self.success(record, usage)
        flagged = _has_flags(record)
        similarity = fraction = None
        if flagged:
            final = record["turns"][-1]["messages"]
            level = flag_agreement(final)
            fraction = flag_fraction(final)
        else:
            similarity = mean_similarity(final_messages(record), vectors)
            level = level_from_similarity(similarity, p.agreement_full_similarity, p.agreement_partial_similarity)
        return {
            "version": VERSION,
            "provenance": PROVENANCE,
            "label_schema_version": LABEL_SCHEMA_VERSION,
            "success": success,
            "efficiency": efficiency(success, usage.get("total_tokens")),
            "agreement_level": level,
            "final_similarity": similarity,
            "final_agreement_fraction": fraction,
            "events": self.events(record, vectors, flagged),
        }

    def success(self, record: dict[str, Any], usage: dict[str, Any]) -> bool | None:
        kind = record["protocol"]["interaction"]
        outcome = record["outcome"]
        overhead = usage.get("coordination_overhead")
        if kind == "pairwise_comparison":
            if outcome["winner"] is None:
                return None
            if outcome["winner"] not in DECISIVE_WINNERS:
                return False
            return None if overhead is None else overhead <= self.config.max_token_overhead
        if kind == "multi_character_scene":
            roster = {a["agent_id"] for a in record["agents"] if a["in_source_roster"]}
            if len(roster) < 2 or overhead is None:
                return None
            spoke = {m["agent_id"] for t in record["turns"] for m in t["messages"]}
            return roster <= spoke and overhead <= self.config.max_token_overhead
        if outcome["answer_correct"] is not None:
            return outcome["answer_correct"]
        return outcome["decision_success"]

    def events(self, record: dict[str, Any], vectors: dict[str, np.ndarray], flagged: bool) -> list[dict[str, Any]]:
        p = self.config
        events: list[tuple[int, str]] = []
        previous_fraction: float | None = None
        previous_speaker: str | None = None
        for turn in record["turns"]:
            index, messages = turn["index"], turn["messages"]
            if any(m["kind"] == "draft" for m in messages):
                events.append((index, "draft"))
            if flagged:
                f = flag_fraction(messages)
                if f is not None:
                    if f == 1 and (previous_fraction is None or previous_fraction < 1):
                        events.append((index, "agreement_reached"))
                    elif f < 1 and previous_fraction == 1:
                        events.append((index, "agreement_broken"))
                    elif f < 1:
                        events.append((index, "disagreement"))
                    previous_fraction = f
                share, _ = solution_share(messages)
                if share == 1 and (f is None or f == 1):
                    events.append((index, "consensus"))
            if len(messages) == 1 and previous_speaker is not None and messages[0]["agent_id"] != previous_speaker:
                events.append((index, "handoff"))
            previous_speaker = messages[-1]["agent_id"]
        if not flagged:
            for index, messages in turn_pairs(record):
                similarity = mean_similarity(messages, vectors)
                if similarity is None:
                    continue
                if similarity >= p.agreement_full_similarity:
                    events.append((index, "consensus"))
                elif similarity < p.agreement_partial_similarity:
                    events.append((index, "disagreement"))
        outcome = record["outcome"]
        if outcome["decision_success"] is True or outcome["winner"] in DECISIVE_WINNERS:
            events.append((record["turns"][-1]["index"], "decision"))
        order = {index: i for i, index in enumerate(t["index"] for t in record["turns"])}
        events.sort(key=lambda e: order.get(e[0], 0))  # stable: per turn, in the order found
        return [{"turn_index": index, "event": event} for index, event in events]

    def describe(self) -> dict[str, Any]:
        """Version, parameters and label counts; the formulas are this module's docstring (the card shows it)."""
        return {
            "version": VERSION,
            "parameters": dataclasses.asdict(self.config),
            "success": dict(sorted(self.success_counts.items())),
            "agreement_level": dict(sorted(self.level_counts.items())),
            "provenance": PROVENANCE,
            "mast": {
                "rules": {rule.name: rule.mode for rule in MAST_RULES},
                "cannot_judge": list(RULES_CANNOT_JUDGE),
                "labels": {name: dict(sorted(c.items())) for name, c in self.mast_counts.items() if c},
            },
        }
