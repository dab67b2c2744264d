"""agentlans/multi-character-dialogue: GPT-4-written scenes in which 2 to 5 characters talk.

``characters`` is a dict whose keys differ in every row, so ``load_dataset("json")`` would union them
into a mostly-null struct: the raw JSONL is read line by line instead. The rows have no ids; one is
derived from the content. Speakers are matched to the character keys leniently (case, spacing, first
name); unmatched speakers become extra agents with ``in_source_roster = false``.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from coord_bench.sources.base import RawRecord, Reject, SourceAdapter, agent, blank, message, optional, require
from coord_bench.splits import normalize_text

SETTING_AFTER = "setting after interaction"
_ACTION = re.compile(r"^\s*(\*[^*]+\*|\([^()]+\)|\[[^\[\]]+\])\s*$")


class MultiCharacterDialogue(SourceAdapter):
    name = "multi_character_dialogue"
    hub_repo_id = "agentlans/multi-character-dialogue"
    license = "cc-by-4.0"
    interaction = "multi_character_scene"
    file_patterns = ("**/*.jsonl.gz", "**/*.jsonl")
    SUMMARY = "multi-character scenes (multi-character-dialogue)"
    CAVEATS = (
        "synthetic (written by GPT-4): its agents are fictional characters",
        "speakers are matched to character names leniently (case, spacing, first names); unmatched speakers "
        "appear as agents with `in_source_roster = false`",
    )
    GROUP_KEY = "the setting, lower-cased with whitespace collapsed"
    TAGS = ("dialogue", "role-play")
    FIELD_MAP = {
        "setting": "task.setting and split group (normalized)",
        "characters": "agents (name -> name, description -> description, role 'character')",
        "conversation": "turns, one line each (from -> agent_id after speaker matching, message -> text)",
        SETTING_AFTER: "outcome.setting_after",
    }

    def convert(self, raw: RawRecord) -> dict[str, Any]:
        row = raw.value
        setting = require(row, "setting", str)
        characters = _characters(require(row, "characters", (dict, list, str)))
        lines = _lines(require(row, "conversation", (list, str)))
        if not lines:
            raise Reject(
                "field 'conversation' is empty: the scene has no lines", field="conversation", kind="empty_conversation"
            )
        agents: list[dict[str, Any]] = []
        for name, desc in characters.items():
            agents.append(agent(_free_slug(name, agents), name, "character", description=desc))
        turns = []
        for index, (speaker, text) in enumerate(lines):
            speaker_id = _match_speaker(speaker, agents)
            kind = "action" if _ACTION.match(text) else "line"
            turns.append({"index": index, "messages": [message(index, speaker_id, kind, text)]})
        digest = hashlib.sha256(
            json.dumps(
                {"setting": setting, "characters": characters, "conversation": lines},
                sort_keys=True,
                ensure_ascii=False,
            ).encode()
        ).hexdigest()[:16]
        return {
            "local_id": digest,
            "source_id": digest,
            "group_key": normalize_text(setting),
            "task": {**blank("task"), "setting": setting},
            "agents": agents,
            "turns": turns,
            "outcome": {"setting_after": optional(row, SETTING_AFTER, str)},
        }


def _characters(value: Any) -> dict[str, str | None]:
    """Characters as {name: description}; also accepts a list of names or a JSON-encoded dict."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise Reject(
                "field 'characters': a string must hold a JSON object of name -> description",
                field="characters",
                kind="wrong_type",
            ) from None
    if isinstance(value, list):
        value = {name: None for name in value}
    if not isinstance(value, dict) or not value:
        raise Reject(
            "field 'characters': expected a non-empty object of name -> description",
            field="characters",
            kind="wrong_type",
        )
    for name, desc in value.items():
        if not isinstance(name, str) or not (desc is None or isinstance(desc, str)):
            raise Reject(
                f"field 'characters.{name}': expected a text description or null, found {type(desc).__name__}",
                field=f"characters.{name}",
                kind="wrong_type",
            )
    return value


def _lines(value: Any) -> list[tuple[str, str]]:
    """(speaker, text) pairs from {from, message} objects, or from 'Name: text' strings."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise Reject(
                "field 'conversation': a string must hold a JSON list of lines", field="conversation", kind="wrong_type"
            ) from None
        if not isinstance(value, list):
            raise Reject("field 'conversation': expected a list of lines", field="conversation", kind="wrong_type")
    lines = []
    for i, item in enumerate(value):
        where = f"conversation[{i}]"
        if isinstance(item, str):
            speaker, sep, text = item.partition(":")
            if not sep or not speaker.strip():
                raise Reject(
                    f"field '{where}': a line given as a string must look like 'Name: message', found {item[:40]!r}",
                    field=where,
                    kind="invalid",
                )
            lines.append((speaker.strip(), text.strip()))
        elif isinstance(item, dict):
            lines.append(
                (
                    require(item, "from", str, where=f"{where}.").strip(),
                    require(item, "message", str, where=f"{where}."),
                )
            )
        else:
            raise Reject(
                f"field '{where}': expected an object with 'from' and 'message', found {type(item).__name__}",
                field=where,
                kind="wrong_type",
            )
    return lines


def _free_slug(name: str, agents: list[dict[str, Any]]) -> str:
    """A readable agent id from the name, made unique among the agents so far."""
    slug = re.sub(r"[^0-9a-z]+", "_", normalize_text(name)).strip("_") or "speaker"
    taken = {a["agent_id"] for a in agents}
    candidate, n = slug, 1
    while candidate in taken:
        n += 1
        candidate = f"{slug}_{n}"
    return candidate


def _tokens(name: str) -> set[str]:
    return set(re.findall(r"[0-9a-z]+", normalize_text(name)))


def _match_speaker(speaker: str, agents: list[dict[str, Any]]) -> str:
    """Return the agent_id of the speaker: exact name, then case/spacing-insensitive, then the one character
    whose name shares all of the speaker's name words or vice versa ('Raj' -> 'Raj Patel'). Otherwise the
    speaker joins as a new agent that is not in the source's roster."""
    for agent_ in agents:
        if agent_["name"] == speaker:
            return agent_["agent_id"]
    wanted = normalize_text(speaker)
    for agent_ in agents:
        if normalize_text(agent_["name"]) == wanted:
            return agent_["agent_id"]
    words = _tokens(speaker)
    candidates = [
        a
        for a in agents
        if a["in_source_roster"] and words and (words <= _tokens(a["name"]) or _tokens(a["name"]) <= words)
    ]
    if len(candidates) == 1:
        return candidates[0]["agent_id"]
    new_id = _free_slug(speaker, agents)
    agents.append(agent(new_id, speaker, "character", in_source_roster=False))
    return new_id
