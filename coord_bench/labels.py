"""The long form of a per-item label (``annotations.coordination.labels[]``) and the vocabulary it uses.

One version for the label schema, the MAST failure taxonomy (Cemri et al. 2025, arXiv:2503.13657) pinned with
its version, and :func:`make_label`, which every producer of a label (rules, judges, human review) calls, so
the items have one shape everywhere.
"""

from __future__ import annotations

from typing import Any, NamedTuple

LABEL_SCHEMA_VERSION = "1"
MAST_VERSION = "arXiv:2503.13657v1"
MAST_VALUES = ("yes", "no", "not_applicable")


class MastMode(NamedTuple):
    id: str
    category: str
    name: str
    definition: str


MAST_MODES = (
    MastMode("1.1", "specification issues", "disobey task specification",
             "an agent does not follow the task's stated constraints or requirements"),
    MastMode("1.2", "specification issues", "disobey role specification",
             "an agent acts outside the role it was given"),
    MastMode("1.3", "specification issues", "step repetition",
             "an agent repeats a step already done, without progress"),
    MastMode("1.4", "specification issues", "loss of conversation history",
             "an agent loses earlier context and reverts to an older state"),
    MastMode("1.5", "specification issues", "unaware of termination conditions",
             "the agents do not recognize when the task is done and keep going"),
    MastMode("2.1", "inter-agent misalignment", "conversation reset",
             "the dialogue restarts unexpectedly and loses its progress"),
    MastMode("2.2", "inter-agent misalignment", "fail to ask for clarification",
             "an agent proceeds on an unclear input instead of asking"),
    MastMode("2.3", "inter-agent misalignment", "task derailment",
             "the conversation drifts away from the intended task"),
    MastMode("2.4", "inter-agent misalignment", "information withholding",
             "an agent holds back information another agent needed"),
    MastMode("2.5", "inter-agent misalignment", "ignored other agent's input",
             "an agent disregards another agent's contribution"),
    MastMode("2.6", "inter-agent misalignment", "reasoning-action mismatch",
             "what an agent does contradicts the reasoning it gave"),
    MastMode("3.1", "task verification", "premature termination",
             "the run ends before the task's goals are met"),
    MastMode("3.2", "task verification", "no or incomplete verification",
             "the result is not checked, or checked only in part"),
    MastMode("3.3", "task verification", "incorrect verification",
             "a check is made but wrongly accepts a wrong result"),
)  # fmt: skip


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
    """One item of ``annotations.coordination.labels``, in the shape the schema declares."""
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
