"""The long form of every per-item label (``annotations.coordination.labels``) and the MAST failure taxonomy.

One label says what was labelled (``name``), the verdict (``value``), who made it (``provenance``:
``rule:<rule set>@<version>``, ``llm:<model>@<first 12 hex of the prompt's sha256>`` or
``human:<annotator id>``) and under which label schema (``LABEL_SCHEMA_VERSION``), so labels of different
makers, versions and prompts can be pooled and compared without guessing where each came from.

Names: ``mast:<mode id>`` (value yes / no / not_applicable), ``who_when`` (value: the responsible agent_id,
with the decisive turn and a one-sentence reason) and, from human review, the review form's fields.

MAST: Cemri et al. 2025, "Why Do Multi-Agent LLM Systems Fail?", arXiv:2503.13657; the 14 modes below are
pinned to ``MAST_VERSION`` (ids, names and categories as the paper gives them, definitions in one line each).
Who&When: Zhang et al. 2025, "Which Agent Causes Task Failures and When?", arXiv:2505.00212.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from coord_bench.markdown import table

LABEL_SCHEMA_VERSION = "1.0"
MAST_VERSION = "MAST arXiv:2503.13657v2"
MAST_CITATION = "Cemri et al. 2025, Why Do Multi-Agent LLM Systems Fail?, arXiv:2503.13657"
WHO_WHEN_CITATION = "Zhang et al. 2025, Which Agent Causes Task Failures and When?, arXiv:2505.00212"
MAST_VALUES = ("yes", "no", "not_applicable")
WHO_WHEN = "who_when"

MAST_CATEGORIES = {"1": "specification issues", "2": "inter-agent misalignment", "3": "task verification"}


@dataclass(frozen=True)
class Mode:
    id: str
    name: str
    definition: str

    @property
    def category(self) -> str:
        return MAST_CATEGORIES[self.id.split(".")[0]]

    @property
    def label(self) -> str:
        return f"mast:{self.id}"


MAST_MODES = (
    Mode(
        "1.1", "Disobey task specification", "An agent fails to follow the task's stated constraints or requirements."
    ),
    Mode("1.2", "Disobey role specification", "An agent acts outside the responsibilities of its assigned role."),
    Mode("1.3", "Step repetition", "A step, message or phase already completed is repeated without need."),
    Mode("1.4", "Loss of conversation history", "Context is unexpectedly lost: an agent reverts to an earlier state."),
    Mode("1.5", "Unaware of termination conditions", "Agents miss when the interaction should stop and keep going."),
    Mode("2.1", "Conversation reset", "The dialogue restarts unexpectedly, losing context and progress."),
    Mode("2.2", "Fail to ask for clarification", "An agent proceeds on unclear or incomplete input instead of asking."),
    Mode("2.3", "Task derailment", "The interaction drifts from the intended objective to irrelevant work."),
    Mode("2.4", "Information withholding", "An agent keeps back information that others need for the task."),
    Mode("2.5", "Ignored other agent's input", "An agent disregards or fails to act on other agents' contributions."),
    Mode(
        "2.6", "Reasoning-action mismatch", "An agent's stated reasoning and what it actually does or answers differ."
    ),
    Mode("3.1", "Premature termination", "The interaction ends before the objective is met or the needed exchange."),
    Mode(
        "3.2",
        "No or incomplete verification",
        "Results are not checked, or checked only partly, before they are final.",
    ),
    Mode("3.3", "Incorrect verification", "Checking happens but accepts a wrong result or rejects a right one."),
)
MODES_BY_ID = {mode.id: mode for mode in MAST_MODES}


def make_label(
    name: str,
    value: str | None,
    provenance: str,
    confidence: float | None = None,
    swap_consistent: bool | None = None,
    turn_index: int | None = None,
    agent_id: str | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """One item of ``annotations.coordination.labels``, in the shape the record schema requires."""
    return {
        "name": name,
        "value": value,
        "provenance": provenance,
        "label_schema_version": LABEL_SCHEMA_VERSION,
        "confidence": confidence,
        "swap_consistent": swap_consistent,
        "turn_index": turn_index,
        "agent_id": agent_id,
        "reason": reason,
    }


def rule_provenance(rule_set: str, version: str) -> str:
    return f"rule:{rule_set}@{version}"


def llm_provenance(model: str, prompt_sha256: str) -> str:
    return f"llm:{model}@{prompt_sha256[:12]}"


def coordination_of(annotations: dict[str, Any]) -> dict[str, Any]:
    """``annotations.coordination``, created empty when no layer has written it yet; a record of an older build
    (or one whose labels read back null) gains its ``labels`` list here."""
    coordination = annotations.get("coordination") or {"rules": None, "judges": [], "consensus": None}
    if coordination.get("labels") is None:  # absent, or null as Parquet gives it back
        coordination["labels"] = []
    annotations["coordination"] = coordination
    return coordination


def with_labels(coordination: dict[str, Any], maker: str, new: list[dict[str, Any]]) -> None:
    """Replace the labels of one kind of maker (``rule:``, ``llm:`` or ``human:``) by ``new``, keeping the
    others (a rerun of the judge keeps the rules' and the humans' labels, and vice versa)."""
    kept = [label for label in coordination["labels"] if not label["provenance"].startswith(maker)]
    coordination["labels"] = kept + new


def mast_markdown() -> str:
    """The taxonomy as the card prints it: one line per mode, with its citation and pinned version."""
    rows = [[f"`{m.label}`", m.category, m.name, m.definition] for m in MAST_MODES]
    return (
        f"Failure modes follow MAST ({MAST_CITATION}; pinned: {MAST_VERSION}); values yes / no / not_applicable. "
        f"Attribution of failed conversations (`who_when`) follows Who&When ({WHO_WHEN_CITATION}).\n\n"
        + table(["label", "category", "mode", "definition"], rows)
    )
