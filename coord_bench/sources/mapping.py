"""Your own multi-agent logs, mapped into the unified record by field paths: no code, a ``mapping`` section.

The options come from ``spec.options["mapping"]`` (a recipe source's ``mapping:``). A *field path* is dotted
keys, with list indexes as numbers (``session.id``, ``messages.0.content``, ``-1`` is the last item). A path
may also be a list of paths, tried in order: the first that matches a non-null value wins (``[name, role]``).
A path that matches nothing rejects the record, naming the path, the first missing key and the record; end
it with ``?`` where the field may be absent (its value is then null; quote such a path inside YAML braces:
``{decision_success: "success?"}``). A null on the way (``outcome: null`` for ``outcome.answer``) is a
match with a null value. ``check_mapping`` refuses invalid options before anything is read.

Layouts:

- ``grouped`` (default): each record is one conversation holding a list of messages (``messages``), or a
  list of turns each holding a list of messages (``turns`` + ``messages`` relative to a turn).
- ``flat``: each record is ONE message (an event); consecutive events with the same ``conversation_id``
  form a conversation. A file must be ordered by conversation: a conversation whose events are not next to
  each other in its file is rejected (every part of it), with the file and event index where it reappears.
  One conversation must not span files (a second part would be rejected as a duplicate id). Files are read
  twice (the first pass collects conversation ids only); memory holds one conversation and the ids. A bad
  event (unparsable, not an object, no conversation id) is rejected on its own. In rejects.jsonl the raw
  record of a flat conversation is ``{conversation_id, event_indexes, events}``.

Options (paths under "message" are relative to a message, or to the event in the flat layout; paths under
"conversation" are relative to the conversation record, or, in the flat layout, looked up in its events in
order, the first event where they match a non-null value winning):

=================  ================================================================================
``files``          globs under the source root; default every file type the readers know
                   (``**/*.json``, ``**/*.jsonl``, ``**/*.jsonl.gz``, ``**/*.json.gz``, ``**/*.ndjson``,
                   ``**/*.parquet``)
``records``        path, in each top-level value of a file, to the list of records (``conversations``
                   for ``{"conversations": [...]}``); default: each top-level value is a record. With it,
                   a locator's index counts records in the file. Fields beside the list are not kept.
``layout``         ``grouped`` or ``flat``
``conversation_id`` conversation: the conversation id, required for ``flat``. It is the source id and the
                   record id ``<source>:<id>``; without it, 16 hex digits of a content hash
``messages``       grouped, required: the list of messages (relative to a turn when ``turns`` is given)
``turns``          grouped: the list of turns; each becomes one turn of the record
``turn_index``     message: messages with the same value form one turn (ordered by value when every
                   value is a number, else by first appearance); not with ``turns``. Without both,
                   each message is its own turn
``speaker``        message, required: who spoke; the agent id and name (text or integer)
``text``           message, required: the message text
``role``           message: the speaker's role, mapped by ``role_map``; a value that is already one of
                   user, assistant, agent, character is kept; anything else (or none) is ``agent``
``role_map``       {source role: user | assistant | agent | character}
``kind``           message: the message kind (default ``message``)
``model``          message: the model behind the speaker (the first non-null one per agent)
``timestamp``      message: Unix seconds (a number, or a number as text) or an ISO-8601 date-time (UTC
                   when it has no zone; Parquet timestamps too).
                   The earliest is the record's timestamp; latest minus earliest its duration_seconds
``skip``           {message path: value or list of values}: messages matching any are dropped and
                   counted in extras ``skipped_messages`` (e.g. ``{role: [system]}``). Not an error
                   when the path is absent
``task``           {instruction, input, context, setting, language, references: conversation path}
``outcome``        {decision_success, final_answer, answer_correct, winner, judge, setting_after: path};
                   without ``answer_correct``, it is derived from final_answer and task.references
                   (DEBATE's ``answers_match``). winner must be one of the arena's four values
``protocol``       {paradigm, decision_protocol, persona_mode, task_variant, persona_diversity, rounds}
``group_by``       conversation: the split group key; default task.input (normalized), else the
                   conversation id, else the content hash
``interaction``    protocol.interaction (default ``multi_agent_chat``)
``license``        provenance.source_license (default ``unknown — set mapping.license``)
=================  ================================================================================

Extras: in the grouped layout every field no path maps, with its nesting (a list of messages keeps its
positions, null where a message was fully mapped); in the flat layout only ``unmapped_event_keys``, the
keys seen in events that no path maps. ``skipped_messages`` is added when ``skip`` dropped any.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from coord_bench.sources.base import RawRecord, Reject, SourceAdapter, SourceSpec, agent, blank, message
from coord_bench.sources.chatbot_arena import WINNERS
from coord_bench.sources.debate import answers_match
from coord_bench.sources.readers import ReadFailure, iter_records
from coord_bench.splits import normalize_text

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


# ---- looking values up -----------------------------------------------------------------------------------


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _keys(obj: dict[str, Any]) -> str:
    keys = [str(k) for k in obj]
    if not keys:
        return "it is empty"
    return "keys: " + ", ".join(keys[:12]) + (", ..." if len(keys) > 12 else "")


def _walk(value: Any, segments: tuple[str, ...], prefix: str, root: str) -> tuple[bool, Any, str]:
    """(matched, value, why not). A null on the way matches as null: the field is there without a value."""
    label = prefix or root
    for seg in segments:
        if value is None:
            return True, None, ""
        if isinstance(value, dict):
            if seg not in value:
                return False, None, f"{seg!r} is not a key of {label} ({_keys(value)})"
            value = value[seg]
        elif isinstance(value, list):
            try:
                position = int(seg)
            except ValueError:
                return False, None, f"{label} is a list, and {seg!r} is not an index"
            if not -len(value) <= position < len(value):
                return False, None, f"{label} has no item {seg} (it holds {len(value)})"
            value = value[position]
        else:
            return False, None, f"{label} is {type(value).__name__} {_show(value)}, which has no {seg!r}"
        label = f"{prefix}.{seg}" if prefix else seg
        prefix = label
    return True, value, ""


def _try(container: Any, fp: FieldPath, prefix: str = "", root: str = "the record") -> tuple[bool, Any, str, str]:
    """(matched, value, label of the path used, why not): the first alternative with a non-null value wins."""
    first_null, reasons = None, []
    for alt in fp.alternatives:
        label = ".".join((prefix, *alt)) if prefix else ".".join(alt)
        found, value, why = _walk(container, alt, prefix, root)
        if found and value is not None:
            return True, value, label, ""
        if found and first_null is None:
            first_null = label
        if not found:
            reasons.append(why)
    if first_null is not None:
        return True, None, first_null, ""
    label = ".".join((prefix, *fp.alternatives[0])) if prefix else ".".join(fp.alternatives[0])
    return False, None, label, "; ".join(reasons)


def _missing(fp: FieldPath, why: str, where: str, label: str) -> Reject:
    hint = " (end the path with '?' if it may be absent)" if fp.may_be_optional else ""
    paths = "field path" if len(fp.alternatives) == 1 else "none of the field paths"
    return Reject(
        f"{paths} {fp.shown} ({fp.option}) matches nothing: {why} in {where}{hint}", field=label, kind="missing_field"
    )


def _get(container: Any, fp: FieldPath, where: str, prefix: str = "", root: str = "the record") -> tuple[Any, str]:
    found, value, label, why = _try(container, fp, prefix, root)
    if not found and not fp.optional:
        raise _missing(fp, why, where, label)
    return value, label


def _wrong(label: str, option: str, where: str, expected: str, value: Any) -> Reject:
    found = "null" if value is None else f"{type(value).__name__} {_show(value)}"
    return Reject(
        f"field '{label}' ({option}) in {where}: expected {expected}, found {found}", field=label, kind="wrong_type"
    )


def _identifier(value: Any, label: str, option: str, where: str) -> str:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _wrong(label, option, where, "non-empty text or an integer", value)


def _coerce(value: Any, how: str, label: str, option: str, where: str) -> Any:
    """A mapped value as its column wants it; null stays null (references: an empty list)."""
    if how == "texts":
        items = [] if value is None else value if isinstance(value, list) else [value]
        return [_coerce(item, "text", f"{label}.{i}", option, where) for i, item in enumerate(items)]
    if value is None:
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if how == "text":
        if isinstance(value, str):
            return value
        if number:
            return str(value)
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return "\n\n".join(value)
        raise _wrong(label, option, where, "text (or a number, or a list of texts)", value)
    if how == "bool":
        if isinstance(value, bool):
            return value
        raise _wrong(label, option, where, "true or false", value)
    if how == "number":
        if number:
            return float(value)
        raise _wrong(label, option, where, "a number", value)
    if how == "int":
        if number and float(value).is_integer():
            return int(value)
        raise _wrong(label, option, where, "an integer", value)
    if how == "winner":
        if value in WINNERS:
            return value
        raise Reject(
            f"field '{label}' ({option}) in {where}: expected one of {', '.join(WINNERS)}, found {_show(value)}",
            field=label,
            kind="unknown_value",
        )
    raise AssertionError(how)


def _unix_seconds(value: Any, label: str, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    moment = value if isinstance(value, dt.datetime) else None  # Parquet timestamp columns
    if isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text)  # Unix seconds written as text
        except ValueError:
            seconds = None
        if seconds is not None and math.isfinite(seconds):
            return seconds
        text = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            moment = None
    if moment is None:
        raise _wrong(label, "timestamp", where, "Unix seconds or an ISO-8601 date-time", value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()


# ---- which source fields the paths use (for extras) --------------------------------------------------------


def _insert(tree: dict[str, Any], segments: tuple[str, ...]) -> None:
    node = tree
    for seg in segments[:-1]:
        child = node.setdefault(seg, {})
        if child is True:
            return
        node = child
    node[segments[-1]] = True


def _merge(*trees: Any) -> Any:
    trees = tuple(t for t in trees if t is not None)
    if not trees:
        return None
    if any(t is True for t in trees):
        return True
    out: dict[str, Any] = {}
    for tree in trees:
        for key, sub in tree.items():
            out[key] = _merge(out.get(key), sub)
    return out


_GONE = object()


def _prune(value: Any, tree: Any) -> Any:
    """``value`` without the parts the paths in ``tree`` map; ``_GONE`` when nothing is left."""
    if tree is True:
        return _GONE
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            sub = tree.get(key)
            kept = item if sub is None else _prune(item, sub)
            if kept is not _GONE:
                out[key] = kept
        return out or _GONE
    if isinstance(value, list):
        items = []
        for i, item in enumerate(value):
            sub = _merge(tree.get("*"), tree.get(str(i)), tree.get(str(i - len(value))))
            items.append(item if sub is None else _prune(item, sub))
        if all(item is _GONE for item in items):
            return _GONE
        return [None if item is _GONE else item for item in items]
    return value


def _unmapped_keys(event: dict[str, Any], tree: Any, prefix: str = "") -> Iterator[str]:
    for key, item in event.items():
        sub = tree.get(key)
        if sub is None:
            yield f"{prefix}{key}"
        elif sub is not True and isinstance(item, dict):
            yield from _unmapped_keys(item, sub, f"{prefix}{key}.")


# ---- the adapter -----------------------------------------------------------------------------------------


_NO_ID = object()


class Mapping(SourceAdapter):
    name = "mapping"
    hub_repo_id = None
    license = DEFAULT_LICENSE
    interaction = "multi_agent_chat"
    file_patterns = DEFAULT_FILES
    SUMMARY = "multi-agent logs mapped by field paths from a recipe's mapping section"
    CAVEATS = ("its meaning depends on the mapping recipe recorded in the Rebuild section",)
    GROUP_KEY = "mapping.group_by, else the normalized task input, else the conversation id"
    FIELD_MAP = {
        "mapping.conversation_id": "source_id; id = '<source>:<conversation id>' (without it: a content hash)",
        "mapping.messages / mapping.turns": "turns[].messages (turns: one turn each)",
        "mapping.turn_index": "turns: messages with the same value form one turn",
        "mapping.speaker": "agents[].agent_id and name, turns[].messages[].agent_id",
        "mapping.role": "agents[].role through mapping.role_map (default agent)",
        "mapping.text": "turns[].messages[].text",
        "mapping.kind": "turns[].messages[].kind (default 'message')",
        "mapping.model": "agents[].model",
        "mapping.timestamp": "turns[].messages[].timestamp (Unix seconds); the earliest is timestamp, "
        "latest minus earliest duration_seconds",
        "mapping.task.<field>": "task.<field>",
        "mapping.outcome.<field>": "outcome.<field>; answer_correct derived from final_answer and task.references "
        "when it is not mapped",
        "mapping.protocol.<field>": "protocol.<field>; protocol.interaction = mapping.interaction",
        "mapping.group_by": "split group (default: normalized task.input, else the conversation id)",
    }
    KEPT_IN_EXTRAS = {
        "unmapped fields (grouped layout)": "every field of a conversation that no path maps, with its nesting",
        "unmapped_event_keys (flat layout)": "the keys of events that no path maps",
        "skipped_messages": "how many messages mapping.skip dropped",
    }
    DROPPED = {
        "mapping.skip": "messages matching it (counted in extras.skipped_messages)",
        "fields beside mapping.records": "the rest of a top-level value that holds the list of records",
        "unmapped event values (flat layout)": "only their keys are kept, in extras.unmapped_event_keys",
    }

    def __init__(self, spec: SourceSpec):
        super().__init__(spec)
        try:
            self.options = parse_mapping(spec.options.get("mapping"))
        except ValueError as err:
            raise ValueError(f"source '{spec.name}': {err}") from None
        self.license = self.options.license
        self.interaction = self.options.interaction
        self._tree = self._mapped_tree()
        self._extras: dict[str, Any] = {}

    # -- reading

    def files(self) -> list[Path]:
        root = self.spec.root
        found = sorted({p for pattern in self.options.files for p in root.glob(pattern) if p.is_file()})
        if not found:
            raise FileNotFoundError(
                f"source '{self.spec.name}': no files under {root} match mapping.files "
                f"({', '.join(self.options.files)})"
            )
        other = [p.relative_to(root).as_posix() for p in found if not p.name.endswith(READABLE)]
        if other:
            raise ValueError(
                f"source '{self.spec.name}': mapping.files matches {', '.join(other[:3])}, which the mapping adapter "
                f"cannot read (it reads {', '.join(READABLE)}); narrow the globs"
            )
        return found

    def iter_raw(self) -> Iterator[RawRecord]:
        """One RawRecord per conversation: a record of the grouped layout, or the consecutive events of one
        conversation in the flat layout (locator: its first event)."""
        for path in self.files():
            relative = path.relative_to(self.spec.root).as_posix()
            if self.options.layout == "flat":
                yield from self._flat_conversations(path, relative)
            else:
                for index, value in self._records(path, relative):
                    yield RawRecord(relative, index, value)

    def _records(self, path: Path, relative: str) -> Iterator[tuple[int, Any]]:
        """The file's records: its top-level values, or the items of the list at ``records`` in each."""
        fp = self.options.records
        if fp is None:
            yield from iter_records(path)
            return
        n = 0
        for top, value in iter_records(path):
            if isinstance(value, ReadFailure):
                yield n, value
                n += 1
                continue
            found, items, label, why = _try(value, fp, root="the top-level value")
            if not found:
                reject = _missing(fp, why, f"top-level value {top} of {relative}", label)
                yield n, ReadFailure(reject.reason, reject.field, reject.kind)
                n += 1
            elif not isinstance(items, list):
                reject = _wrong(label, "records", f"top-level value {top} of {relative}", "a list of records", items)
                yield n, ReadFailure(reject.reason, reject.field, reject.kind)
                n += 1
            else:
                for item in items:
                    yield n, item
                    n += 1

    def _events(self, path: Path, relative: str) -> Iterator[tuple[int, Any, str | None]]:
        """(index, event, conversation id); a bad event comes as a ``ReadFailure`` with id None."""
        for index, value in self._records(path, relative):
            if isinstance(value, ReadFailure):
                yield index, value, None
            elif not isinstance(value, dict):
                reason = f"record {relative}#{index}: expected an object (one event), found {type(value).__name__}"
                yield index, ReadFailure(reason, None, "wrong_type"), None
            else:
                try:
                    yield index, value, self._conversation_id(value, f"record {relative}#{index}", "the event")
                except Reject as reject:
                    yield index, ReadFailure(reject.reason, reject.field, reject.kind), None

    def _flat_conversations(self, path: Path, relative: str) -> Iterator[RawRecord]:
        # pass 1 (ids only): the runs of each conversation id, to reject every part of a split conversation
        runs: dict[str, list[tuple[int, Any]]] = {}
        current: Any = _NO_ID
        for index, _, cid in self._events(path, relative):
            if cid is not None and cid != current:
                runs.setdefault(cid, []).append((index, current))
                current = cid
        split = {cid: starts for cid, starts in runs.items() if len(starts) > 1}
        # pass 2: group consecutive events
        current, events, indexes = _NO_ID, [], []
        for index, event, cid in self._events(path, relative):
            if cid is None:
                yield RawRecord(relative, index, event)  # rejected on its own; the conversation goes on
                continue
            if cid != current:
                if events:
                    yield self._conversation(relative, current, events, indexes, split)
                current, events, indexes = cid, [], []
            events.append(event)
            indexes.append(index)
        if events:
            yield self._conversation(relative, current, events, indexes, split)

    def _conversation(
        self, relative: str, cid: str, events: list[Any], indexes: list[int], split: dict[str, Any]
    ) -> RawRecord:
        if cid not in split:
            return RawRecord(relative, indexes[0], {"conversation_id": cid, "event_indexes": indexes, "events": events})
        starts = split[cid]
        again, before = starts[1]
        reason = (
            f"conversation {cid!r} is not contiguous in {relative}: it reappears at event #{again} after "
            f"conversation {before!r} started (its parts start at events "
            f"{', '.join(f'#{i}' for i, _ in starts)}). The flat layout needs the events of a conversation next "
            "to each other: sort the file by conversation id (then by turn). Every part of it is rejected."
        )
        return RawRecord(relative, indexes[0], ReadFailure(reason, self.options.conversation_id.shown, "interleaved"))

    def extras(self, raw: dict[str, Any]) -> dict[str, Any]:
        return self._extras

    # -- converting

    def _conversation_id(self, container: Any, where: str, root: str) -> str | None:
        fp = self.options.conversation_id
        if fp is None:
            return None
        value, label = _get(container, fp, where, root=root)
        if value is None and fp.optional:
            return None
        return _identifier(value, label, fp.option, where)

    def convert(self, raw: RawRecord) -> dict[str, Any]:
        o = self.options
        where = f"record {raw.locator}"
        if o.layout == "flat":
            cid = raw.value["conversation_id"]
            events = raw.value["events"]
            items = [
                (event, "", f"record {raw.file}#{i}", None)
                for i, event in zip(raw.value["event_indexes"], events, strict=True)
            ]
            root = "the event"

            def lookup(fp: FieldPath) -> tuple[Any, str, str]:
                return self._in_events(fp, events, cid, raw)

        else:
            conversation = raw.value
            cid = self._conversation_id(conversation, where, "the record")
            items = list(self._message_items(conversation, where))
            root = "the record"

            def lookup(fp: FieldPath) -> tuple[Any, str, str]:
                return (*_get(conversation, fp, where), where)

        turns, agents, times, skipped = self._turns(items, root)
        sections = {}
        for section, fields in SECTIONS.items():
            sections[section] = {}
            for name, fp in getattr(o, section).items():
                value, label, found_in = lookup(fp)
                sections[section][name] = _coerce(value, fields[name], label, fp.option, found_in)
        task, outcome = {**blank("task"), **sections["task"]}, sections["outcome"]
        if "answer_correct" not in o.outcome and outcome.get("final_answer") is not None and task["references"]:
            outcome["answer_correct"] = any(answers_match(outcome["final_answer"], ref) for ref in task["references"])
        digest = hashlib.sha256(
            json.dumps(raw.value, sort_keys=True, ensure_ascii=False, default=str).encode()
        ).hexdigest()[:16]
        local_id = cid if cid is not None else digest
        group = None
        if o.group_by is not None:
            value, label, found_in = lookup(o.group_by)
            group = None if value is None else _coerce(value, "text", label, "group_by", found_in)
        if group is None and task["input"]:
            group = normalize_text(task["input"])
        self._extras = self._unmapped(raw.value)
        if skipped:
            self._extras["skipped_messages"] = skipped
        return {
            "local_id": local_id,
            "source_id": local_id,
            "group_key": group if group is not None else local_id,
            "task": task,
            "protocol": sections["protocol"],
            "agents": agents,
            "turns": turns,
            "outcome": outcome,
            "timestamp": min(times) if times else None,
            "duration_seconds": max(times) - min(times) if len(times) > 1 else None,
        }

    def _in_events(self, fp: FieldPath, events: list[dict[str, Any]], cid: str, raw: RawRecord) -> tuple[Any, str, str]:
        """A conversation-level path in the flat layout: (value, label, where) from the first event where it
        matches a non-null value."""
        null_label = None
        for index, event in zip(raw.value["event_indexes"], events, strict=True):
            found, value, label, _ = _try(event, fp, root="the event")
            if found and value is not None:
                return value, label, f"record {raw.file}#{index}"
            if found and null_label is None:
                null_label = label
        if null_label is not None:
            return None, null_label, f"record {raw.locator}"
        _, _, label, why = _try(events[0], fp, root="the event")
        if fp.optional:
            return None, label, f"record {raw.locator}"
        where = f"any of the {len(events)} events of conversation {cid!r}; in its first, record {raw.locator}"
        raise _missing(fp, why, where, label)

    def _message_items(self, conversation: dict[str, Any], where: str) -> Iterator[tuple[Any, str, str, int | None]]:
        """(message, its path, where, its turn in the source or None) in source order."""
        o = self.options
        if o.turns is None:
            messages, label = _get(conversation, o.messages, where)
            for m, msg in enumerate(self._list(messages, label, "messages", where)):
                yield msg, f"{label}.{m}", where, None
            return
        turns, turns_label = _get(conversation, o.turns, where)
        for t, turn in enumerate(self._list(turns, turns_label, "turns", where)):
            messages, label = _get(turn, o.messages, where, prefix=f"{turns_label}.{t}")
            for m, msg in enumerate(self._list(messages, label, "messages", where)):
                yield msg, f"{label}.{m}", where, t

    @staticmethod
    def _matches(msg: dict[str, Any], fp: FieldPath, values: tuple[Any, ...], prefix: str, root: str) -> bool:
        found, value, _, _ = _try(msg, fp, prefix, root)
        return found and any(value == v and isinstance(value, bool) == isinstance(v, bool) for v in values)

    @staticmethod
    def _list(value: Any, label: str, option: str, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise _wrong(label, option, where, "a list", value)
        return value

    def _turns(
        self, items: list[tuple[Any, str, str, int | None]], root: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[float], int]:
        o = self.options
        rows: list[tuple[Any, str, str, str, float | None]] = []
        agents: dict[str, dict[str, Any]] = {}
        skipped = 0
        for position, (msg, prefix, msg_where, natural_turn) in enumerate(items):
            if not isinstance(msg, dict):
                raise _wrong(prefix or "the event", "messages", msg_where, "an object (one message)", msg)
            if any(self._matches(msg, fp, values, prefix, root) for fp, values in o.skip):
                skipped += 1
                continue
            speaker, label = _get(msg, o.speaker, msg_where, prefix, root)
            speaker = _identifier(speaker, label, "speaker", msg_where)
            text, label = _get(msg, o.text, msg_where, prefix, root)
            if not isinstance(text, str):
                raise _wrong(label, "text", msg_where, "text", text)
            fields = {}
            for option in ("role", "kind", "model", "timestamp"):
                fp = getattr(o, option)
                value, label = _get(msg, fp, msg_where, prefix, root) if fp else (None, "")
                if option == "timestamp":
                    fields[option] = _unix_seconds(value, label, msg_where)
                else:
                    fields[option] = _coerce(value, "text", label, option, msg_where)
            if o.turn_index is not None:
                key, label = _get(msg, o.turn_index, msg_where, prefix, root)
                if not isinstance(key, (str, int, float)) or isinstance(key, bool):
                    raise _wrong(label, "turn_index", msg_where, "a number or text", key)
            else:
                key = natural_turn if natural_turn is not None else position
            role = o.role_map.get(fields["role"]) or (fields["role"] if fields["role"] in ROLES else "agent")
            if speaker not in agents:
                agents[speaker] = agent(speaker, speaker, role, model=fields["model"])
            elif agents[speaker]["model"] is None:
                agents[speaker]["model"] = fields["model"]
            rows.append((key, speaker, fields["kind"] or "message", text, fields["timestamp"]))
        if not rows:
            note = f" ({skipped} dropped by mapping.skip)" if skipped else ""
            raise Reject(f"the conversation has no messages{note}", field=None, kind="empty_conversation")
        groups: dict[Any, list[tuple[str, str, str, float | None]]] = {}
        for key, *rest in rows:
            groups.setdefault(key, []).append(tuple(rest))
        keys = list(groups)
        if o.turn_index is not None and all(isinstance(k, (int, float)) for k in keys):
            keys.sort()
        turns, n = [], 0
        for index, key in enumerate(keys):
            messages = []
            for speaker, kind, text, timestamp in groups[key]:
                messages.append(message(n, speaker, kind, text, timestamp=timestamp))
                n += 1
            turns.append({"index": index, "messages": messages})
        times = [row[4] for row in rows if row[4] is not None]
        return turns, list(agents.values()), times, skipped

    # -- extras

    def _mapped_tree(self) -> dict[str, Any]:
        o = self.options
        tree: dict[str, Any] = {}
        conversation_paths = [o.conversation_id, o.group_by]
        conversation_paths += [*o.task.values(), *o.outcome.values(), *o.protocol.values()]
        message_paths = [o.speaker, o.text, o.role, o.kind, o.model, o.timestamp, o.turn_index]
        message_paths += [fp for fp, _ in o.skip]
        if o.layout == "flat":
            prefix: tuple[str, ...] = ()
        elif o.turns is not None:
            prefix = (*o.turns.alternatives[0], "*", *o.messages.alternatives[0], "*")
        else:
            prefix = (*o.messages.alternatives[0], "*")
        for fp in conversation_paths:
            for alt in fp.alternatives if fp else ():
                _insert(tree, alt)
        for fp in message_paths:
            for alt in fp.alternatives if fp else ():
                _insert(tree, (*prefix, *alt))
        return tree

    def _unmapped(self, value: dict[str, Any]) -> dict[str, Any]:
        if self.options.layout == "flat":
            keys = {key for event in value["events"] for key in _unmapped_keys(event, self._tree)}
            return {"unmapped_event_keys": sorted(keys)} if keys else {}
        rest = _prune(value, self._tree)
        return {} if rest is _GONE else rest
