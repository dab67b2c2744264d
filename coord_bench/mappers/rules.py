"""Rule-based coordination labels for every conversation: success, efficiency, agreement level, turn events.

The method and its formulas, as the dataset card publishes them: ``coord_bench/card_methods/rules.md``.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from coord_bench.answers import answers_match
from coord_bench.mappers.layer import Layer, LayerContext
from coord_bench.record import agent_roles
from coord_bench.schema import DECISIVE_WINNERS

VERSION = "rules-v1"


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
            annotations = record["annotations"]
            coordination = annotations.get("coordination") or {"rules": None, "judges": [], "consensus": None}
            coordination["rules"] = rules
            annotations["coordination"] = coordination
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
        }
