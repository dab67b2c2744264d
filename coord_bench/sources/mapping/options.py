"""The recipe's ``mapping`` section parsed and checked: every problem is listed before any file is read.

The option names, their defaults and every check on them live here, in one place; the lookups, the extras
tree and the adapter read only the parsed ``MappingOptions``.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROLES = ("user", "assistant", "agent", "character")
READABLE = (".json", ".jsonl", ".jsonl.gz", ".json.gz", ".ndjson", ".parquet")
DEFAULT_FILES = tuple(f"**/*{suffix}" for suffix in READABLE)
DEFAULT_LICENSE = "unknown — set mapping.license"
# section -> {field: how its value is read}
SECTIONS = {
    "task": {
        "instruction": "text",
        "input": "text",
        "context": "text",
        "setting": "text",
        "language": "text",
        "references": "texts",
    },
    "outcome": {
        "decision_success": "bool",
        "final_answer": "text",
        "answer_correct": "bool",
        "winner": "winner",
        "judge": "text",
        "setting_after": "text",
    },
    "protocol": {
        "paradigm": "text",
        "decision_protocol": "text",
        "persona_mode": "text",
        "task_variant": "text",
        "persona_diversity": "number",
        "rounds": "int",
    },
}
PATH_OPTIONS = ("records", "conversation_id", "messages", "turns", "turn_index", "speaker", "text")
PATH_OPTIONS += ("role", "kind", "model", "timestamp", "group_by")
STRUCTURE = ("records", "messages", "turns", "turn_index")  # one path, never optional
REQUIRED = ("speaker", "text")  # may be a list of alternatives, never optional
OPTIONS = (*PATH_OPTIONS, "files", "layout", "role_map", "skip", *SECTIONS, "interaction", "license")


@dataclass(frozen=True)
class FieldPath:
    """One option's path: alternatives tried in order; ``optional`` when it may match nothing."""

    option: str
    alternatives: tuple[tuple[str, ...], ...]
    optional: bool = False
    may_be_optional: bool = True  # whether a trailing '?' is allowed (and so worth suggesting)

    @property
    def shown(self) -> str:
        return ", ".join(repr(".".join(alt)) for alt in self.alternatives)


@dataclass(frozen=True)
class MappingOptions:
    layout: str
    files: tuple[str, ...]
    speaker: FieldPath
    text: FieldPath
    records: FieldPath | None = None
    conversation_id: FieldPath | None = None
    messages: FieldPath | None = None
    turns: FieldPath | None = None
    turn_index: FieldPath | None = None
    role: FieldPath | None = None
    kind: FieldPath | None = None
    model: FieldPath | None = None
    timestamp: FieldPath | None = None
    group_by: FieldPath | None = None
    role_map: dict[str, str] = field(default_factory=dict)
    skip: tuple[tuple[FieldPath, tuple[Any, ...]], ...] = ()
    task: dict[str, FieldPath] = field(default_factory=dict)
    outcome: dict[str, FieldPath] = field(default_factory=dict)
    protocol: dict[str, FieldPath] = field(default_factory=dict)
    interaction: str = "multi_agent_chat"
    license: str = DEFAULT_LICENSE


def _field_path(option: str, value: Any, errors: list[str]) -> FieldPath | None:
    structural = option in STRUCTURE
    items = value if isinstance(value, list) and not structural else [value]
    if not items or not all(isinstance(item, str) for item in items):
        expected = "a field path like 'a.b.0.c'" + ("" if structural else " or a list of them")
        errors.append(f"mapping.{option}: expected {expected}, found {json.dumps(value, default=str)}")
        return None
    optional, alternatives = False, []
    for item in items:
        text = item.strip()
        if text.endswith("?"):
            if structural or option in REQUIRED:
                errors.append(f"mapping.{option}: {item!r} cannot be optional (drop the trailing '?')")
            optional, text = True, text[:-1]
        segments = tuple(text.split("."))
        if not text or not all(segments):
            errors.append(f"mapping.{option}: {item!r} is not a field path (keys separated by single dots)")
            return None
        alternatives.append(segments)
    return FieldPath(option, tuple(alternatives), optional, not (structural or option in REQUIRED))


def parse_mapping(options: Any) -> MappingOptions:
    """Check the options and return them parsed; raises ``ValueError`` listing every problem."""
    if not isinstance(options, dict):
        raise ValueError(
            "the mapping adapter needs a 'mapping' section of field paths (at least speaker, text, and messages "
            f"or conversation_id), found {json.dumps(options, default=str)}"
        )
    errors: list[str] = []
    for key in options:
        if key not in OPTIONS:
            close = difflib.get_close_matches(str(key), OPTIONS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            errors.append(f"mapping: unknown option {key!r}{hint}; options are: {', '.join(OPTIONS)}")
    layout = options.get("layout", "grouped")
    if layout not in ("grouped", "flat"):
        errors.append(f"mapping.layout: expected 'grouped' or 'flat', found {layout!r}")
    parsed: dict[str, Any] = {}
    for option in PATH_OPTIONS:
        if options.get(option) is not None:
            parsed[option] = _field_path(option, options[option], errors)
    for option in REQUIRED:
        if options.get(option) is None:
            errors.append(f"mapping.{option}: required (a path relative to a message)")
    if layout == "flat":
        if options.get("conversation_id") is None:
            errors.append("mapping.conversation_id: required in the flat layout (it groups events into conversations)")
        elif parsed.get("conversation_id"):
            if parsed["conversation_id"].optional:
                errors.append("mapping.conversation_id: cannot be optional in the flat layout")
            parsed["conversation_id"] = replace(parsed["conversation_id"], may_be_optional=False)
        for option in ("messages", "turns"):
            if option in options:
                errors.append(f"mapping.{option}: not used in the flat layout (each record is one message)")
    elif layout == "grouped":
        if options.get("messages") is None:
            errors.append(
                "mapping.messages: required in the grouped layout (the list of messages of a conversation, "
                "or of a turn when mapping.turns is given)"
            )
        if options.get("turns") is not None and options.get("turn_index") is not None:
            errors.append("mapping.turns and mapping.turn_index: give one of them, not both")
    files = options.get("files", list(DEFAULT_FILES))
    files = [files] if isinstance(files, str) else files
    if not isinstance(files, list) or not files or not all(isinstance(f, str) and f for f in files):
        errors.append(f"mapping.files: expected a glob or a list of globs, found {json.dumps(files, default=str)}")
        files = []
    for pattern in files:
        if Path(pattern).is_absolute():
            errors.append(f"mapping.files: {pattern!r} must be relative to the source folder")
    role_map = options.get("role_map") or {}
    if not isinstance(role_map, dict):
        errors.append(f"mapping.role_map: expected {{source role: one of {', '.join(ROLES)}}}, found {role_map!r}")
        role_map = {}
    for key, value in role_map.items():
        if value not in ROLES:
            errors.append(f"mapping.role_map.{key}: expected one of {', '.join(ROLES)}, found {value!r}")
    skip = options.get("skip") or {}
    if not isinstance(skip, dict):
        errors.append(f"mapping.skip: expected {{message path: value or list of values}}, found {skip!r}")
        skip = {}
    skips = []
    for path, values in skip.items():
        parsed_path = _field_path("skip", str(path), errors)
        if parsed_path:
            skips.append((parsed_path, tuple(values) if isinstance(values, list) else (values,)))
    sections: dict[str, dict[str, FieldPath]] = {}
    for section, fields in SECTIONS.items():
        given = options.get(section) or {}
        if not isinstance(given, dict):
            errors.append(f"mapping.{section}: expected {{field: path}} with fields {', '.join(fields)}")
            given = {}
        sections[section] = {}
        for name, path in given.items():
            if name not in fields:
                errors.append(f"mapping.{section}: unknown field {name!r}; fields are: {', '.join(fields)}")
            elif path is not None:
                parsed_path = _field_path(f"{section}.{name}", path, errors)
                if parsed_path:
                    sections[section][name] = parsed_path
    for option in ("interaction", "license"):
        if option in options and not (isinstance(options[option], str) and options[option].strip()):
            errors.append(f"mapping.{option}: expected non-empty text, found {options[option]!r}")
    if errors:
        raise ValueError("invalid mapping options:\n  " + "\n  ".join(errors))
    return MappingOptions(
        layout=layout,
        files=tuple(files),
        **parsed,
        role_map={str(k): v for k, v in role_map.items()},
        skip=tuple(skips),
        **sections,
        interaction=options.get("interaction", "multi_agent_chat"),
        license=options.get("license", DEFAULT_LICENSE),
    )


def check_mapping(options: Any) -> None:
    """Raise ``ValueError`` with every problem of a ``mapping`` section, before any file is read."""
    parse_mapping(options)
