"""Row statistics of a build, gathered in one pass over its records.

The figures need only small per-record numbers (value counts, label counts, a few latent trajectories), so the
rows are streamed through :func:`iter_plot_rows`, reading only :data:`COLUMNS` (never the message texts), and
folded into one :class:`SourceStats` per source by :func:`collect`.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coord_bench.build_folder import iter_record_batches
from coord_bench.outcomes import outcome_label

MAX_TRAJECTORIES = 25  # per source and outcome label, the first ones in file order

# The Parquet columns the figures need; nested paths keep the message texts unread.
COLUMNS = (
    "source",
    "n_turns",
    "n_agents",
    "turns.list.element.messages.list.element.n_tokens",
    "outcome.winner",
    "outcome.decision_success",
    "outcome.answer_correct",
    "protocol.paradigm",
    "protocol.decision_protocol",
    "annotations.latents.k",
    "annotations.latents.smoothed",
    "annotations.coordination.rules.agreement_level",
    "annotations.coordination.rules.success",
    "annotations.coordination.judges.list.element.model",
    "annotations.coordination.judges.list.element.status",
    "annotations.coordination.judges.list.element.agreement_level",
    "annotations.coordination.consensus.agreement_level",
)


@dataclass
class SourceStats:
    """The small per-record numbers of one source that the figures plot."""

    conversations: int = 0
    turns: Counter = field(default_factory=Counter)  # n_turns -> conversations
    agents: Counter = field(default_factory=Counter)  # n_agents -> conversations
    message_tokens: Counter = field(default_factory=Counter)  # n_tokens -> messages
    messages_without_tokens: int = 0
    winners: Counter = field(default_factory=Counter)  # arena winner (None: no vote) -> conversations
    debate: dict[tuple[str, str], Counter] = field(default_factory=lambda: defaultdict(Counter))
    rules_levels: Counter = field(default_factory=Counter)
    rules_success: Counter = field(default_factory=Counter)
    rules_records: int = 0
    judge_levels: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    consensus_levels: Counter = field(default_factory=Counter)  # the judges together (their majority class)
    judge_status: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    pair_agreement: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (a, b) -> [same, both]
    latent_records: int = 0
    latent_k: Counter = field(default_factory=Counter)
    outcome_counts: Counter = field(default_factory=Counter)  # of the records with latents
    trajectories: dict[str, list[list[tuple[float, float]]]] = field(default_factory=lambda: defaultdict(list))

    def add(self, row: dict[str, Any]) -> None:
        self.conversations += 1
        if row.get("n_turns") is not None:
            self.turns[row["n_turns"]] += 1
        if row.get("n_agents") is not None:
            self.agents[row["n_agents"]] += 1
        for turn in row.get("turns") or []:
            for message in turn.get("messages") or []:
                if message.get("n_tokens") is None:
                    self.messages_without_tokens += 1
                else:
                    self.message_tokens[message["n_tokens"]] += 1
        outcome = row.get("outcome") or {}
        protocol = row.get("protocol") or {}
        if outcome.get("winner") is not None:
            self.winners[outcome["winner"]] += 1
        if outcome.get("decision_success") is not None or outcome.get("answer_correct") is not None:
            group = self.debate[(str(protocol.get("paradigm")), str(protocol.get("decision_protocol")))]
            group["n"] += 1
            for name in ("decision_success", "answer_correct"):
                if outcome.get(name) is not None:
                    group[f"{name}_known"] += 1
                    group[name] += bool(outcome[name])
        annotations = row.get("annotations") or {}
        self._add_coordination(annotations.get("coordination"))
        latents = annotations.get("latents")
        if latents and latents.get("smoothed"):
            self.latent_records += 1
            self.latent_k[latents.get("k") or len(latents["smoothed"][0])] += 1
            label = outcome_label(outcome)
            self.outcome_counts[label] += 1
            kept = self.trajectories[label]
            if len(kept) < MAX_TRAJECTORIES and len(latents["smoothed"][0]) >= 2:
                kept.append([(float(state[0]), float(state[1])) for state in latents["smoothed"]])

    def _add_coordination(self, coordination: dict[str, Any] | None) -> None:
        if not coordination:
            return
        labels: dict[str, str] = {}
        rules = coordination.get("rules")
        if rules:
            self.rules_records += 1
            self.rules_levels[rules.get("agreement_level")] += 1
            self.rules_success[rules.get("success")] += 1
            if rules.get("agreement_level") is not None:
                labels["rules"] = rules["agreement_level"]
        for judge in coordination.get("judges") or []:
            model = str(judge.get("model"))
            self.judge_status[model][judge.get("status")] += 1
            if judge.get("status") == "ok":
                self.judge_levels[model][judge.get("agreement_level")] += 1
                if judge.get("agreement_level") is not None:
                    labels[model] = judge["agreement_level"]
        consensus = coordination.get("consensus")
        if consensus and consensus.get("agreement_level") is not None:
            self.consensus_levels[consensus["agreement_level"]] += 1
        for a, b in itertools.combinations(sorted(labels), 2):
            same_both = self.pair_agreement.setdefault((a, b), [0, 0])
            same_both[0] += labels[a] == labels[b]
            same_both[1] += 1


def iter_plot_rows(folder: Path, manifest: dict[str, Any], batch_size: int = 1024) -> Iterator[dict[str, Any]]:
    """Every record of the build once, with only :data:`COLUMNS` read."""
    for batch in iter_record_batches(folder, manifest, list(COLUMNS), batch_size=batch_size):
        yield from batch


def collect(rows: Iterable[dict[str, Any]], source_names: Iterable[str] = ()) -> dict[str, SourceStats]:
    stats = {name: SourceStats() for name in source_names}
    for row in rows:
        stats.setdefault(row.get("source") or "unknown", SourceStats()).add(row)
    return stats
