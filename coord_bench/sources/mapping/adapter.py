"""The ``mapping`` adapter: reads the files, groups a conversation (grouped or flat layout) and converts it.

The options, the lookups and the extras tree live in their own modules; this one holds only the reading
order of the two layouts and the assembly of the unified record.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from coord_bench.answers import is_correct
from coord_bench.sources.base import RawRecord, Reject, SourceAdapter, SourceSpec, agent, blank, message
from coord_bench.sources.mapping.extras import mapped_tree, unmapped_fields
from coord_bench.sources.mapping.options import (
    DEFAULT_FILES,
    DEFAULT_LICENSE,
    READABLE,
    ROLES,
    SECTIONS,
    FieldPath,
    parse_mapping,
)
from coord_bench.sources.mapping.paths import (
    coerce,
    get_path,
    identifier,
    missing_field,
    try_path,
    unix_seconds,
    wrong_type,
)
from coord_bench.sources.readers import ReadFailure, iter_records
from coord_bench.splits import normalize_text

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
    DUPLICATE_HINT = (
        "; if these are runs (trials) of one task, make the id unique, e.g. conversation_id: "
        "{join: [task_id, trial]}, and keep them in one split group with group_by: task_id"
    )
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
        self._tree = mapped_tree(self.options)
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

    def raw_records(self, path: Path) -> Iterator[RawRecord]:
        """One RawRecord per conversation: a record of the grouped layout, or the consecutive events of one
        conversation in the flat layout (locator: its first event)."""
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
            found, items, label, why = try_path(value, fp, root="the top-level value")
            where = f"top-level value {top} of {relative}"
            if not found:
                reject = missing_field(fp, why, where, label)
                yield n, ReadFailure(reject.reason, reject.field, reject.kind)
                n += 1
            elif isinstance(items, dict):  # a collection keyed by id: each record is read as {key, value}
                for key, item in items.items():
                    yield n, {"key": key, "value": item}
                    n += 1
            elif not isinstance(items, list):
                reject = wrong_type(label, "records", where, "a list of records or an object of them", items)
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
        value, label = get_path(container, fp, where, root=root)
        if value is None and fp.optional:
            return None
        return identifier(value, label, fp.option, where)

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
                return (*get_path(conversation, fp, where), where)

        turns, agents, times, skipped = self._turns(items, root)
        sections = {}
        for section, fields in SECTIONS.items():
            sections[section] = {}
            for name, fp in getattr(o, section).items():
                value, label, found_in = lookup(fp)
                sections[section][name] = coerce(value, fields[name], label, fp.option, found_in)
        task, outcome = {**blank("task"), **sections["task"]}, sections["outcome"]
        if "answer_correct" not in o.outcome and outcome.get("final_answer") is not None and task["references"]:
            outcome["answer_correct"] = is_correct(outcome["final_answer"], task["references"])
        digest = hashlib.sha256(
            json.dumps(raw.value, sort_keys=True, ensure_ascii=False, default=str).encode()
        ).hexdigest()[:16]
        local_id = cid if cid is not None else digest
        group = None
        if o.group_by is not None:
            value, label, found_in = lookup(o.group_by)
            group = None if value is None else coerce(value, "text", label, "group_by", found_in)
        if group is None and task["input"]:
            group = normalize_text(task["input"])
        self._extras = unmapped_fields(raw.value, self._tree, o.layout)
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
            found, value, label, _ = try_path(event, fp, root="the event")
            if found and value is not None:
                return value, label, f"record {raw.file}#{index}"
            if found and null_label is None:
                null_label = label
        if null_label is not None:
            return None, null_label, f"record {raw.locator}"
        _, _, label, why = try_path(events[0], fp, root="the event")
        if fp.optional:
            return None, label, f"record {raw.locator}"
        where = f"any of the {len(events)} events of conversation {cid!r}; in its first, record {raw.locator}"
        raise missing_field(fp, why, where, label)

    def _message_items(self, conversation: dict[str, Any], where: str) -> Iterator[tuple[Any, str, str, int | None]]:
        """(message, its path, where, its turn in the source or None) in source order."""
        o = self.options
        if o.turns is None:
            messages, label = get_path(conversation, o.messages, where)
            for m, msg in enumerate(self._list(messages, label, "messages", where)):
                yield msg, f"{label}.{m}", where, None
            return
        turns, turns_label = get_path(conversation, o.turns, where)
        for t, turn in enumerate(self._list(turns, turns_label, "turns", where)):
            messages, label = get_path(turn, o.messages, where, prefix=f"{turns_label}.{t}")
            for m, msg in enumerate(self._list(messages, label, "messages", where)):
                yield msg, f"{label}.{m}", where, t

    @staticmethod
    def _matches(msg: dict[str, Any], fp: FieldPath, values: tuple[Any, ...], prefix: str, root: str) -> bool:
        found, value, _, _ = try_path(msg, fp, prefix, root)
        return found and any(value == v and isinstance(value, bool) == isinstance(v, bool) for v in values)

    @staticmethod
    def _list(value: Any, label: str, option: str, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise wrong_type(label, option, where, "a list", value)
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
                raise wrong_type(prefix or "the event", "messages", msg_where, "an object (one message)", msg)
            if any(self._matches(msg, fp, values, prefix, root) for fp, values in o.skip):
                skipped += 1
                continue
            if o.speaker.by_position:
                speaker = o.speaker.by_position[position % len(o.speaker.by_position)]
            else:
                speaker, label = get_path(msg, o.speaker, msg_where, prefix, root)
                speaker = identifier(speaker, label, "speaker", msg_where)
            text, label = get_path(msg, o.text, msg_where, prefix, root)
            if not isinstance(text, str):
                raise wrong_type(label, "text", msg_where, "text", text)
            fields = {}
            for option in ("role", "kind", "model", "timestamp"):
                fp = getattr(o, option)
                value, label = get_path(msg, fp, msg_where, prefix, root) if fp else (None, "")
                if option == "timestamp":
                    fields[option] = unix_seconds(value, label, msg_where)
                else:
                    fields[option] = coerce(value, "text", label, option, msg_where)
            if o.turn_index is not None:
                key, label = get_path(msg, o.turn_index, msg_where, prefix, root)
                if not isinstance(key, (str, int, float)) or isinstance(key, bool):
                    raise wrong_type(label, "turn_index", msg_where, "a number or text", key)
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
