"""lmsys/chatbot_arena_conversations: one human prompter, two anonymous models, a human winner vote.

A turn is one round: the user prompt, model A's response and model B's response. ``conversation_a`` and
``conversation_b`` are parallel OpenAI-format lists that share the user messages.
"""

from __future__ import annotations

from typing import Any

from coord_bench.schema import WINNERS
from coord_bench.sources.base import (
    RawRecord,
    Reject,
    SourceAdapter,
    agent,
    blank,
    check_item,
    message,
    optional,
    reading,
    require,
)
from coord_bench.splits import normalize_text


class ChatbotArena(SourceAdapter):
    name = "chatbot_arena"
    hub_repo_id = "lmsys/chatbot_arena_conversations"
    license = "cc-by-4.0 (prompts) / cc-by-nc-4.0 (model outputs); gated: accept the terms on the Hub"
    interaction = "pairwise_comparison"
    file_patterns = ("**/*.parquet", "**/*.jsonl", "**/*.jsonl.gz")
    FIELD_MAP = {
        "question_id": "source_id (id = '<source>:<question_id>')",
        "model_a": "agents[model_a].model",
        "model_b": "agents[model_b].model",
        "winner": "outcome.winner",
        "judge": "outcome.judge",
        "conversation_a": "turns[].messages (user prompt, response of model_a)",
        "conversation_b": "turns[].messages (response of model_b; its user turns must equal conversation_a's)",
        "turn": "protocol.rounds",
        "language": "task.language",
        "tstamp": "timestamp",
        "toxic_chat_tag": "safety.toxic_chat_*",
    }
    SUMMARY = "pairwise model battles with human winner votes (Chatbot Arena)"
    CAVEATS = (
        "gated: its terms must be accepted on the Hub; conversations may contain unsafe content (the moderation "
        "and toxicity flags are kept in `safety`)",
        "`outcome.judge` is a pseudonymous human voter, not a model; language tags are unreliable",
        "human preferences are confounded with response length: compare with token counts before crediting "
        "anything else",
    )
    GROUP_KEY = "the first user prompt, lower-cased with whitespace collapsed"
    TAGS = ("pairwise-preference", "human-feedback")
    MULTILINGUAL = True
    KEPT_IN_EXTRAS = {
        "anony": "whether the battle was anonymous",
        "openai_moderation": "the full result; summarised in safety.moderation_flagged/_categories/_max_score",
    }

    def convert(self, raw: RawRecord) -> dict[str, Any]:
        row = raw.value
        question_id = require(row, "question_id", str)
        winner = require(row, "winner", str)
        if winner not in WINNERS:
            raise Reject(
                f"field 'winner': expected one of {', '.join(WINNERS)}, found {winner!r}",
                field="winner",
                kind="unknown_value",
            )
        model_a = require(row, "model_a", str)
        model_b = require(row, "model_b", str)
        conv_a = require(row, "conversation_a", list, nullable=True)
        conv_b = require(row, "conversation_b", list, nullable=True)
        for key, conv in (("conversation_a", conv_a), ("conversation_b", conv_b)):
            if conv is None:
                raise Reject(
                    f"field '{key}' is null: the conversation is missing", field=key, kind="empty_conversation"
                )
            if not conv:
                raise Reject(f"field '{key}' is an empty list", field=key, kind="empty_conversation")
        turns = _pair_turns(conv_a, conv_b)
        first_prompt = turns[0]["messages"][0]["text"]
        return {
            "local_id": question_id,
            "source_id": question_id,
            "group_key": normalize_text(first_prompt),
            "task": {**blank("task"), "input": first_prompt, "language": require(row, "language", str, nullable=True)},
            "protocol": {"rounds": require(row, "turn", int, nullable=True)},
            "agents": [
                agent("user", "user", "user"),
                agent("model_a", "model_a", "assistant", model=model_a),
                agent("model_b", "model_b", "assistant", model=model_b),
            ],
            "turns": turns,
            "outcome": {"winner": winner, "judge": require(row, "judge", str, nullable=True)},
            "timestamp": _number(row, "tstamp"),
            "safety": {**_moderation(row), **_toxicity(row)},
        }


def _number(row: dict[str, Any], key: str) -> float | None:
    value = row.get(key)
    if value is None:
        return None
    return float(require(row, key, (int, float)))


def _pair_turns(conv_a: list[Any], conv_b: list[Any]) -> list[dict[str, Any]]:
    """Zip the two OpenAI-format lists into rounds of (user prompt, response A, response B)."""
    for key, conv in (("conversation_a", conv_a), ("conversation_b", conv_b)):
        for i, msg in enumerate(conv):
            where = f"{key}[{i}]."
            check_item(msg, f"{key}[{i}]", dict, "an object with role and content")
            require(msg, "content", str, where=where)
            expected = "user" if i % 2 == 0 else "assistant"
            if require(msg, "role", str, where=where) != expected:
                raise Reject(
                    f"field '{where}role': expected {expected!r} (user and assistant alternate), found {msg['role']!r}",
                    field=f"{where}role",
                    kind="invalid",
                )
    if len(conv_a) != len(conv_b):
        raise Reject(
            f"conversation_a has {len(conv_a)} messages but conversation_b has {len(conv_b)}",
            field="conversation_b",
            kind="invalid",
        )
    turns = []
    for index, start in enumerate(range(0, len(conv_a), 2)):
        prompt = conv_a[start]["content"]
        if conv_b[start]["content"] != prompt:
            raise Reject(
                f"user turn {index} differs between conversation_a and conversation_b",
                field=f"conversation_b[{start}].content",
                kind="invalid",
            )
        messages = [message(start * 3 // 2, "user", "prompt", prompt)]
        if start + 1 < len(conv_a):
            messages.append(message(start * 3 // 2 + 1, "model_a", "response", conv_a[start + 1]["content"]))
            messages.append(message(start * 3 // 2 + 2, "model_b", "response", conv_b[start + 1]["content"]))
        turns.append({"index": index, "messages": messages})
    return turns


def _moderation(row: dict[str, Any]) -> dict[str, Any]:
    """Summarise an openai_moderation result: flagged, the flagged category names, the top score."""
    result = row.get("openai_moderation")
    if not isinstance(result, dict):
        return {}  # the full value is kept in extras
    with reading("openai_moderation"):
        return _moderation_summary(result)


def _moderation_summary(result: dict[str, Any]) -> dict[str, Any]:
    categories = result.get("categories") or {}
    scores = [s for s in (result.get("category_scores") or {}).values() if isinstance(s, (int, float))]
    return {
        "moderation_flagged": result.get("flagged"),
        "moderation_categories": sorted(name for name, hit in categories.items() if hit),
        "moderation_max_score": float(max(scores)) if scores else None,
    }


def _toxicity(row: dict[str, Any]) -> dict[str, Any]:
    """The two toxic-chat classifiers' verdicts; a value of the wrong shape is a reject naming it."""
    tag = optional(row, "toxic_chat_tag", dict)
    if tag is None:
        return {}
    out = {}
    for model, column, score in (("roberta-large", "roberta", "probability"), ("t5-large", "t5", "score")):
        verdict = optional(tag, model, dict, where="toxic_chat_tag.") or {}
        where = f"toxic_chat_tag.{model}."
        out[f"toxic_chat_{column}_flagged"] = optional(verdict, "flagged", bool, where=where)
        value = optional(verdict, score, (int, float), where=where)
        out[f"toxic_chat_{column}_{score}"] = None if value is None else float(value)
    return out
