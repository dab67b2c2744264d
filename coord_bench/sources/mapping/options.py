"""The recipe's ``mapping`` section parsed and checked: every problem is listed before any file is read.

The option names, their defaults and every check on them live here, in one place; the lookups, the extras
tree and the adapter read only the parsed ``MappingOptions``.
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import re
import zoneinfo
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROLES = ("user", "assistant", "agent", "character", "tool")
READABLE = (".json", ".jsonl", ".jsonl.gz", ".json.gz", ".ndjson", ".parquet")
DEFAULT_FILES = tuple(f"**/*{suffix}" for suffix in READABLE)
TEXT_FILES = ("**/*.log", "**/*.txt")  # the default globs of ``format: text``
# with ``format: text``, an option not given reads the line regex's group of the same name, when it has one
TEXT_DEFAULTS = ("speaker", "text", "timestamp", "kind", "role")
# ``tool_call``: where a call's parts are, relative to one item of ``tool_calls`` (default: OpenAI's layout)
TOOL_CALL_FIELDS = {"call_id": "id?", "name": "function.name", "arguments": "function.arguments?"}
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
PATH_OPTIONS = ("records", "conversation_id", "messages", "histories", "matrix", "turns", "turn_index", "speaker")
PATH_OPTIONS += ("text", "role", "kind", "model", "timestamp", "group_by", "descriptions", "tool_calls", "tool_call_id")
STRUCTURE = ("records", "messages", "histories", "matrix", "turns", "turn_index")  # one path, never optional
REQUIRED = ("speaker", "text")  # may be a list of alternatives, never optional
CONTAINERS = ("messages", "histories", "matrix")  # where a grouped conversation's messages are: exactly one
DUPLICATE_IDS = ("reject", "number")
OPTIONS = (*PATH_OPTIONS, "own_role", "files", "layout", "format", "line", "separator", "tool_call", "role_map")
OPTIONS += ("skip", *SECTIONS, "interaction", "license", "duplicate_ids")


TRANSFORM_KEYS = ("path", "const", "join", "sep", "by_position", "regex", "group", "map", "default", "at_least")
TIME_KEYS = ("time_format", "time_zone")  # timestamp only: a strptime format, the zone of zoneless times


@dataclass(frozen=True)
class FieldPath:
    """One option's value: paths tried in order (``optional`` when they may match nothing), or a constant, or
    paths joined into one text, or a name by message position; then, in this order, a regex's group, a value
    map and a number-to-boolean threshold (see the package docstring)."""

    option: str
    alternatives: tuple[tuple[str, ...], ...]
    optional: bool = False
    may_be_optional: bool = True  # whether a trailing '?' is allowed (and so worth suggesting)
    const: Any = None  # the value itself, when ``is_const``
    is_const: bool = False
    join: str | None = None  # separator: every path's value, joined (instead of the first that matches)
    by_position: tuple[str, ...] = ()  # the speaker of the i-th message is by_position[i % n]
    regex: re.Pattern | None = None
    group: str | int | None = None  # the regex group that is the value (default: the option's name, else 1, else 0)
    value_map: dict[str, Any] | None = None  # found value (as text) -> value
    default: Any = None  # when the regex does not match or the map lacks the value, if ``has_default`` (else
    has_default: bool = False  # the record is rejected)
    at_least: float | None = None  # a number >= at_least is true, below it false
    time_format: str | None = None  # timestamp: a strptime format (default: Unix seconds or ISO-8601)
    time_zone: dt.tzinfo = dt.timezone.utc  # timestamp: the zone of a date-time written without one

    @property
    def shown(self) -> str:
        return ", ".join(repr(".".join(alt)) for alt in self.alternatives)


@dataclass(frozen=True)
class MappingOptions:
    layout: str
    files: tuple[str, ...]
    text: FieldPath
    speaker: FieldPath | None = None  # None only with histories or matrix
    records: FieldPath | None = None
    conversation_id: FieldPath | None = None
    messages: FieldPath | None = None
    histories: FieldPath | None = None  # {agent name: [its own chat memory]}
    matrix: FieldPath | None = None  # contexts[agent][message]
    own_role: str = "assistant"  # histories and matrix: the role of an agent's own messages
    turns: FieldPath | None = None
    turn_index: FieldPath | None = None
    role: FieldPath | None = None
    kind: FieldPath | None = None
    model: FieldPath | None = None
    timestamp: FieldPath | None = None
    group_by: FieldPath | None = None
    descriptions: FieldPath | None = None  # {agent id: text}: agents[].description
    duplicate_ids: str = "reject"  # or "number": a repeated id becomes '<id>#2', '<id>#3', ...
    tool_calls: FieldPath | None = None
    tool_call_id: FieldPath | None = None
    tool_call: dict[str, FieldPath] = field(default_factory=dict)  # call_id, name, arguments: paths in one call
    line: re.Pattern | None = None  # format text: the regex of a line that starts a message
    separator: re.Pattern | None = None  # format text: the regex of a line that starts a conversation
    role_map: dict[str, str] = field(default_factory=dict)
    skip: tuple[tuple[FieldPath, tuple[Any, ...]], ...] = ()
    task: dict[str, FieldPath] = field(default_factory=dict)
    outcome: dict[str, FieldPath] = field(default_factory=dict)
    protocol: dict[str, FieldPath] = field(default_factory=dict)
    interaction: str = "multi_agent_chat"
    license: str = DEFAULT_LICENSE


def _field_path(option: str, value: Any, errors: list[str]) -> FieldPath | None:
    if isinstance(value, dict) and option not in STRUCTURE and option != "skip":
        return _value_spec(option, value, errors)
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
        if option == "records" and text == ".":
            alternatives.append(())  # the top-level value itself
            continue
        segments = tuple(part.replace("\\.", ".") for part in re.split(r"(?<!\\)\.", text))
        if not text or not all(segments):
            errors.append(f"mapping.{option}: {item!r} is not a field path (keys separated by single dots)")
            return None
        alternatives.append(segments)
    return FieldPath(option, tuple(alternatives), optional, not (structural or option in REQUIRED))


def _value_spec(option: str, spec: dict[str, Any], errors: list[str]) -> FieldPath | None:
    """A value given as ``{path | const | join | by_position: ..., regex, group, map, default, at_least}``."""
    where = f"mapping.{option}"
    keys = (*TRANSFORM_KEYS, *TIME_KEYS) if option == "timestamp" else TRANSFORM_KEYS
    unknown = sorted(set(spec) - set(keys))
    if unknown:
        errors.append(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; keys are: {', '.join(keys)}")
        return None
    sources = [key for key in ("path", "const", "join", "by_position") if key in spec]
    if len(sources) != 1:
        errors.append(f"{where}: give exactly one of path, const, join, by_position (found {sources or 'none'})")
        return None
    fields: dict[str, Any] = {}
    if "path" in spec:
        base = _field_path(option, spec["path"], errors)
        if base is None:
            return None
        fields.update(alternatives=base.alternatives, optional=base.optional, may_be_optional=base.may_be_optional)
    elif "const" in spec:
        fields.update(alternatives=(), const=spec["const"], is_const=True, may_be_optional=False)
    elif "join" in spec:
        parts = spec["join"]
        if not isinstance(parts, list) or len(parts) < 2 or not all(isinstance(p, str) for p in parts):
            errors.append(f"{where}.join: expected a list of two or more field paths, found {parts!r}")
            return None
        joined = [_field_path(option, part, errors) for part in parts]
        if None in joined:
            return None
        sep = spec.get("sep", ":")
        if not isinstance(sep, str):
            errors.append(f"{where}.sep: expected text, found {sep!r}")
            return None
        optional = any(part.optional for part in joined)
        fields.update(alternatives=tuple(p.alternatives[0] for p in joined), join=sep, optional=optional)
    else:
        names = spec["by_position"]
        if option != "speaker":
            errors.append(f"{where}.by_position: only the speaker can be given by message position")
            return None
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
            errors.append(f"{where}.by_position: expected a list of speaker names, found {names!r}")
            return None
        fields.update(alternatives=(), by_position=tuple(names), may_be_optional=False)
    if "regex" in spec:
        try:
            fields["regex"] = re.compile(spec["regex"])
        except (re.error, TypeError) as err:
            errors.append(f"{where}.regex: not a regular expression ({err}): {spec['regex']!r}")
            return None
        pattern, group, name = fields["regex"], spec.get("group"), option.rsplit(".", 1)[-1]
        if group is None:
            group = name if name in pattern.groupindex else (1 if pattern.groups else 0)
        valid = group in pattern.groupindex if isinstance(group, str) else 0 <= group <= pattern.groups
        if isinstance(group, bool) or not isinstance(group, (str, int)) or not valid:
            errors.append(f"{where}.group: {group!r} is not a group of the regex")
            return None
        fields["group"] = group
    elif "group" in spec:
        errors.append(f"{where}.group: needs a regex")
    if "map" in spec:
        if not isinstance(spec["map"], dict) or not spec["map"]:
            errors.append(f"{where}.map: expected {{found value: value}}, found {spec['map']!r}")
            return None
        fields["value_map"] = {str(k): v for k, v in spec["map"].items()}
    if "default" in spec:
        if "map" not in spec and "regex" not in spec:
            errors.append(f"{where}.default: needs a regex or a map (the value when it does not match)")
        fields.update(default=spec["default"], has_default=True)
    if "at_least" in spec:
        threshold = spec["at_least"]
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            errors.append(f"{where}.at_least: expected a number, found {threshold!r}")
            return None
        fields["at_least"] = float(threshold)
    if "time_format" in spec:
        if not isinstance(spec["time_format"], str) or "%" not in spec["time_format"]:
            errors.append(f"{where}.time_format: expected a strptime format like '%Y-%m-%d %H:%M:%S', found "
                          f"{spec['time_format']!r}")  # fmt: skip
            return None
        fields["time_format"] = spec["time_format"]
    if "time_zone" in spec:
        zone = _time_zone(spec["time_zone"])
        if zone is None:
            errors.append(f"{where}.time_zone: expected UTC, an offset like '+08:00' or a zone name like "
                          f"'Europe/Berlin', found {spec['time_zone']!r}")  # fmt: skip
            return None
        fields["time_zone"] = zone
    return FieldPath(option, **fields)


def _time_zone(value: Any) -> dt.tzinfo | None:
    """``UTC``, an offset (``+08:00``, ``-0500``) or an IANA zone name; None when it is none of them."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if text.upper() in ("UTC", "Z"):
        return dt.timezone.utc
    offset = re.fullmatch(r"([+-])(\d\d):?(\d\d)", text)
    if offset:
        sign = 1 if offset.group(1) == "+" else -1
        return dt.timezone(sign * dt.timedelta(hours=int(offset.group(2)), minutes=int(offset.group(3))))
    try:
        return zoneinfo.ZoneInfo(text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


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
    line, separator = _text_format(options, errors)
    if line is not None:
        defaults = {name: name for name in TEXT_DEFAULTS if name in line.groupindex}
        options = {"files": list(TEXT_FILES), "messages": "messages", **defaults, **options}
    parsed: dict[str, Any] = {"line": line, "separator": separator}
    for option in PATH_OPTIONS:
        if options.get(option) is not None:
            parsed[option] = _field_path(option, options[option], errors)
    for option in REQUIRED:
        if options.get(option) is None and not (option == "speaker" and _structural_speaker(options)):
            errors.append(f"mapping.{option}: required (a path relative to a message)")
    if layout == "flat":
        if options.get("conversation_id") is None:
            errors.append("mapping.conversation_id: required in the flat layout (it groups events into conversations)")
        elif parsed.get("conversation_id"):
            if parsed["conversation_id"].optional:
                errors.append("mapping.conversation_id: cannot be optional in the flat layout")
            parsed["conversation_id"] = replace(parsed["conversation_id"], may_be_optional=False)
        for option in ("messages", "histories", "matrix", "turns", "descriptions", "own_role"):
            if option in options:
                errors.append(f"mapping.{option}: not used in the flat layout (each record is one message)")
    elif layout == "grouped":
        containers = [option for option in CONTAINERS if options.get(option) is not None]
        if not containers:
            errors.append(
                "mapping.messages: required in the grouped layout (the list of messages of a conversation, "
                "or of a turn when mapping.turns is given), unless mapping.histories or mapping.matrix gives them"
            )
        elif len(containers) > 1:
            given = " and ".join(containers)
            errors.append(f"mapping.{containers[1]}: give one of {', '.join(CONTAINERS)}, not {given}")
        if options.get("turns") is not None and options.get("turn_index") is not None:
            errors.append("mapping.turns and mapping.turn_index: give one of them, not both")
        errors += _structure_errors(options)
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
    parsed["tool_call"] = _tool_call(options, errors)
    for option in ("interaction", "license", "own_role"):
        if option in options and not (isinstance(options[option], str) and options[option].strip()):
            errors.append(f"mapping.{option}: expected non-empty text, found {options[option]!r}")
    duplicate_ids = options.get("duplicate_ids", "reject")
    if duplicate_ids not in DUPLICATE_IDS:
        errors.append(
            f"mapping.duplicate_ids: expected 'reject' (a repeated conversation id is rejected) or 'number' (it "
            f"becomes '<id>#2', '<id>#3', ... in the split group of <id>), found {duplicate_ids!r}"
        )
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
        own_role=options.get("own_role", "assistant"),
        duplicate_ids=duplicate_ids,
    )


def _structural_speaker(options: dict[str, Any]) -> bool:
    """Whether the structure names the speakers (a history's key, a matrix row), so ``speaker`` may be left out."""
    return options.get("layout", "grouped") == "grouped" and any(options.get(o) is not None for o in CONTAINERS[1:])


def _structure_errors(options: dict[str, Any]) -> list[str]:
    """What histories and matrix refuse: options that would contradict the speakers and rounds they give."""
    errors = []
    speaker = options.get("speaker")
    by_position = isinstance(speaker, dict) and "by_position" in speaker
    for option in CONTAINERS[1:]:
        if options.get(option) is None:
            continue
        if options.get("role") is None:
            errors.append(
                f"mapping.role: required with mapping.{option} (a message whose role is mapping.own_role, default "
                "'assistant', is the agent's own; the others are what it received)"
            )
        if options.get("turns") is not None:
            errors.append(f"mapping.turns: not used with mapping.{option} (its messages are the turns' messages)")
    if options.get("histories") is not None and by_position:
        errors.append(
            "mapping.speaker.by_position: not used with mapping.histories (a history's key is its agent; speaker "
            "names who said a received message that no agent said, e.g. {const: moderator})"
        )
    if options.get("matrix") is not None:
        if speaker is not None and not by_position:
            errors.append(
                "mapping.speaker: with mapping.matrix the speakers are the rows; give {by_position: [names]} or "
                "leave it out (agent_0, agent_1, ...)"
            )
        if options.get("turn_index") is not None:
            errors.append("mapping.turn_index: not used with mapping.matrix (the rounds are the turns)")
    if options.get("own_role") is not None and not _structural_speaker(options):
        errors.append("mapping.own_role: only used with mapping.histories or mapping.matrix")
    return errors


def _text_format(options: dict[str, Any], errors: list[str]) -> tuple[re.Pattern | None, re.Pattern | None]:
    """``format: text``: the compiled line and separator regexes (None for JSON and Parquet, or when invalid)."""
    fmt = options.get("format", "json")
    if fmt not in ("json", "text"):
        errors.append(f"mapping.format: expected 'json' (JSON, JSONL, Parquet by file name) or 'text', found {fmt!r}")
        return None, None
    if fmt == "json":
        for option in ("line", "separator"):
            if option in options:
                errors.append(f"mapping.{option}: only read with format: text")
        return None, None
    for option, why in (("layout", "a text log is read as grouped"), ("records", "a file is one conversation"),
                        ("turns", "each message is its own turn, or use turn_index")):  # fmt: skip
        if option in options:
            errors.append(f"mapping.{option}: not used with format: text ({why})")
    pattern = options.get("line")
    if not isinstance(pattern, str) or not pattern:
        errors.append(
            "mapping.line: required with format: text (a regex matching the line that starts a message, with named "
            "groups: text, and speaker, timestamp, kind, role as the log has them)"
        )
        return None, None
    line, separator = _regex("line", pattern, errors), None
    if line is not None and "text" not in line.groupindex:
        errors.append(f"mapping.line: needs a named group 'text' (the message's first line), found groups "
                      f"{sorted(line.groupindex) or 'none'} in {pattern!r}")  # fmt: skip
        line = None
    if "separator" in options:
        given = options["separator"]
        if isinstance(given, str) and given:
            separator = _regex("separator", given, errors)
        else:
            errors.append(f"mapping.separator: expected a regex matching the line that starts a conversation, found "
                          f"{given!r}")  # fmt: skip
    return line, separator


def _regex(option: str, pattern: str, errors: list[str]) -> re.Pattern | None:
    try:
        return re.compile(pattern)
    except re.error as err:
        errors.append(f"mapping.{option}: not a regular expression ({err}): {pattern!r}")
        return None


def _tool_call(options: dict[str, Any], errors: list[str]) -> dict[str, FieldPath]:
    """The paths of a call's id, name and arguments inside one item of ``tool_calls`` (OpenAI's by default)."""
    given = options.get("tool_call")
    if given is not None and "tool_calls" not in options:
        errors.append("mapping.tool_call: needs mapping.tool_calls (the list of calls in a message)")
    given = {} if given is None else given
    if not isinstance(given, dict):
        errors.append(f"mapping.tool_call: expected {{{', '.join(TOOL_CALL_FIELDS)}: path in one call}}, "
                      f"found {given!r}")  # fmt: skip
        given = {}
    for name in given:
        if name not in TOOL_CALL_FIELDS:
            errors.append(f"mapping.tool_call: unknown field {name!r}; fields are: {', '.join(TOOL_CALL_FIELDS)}")
    paths = {**TOOL_CALL_FIELDS, **{k: v for k, v in given.items() if k in TOOL_CALL_FIELDS}}
    parsed = {name: _field_path(f"tool_call.{name}", path, errors) for name, path in paths.items()}
    return {name: fp for name, fp in parsed.items() if fp is not None}


def check_mapping(options: Any) -> None:
    """Raise ``ValueError`` with every problem of a ``mapping`` section, before any file is read."""
    parse_mapping(options)
