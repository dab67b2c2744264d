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
from coord_bench.sources.base import RawRecord, Reject, SourceAdapter, SourceSpec, abbreviated, agent, blank, message
from coord_bench.sources.mapping.extras import mapped_tree, unmapped_fields
from coord_bench.sources.mapping.failures import FieldFailures
from coord_bench.sources.mapping.histories import history_items
from coord_bench.sources.mapping.items import Item
from coord_bench.sources.mapping.matrices import matrix_items
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
from coord_bench.sources.mapping.text_log import iter_text_log
from coord_bench.sources.mapping.tool_calls import answered_call, call_text, calls_in
from coord_bench.sources.readers import ReadFailure
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
        "; if these are runs (trials) of one task, set duplicate_ids: number (a repeat becomes '<id>#2', "
        "'<id>#3', ... in the split group of <id>), or make the id unique, e.g. conversation_id: "
        "{join: [task_id, trial]}, and keep them in one split group with group_by: task_id"
    )
    FIELD_MAP = {
        "mapping.conversation_id": "source_id; id = '<source>:<conversation id>' (without it: a content hash)",
        "mapping.messages / mapping.turns": "turns[].messages (turns: one turn each)",
        "mapping.histories": "turns[].messages: the histories merged, a message said once; the key is the speaker "
        "of its own messages; an own message's visible_message_ids: what came before it in its history",
        "mapping.matrix": "turns[] = rounds, agents = rows; an answer's visible_message_ids: the other agents' "
        "answers of the previous round",
        "mapping.descriptions": "agents[].description",
        "mapping.duplicate_ids": "number: a repeated conversation id becomes '<id>#2', ... (source_id too), in "
        "the split group of <id>",
        "mapping.turn_index": "turns: messages with the same value form one turn",
        "mapping.speaker": "agents[].agent_id and name, turns[].messages[].agent_id",
        "mapping.role": "agents[].role through mapping.role_map (default agent)",
        "mapping.text": "turns[].messages[].text",
        "mapping.kind": "turns[].messages[].kind (default 'message')",
        "mapping.model": "agents[].model",
        "mapping.tool_calls": "one message of kind tool_call per call, with turns[].messages[].tool_call "
        "(call_id, name, arguments as JSON text)",
        "mapping.tool_call_id": "kind tool_result; turns[].messages[].tool_call names the call answered",
        "mapping.line (format: text)": "the named groups of a log line are the fields of a message; lines that "
        "do not match continue its text",
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
        "preamble (format: text)": "the lines of a log before its first message, unless a path maps them",
    }
    DROPPED = {
        "mapping.skip": "messages matching it (counted in extras.skipped_messages)",
        "fields beside mapping.records": "the rest of a top-level value that holds the list of records",
        "unmapped event values (flat layout)": "only their keys are kept, in extras.unmapped_event_keys",
        "prompts in mapping.matrix": "what an agent was shown: the other agents' answers, kept as "
        "visible_message_ids (map a template with task.instruction)",
        "copies in mapping.histories": "a message in several histories is kept once",
        "blank lines around a message (format: text)": "the separators of log entries",
        "a null or empty text beside tool calls": "the calls are the message",
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
        self._repeats: dict[str, int] = {}  # duplicate_ids: number: how often each conversation id was seen

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
        if other and self.options.line is None:
            raise ValueError(
                f"source '{self.spec.name}': mapping.files matches {', '.join(other[:3])}, which the mapping adapter "
                f"cannot read as JSON or Parquet (it reads {', '.join(READABLE)}); narrow the globs, or read "
                "plain-text logs with format: text and a line regex"
            )
        return found

    @property
    def reads_in_order(self) -> bool:
        return self.options.duplicate_ids == "number"  # '<id>#2' counts the repeats read before, in any file

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
        if self.options.line is not None:
            yield from self.read_values(path, iter_text_log(path, self.options.line, self.options.separator))
            return
        if fp is None:
            yield from self.read_values(path)
            return
        n = 0
        for top, value in self.read_values(path):
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
            f"conversation {abbreviated(cid)!r} is not contiguous in {relative}: it reappears at event #{again} "
            f"after conversation {abbreviated(before)!r} started (its parts start at events "
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
        """The record, or one reject listing every field failure (a failure that ends the reading, such as
        messages that are not a list, comes last, after those found before it)."""
        self._failures = FieldFailures()
        try:
            record = self._convert(raw)
        except Reject as failure:
            self._failures.add(failure)
        reject = self._failures.reject()
        if reject is not None:
            raise reject
        return record

    def _convert(self, raw: RawRecord) -> dict[str, Any]:
        o = self.options
        read = self._failures.read
        where = f"record {raw.locator}"
        if o.layout == "flat":
            cid = raw.value["conversation_id"]
            events = raw.value["events"]
            items = [
                Item(event, "", f"record {raw.file}#{i}")
                for i, event in zip(raw.value["event_indexes"], events, strict=True)
            ]
            root = "the event"

            def lookup(fp: FieldPath) -> tuple[Any, str, str]:
                return self._in_events(fp, events, cid, raw)

        else:
            conversation = raw.value
            cid = read(self._conversation_id, conversation, where, "the record")
            items = list(self._message_items(conversation, where))
            root = "the record"

            def lookup(fp: FieldPath) -> tuple[Any, str, str]:
                return (*get_path(conversation, fp, where), where)

        def read_field(fp: FieldPath, how: str) -> Any:
            value, label, found_in = lookup(fp)
            return coerce(value, how, label, fp.option, found_in)

        turns, agents, times, skipped = self._turns(items, root)
        if o.descriptions is not None:
            read(lambda: self._describe(agents, *lookup(o.descriptions)))
        sections = {}
        for section, fields in SECTIONS.items():
            sections[section] = {}
            for name, fp in getattr(o, section).items():
                sections[section][name] = read(read_field, fp, fields[name])
        task, outcome = {**blank("task"), **sections["task"]}, sections["outcome"]
        if "answer_correct" not in o.outcome and outcome.get("final_answer") is not None and task["references"]:
            outcome["answer_correct"] = is_correct(outcome["final_answer"], task["references"])
        digest = hashlib.sha256(
            json.dumps(raw.value, sort_keys=True, ensure_ascii=False, default=str).encode()
        ).hexdigest()[:16]
        local_id = cid if cid is not None else digest
        if o.duplicate_ids == "number":
            seen = self._repeats[local_id] = self._repeats.get(local_id, 0) + 1
            local_id = local_id if seen == 1 else f"{local_id}#{seen}"
        group = None
        if o.group_by is not None:
            group = read(read_field, o.group_by, "text")
        if group is None and task["input"]:
            group = normalize_text(task["input"])
        if self._failures.found:
            return {}  # rejected by convert: the extras are not worth computing
        self._extras = unmapped_fields(raw.value, self._tree, o.layout)
        if skipped:
            self._extras["skipped_messages"] = skipped
        return {
            "local_id": local_id,
            "source_id": local_id,
            "group_key": group if group is not None else cid if cid is not None else digest,
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
        cid = abbreviated(cid)
        where = f"any of the {len(events)} events of conversation {cid!r}; in its first, record {raw.locator}"
        raise missing_field(fp, why, where, label)

    def _message_items(self, conversation: dict[str, Any], where: str) -> Iterator[Item]:
        """The conversation's messages in the order they were said."""
        o = self.options
        if o.histories is not None:
            yield from history_items(conversation, o, where)
        elif o.matrix is not None:
            yield from matrix_items(conversation, o, where)
        elif o.turns is None:
            messages, label = get_path(conversation, o.messages, where)
            for m, msg in enumerate(self._list(messages, label, "messages", where)):
                yield Item(msg, f"{label}.{m}", where)
        else:
            turns, turns_label = get_path(conversation, o.turns, where)
            for t, turn in enumerate(self._list(turns, turns_label, "turns", where)):
                messages, label = get_path(turn, o.messages, where, prefix=f"{turns_label}.{t}")
                for m, msg in enumerate(self._list(messages, label, "messages", where)):
                    yield Item(msg, f"{label}.{m}", where, t)

    @staticmethod
    def _describe(agents: list[dict[str, Any]], value: Any, label: str, where: str) -> None:
        """Each agent's description from ``{agent id: text}``; a name that never spoke is added as an agent."""
        if value is None:
            return
        if not isinstance(value, dict):
            raise wrong_type(label, "descriptions", where, "an object {agent id: description}", value)
        by_id = {a["agent_id"]: a for a in agents}
        for name, text in value.items():
            text = coerce(text, "text", f"{label}.{name}", "descriptions", where)
            if name not in by_id:
                by_id[name] = agent(name, name, "agent")
                agents.append(by_id[name])
            by_id[name]["description"] = text

    @staticmethod
    def _matches(msg: dict[str, Any], fp: FieldPath, values: tuple[Any, ...], prefix: str, root: str) -> bool:
        found, value, _, _ = try_path(msg, fp, prefix, root)
        return found and any(value == v and isinstance(value, bool) == isinstance(v, bool) for v in values)

    @staticmethod
    def _list(value: Any, label: str, option: str, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise wrong_type(label, option, where, "a list", value)
        return value

    @staticmethod
    def _field(msg: dict[str, Any], fp: FieldPath | None, how: str, where: str, prefix: str, root: str) -> Any:
        """One field of a message as ``how`` wants it: an id, a turn key, a timestamp, or a ``coerce`` kind; an
        option not given is null."""
        if fp is None:
            return None
        value, label = get_path(msg, fp, where, prefix, root)
        if how == "id":
            return identifier(value, label, fp.option, where)
        if how == "turn key" and (not isinstance(value, (str, int, float)) or isinstance(value, bool)):
            raise wrong_type(label, fp.option, where, "a number or text", value)
        if how == "timestamp":
            return unix_seconds(value, label, where, fp)
        return value if how == "turn key" else coerce(value, how, label, fp.option, where)

    def _text(self, msg: dict[str, Any], calls: bool, where: str, prefix: str, root: str) -> str | None:
        """The message text; None for a message that (``calls``) may only call tools (OpenAI content null)."""
        o = self.options
        found, text, label, why = try_path(msg, o.text, prefix, root)
        if calls and (text is None or (isinstance(text, str) and not text.strip())):
            return None
        if not found:
            raise missing_field(o.text, why, where, label)
        if not isinstance(text, str):
            raise wrong_type(label, "text", where, "text", text)
        return text

    def _turns(
        self, items: list[Item], root: str
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[float], int]:
        o = self.options
        read = self._failures.read
        rows: list[tuple[Any, int, str, str, str, float | None, dict[str, Any] | None]] = []
        agents: dict[str, dict[str, Any]] = {}
        call_names: dict[str, str] = {}  # call id -> function name, for the results that answer them
        skipped = 0
        for position, (msg, prefix, msg_where, natural_turn, structural_speaker, _) in enumerate(items):
            if not isinstance(msg, dict):
                raise wrong_type(prefix or "the event", "messages", msg_where, "an object (one message)", msg)
            if any(self._matches(msg, fp, values, prefix, root) for fp, values in o.skip):
                skipped += 1
                continue
            if structural_speaker is not None:
                speaker = structural_speaker
            elif o.speaker.by_position:
                speaker = o.speaker.by_position[position % len(o.speaker.by_position)]
            else:
                speaker = read(self._field, msg, o.speaker, "id", msg_where, prefix, root, stand_in="")
            calls = read(calls_in, msg, o, prefix, root, msg_where)  # None: they failed (the text may then be null)
            answers = read(answered_call, msg, o, prefix, root, msg_where)
            text = read(self._text, msg, calls is None or bool(calls), msg_where, prefix, root, stand_in="")
            fields = {}
            for option in ("role", "kind", "model", "timestamp"):
                how = "timestamp" if option == "timestamp" else "text"
                fields[option] = read(self._field, msg, getattr(o, option), how, msg_where, prefix, root)
            if o.turn_index is not None:
                key = read(self._field, msg, o.turn_index, "turn key", msg_where, prefix, root, stand_in=position)
            else:
                key = natural_turn if natural_turn is not None else position
            given = fields["role"]  # mapped, else kept when it is a schema role; no role at all on a result: tool
            role = o.role_map.get(given) or (given if given in ROLES else None)
            role = role or ("tool" if answers is not None and given is None else "agent")
            if speaker not in agents:
                agents[speaker] = agent(speaker, speaker, role, model=fields["model"])
            elif agents[speaker]["model"] is None:
                agents[speaker]["model"] = fields["model"]
            stamp = fields["timestamp"]
            if answers is not None:
                result = {"call_id": answers, "name": call_names.get(answers), "arguments": None}
                rows.append((key, position, speaker, "tool_result", text or "", stamp, result))
            elif text is not None:
                rows.append((key, position, speaker, fields["kind"] or "message", text, stamp, None))
            for call in calls or ():
                if call["call_id"] is not None:
                    call_names.setdefault(call["call_id"], call["name"])
                rows.append((key, position, speaker, "tool_call", call_text(call), stamp, call))
        if not rows and not self._failures.found:  # messages whose fields failed are not also "no messages"
            note = f" ({skipped} dropped by mapping.skip)" if skipped else ""
            raise Reject(f"the conversation has no messages{note}", field=None, kind="empty_conversation")
        groups: dict[Any, list[tuple[int, str, str, str, float | None, dict[str, Any] | None]]] = {}
        for key, *rest in rows:
            groups.setdefault(key, []).append(tuple(rest))
        keys = list(groups)
        if o.turn_index is not None and all(isinstance(k, (int, float)) for k in keys):
            keys.sort()
        turns, ids, placed, n = [], {}, [], 0  # ids: item position -> its message ids (a call each, and its text)
        for index, key in enumerate(keys):
            messages = []
            for position, speaker, kind, text, timestamp, tool_call in groups[key]:
                ids.setdefault(position, []).append(n)
                messages.append(message(n, speaker, kind, text, timestamp=timestamp, tool_call=tool_call))
                placed.append((messages[-1], items[position].seen))
                n += 1
            turns.append({"index": index, "messages": messages})
        for m, seen in placed:  # what the speaker had seen, as message ids (a skipped message has none)
            if seen is not None:
                m["visible_message_ids"] = sorted(i for p in seen for i in ids.get(p, ()))
        times = [row[5] for row in rows if row[5] is not None]
        return turns, list(agents.values()), times, skipped
