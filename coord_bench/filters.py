"""Recipe filters: which normalized records a build keeps. A filtered record is counted with its reason."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any


def filter_reason(record: dict[str, Any], filters: dict[str, Any]) -> str | None:
    """Why ``record`` is filtered out, or None to keep it."""
    languages = filters.get("languages")
    if languages and record["task"]["language"] not in languages:
        return "language not in filters.languages"
    safety = record["safety"]
    if filters.get("exclude_moderation_flagged") and safety["moderation_flagged"]:
        return "flagged by OpenAI moderation"
    if filters.get("exclude_toxic") and (safety["toxic_chat_roberta_flagged"] or safety["toxic_chat_t5_flagged"]):
        return "flagged by a toxic-chat classifier"
    patterns = filters.get("configs")
    if patterns and not any(fnmatchcase(record["source_config"] or "", p) for p in patterns):
        return "source_config not in filters.configs"
    return None
