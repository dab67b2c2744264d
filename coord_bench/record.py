"""What layers and tasks read off a unified record, in one place, so that they all read it the same way."""

from __future__ import annotations

from typing import Any


def agent_roles(record: dict[str, Any]) -> dict[str, str]:
    """agent_id -> role (user, assistant, agent, character, ...)."""
    return {a["agent_id"]: a["role"] for a in record["agents"]}


def task_text(record: dict[str, Any]) -> str:
    """The text that sets the conversation going when no user message does: the task's input, else its
    setting (dialogue scenes), else its instruction; empty when the source gives none."""
    task = record["task"]
    return task["input"] or task["setting"] or task["instruction"] or ""
