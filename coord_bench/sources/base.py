"""The adapter contract: a source adapter turns each raw record into a unified record, or raises ``Reject``.

An adapter declares, as data, what happens to every field of its source: ``FIELD_MAP`` (field -> the
column it fills) and ``DROPPED`` (field -> why it has no column). Any other field goes to the record's
``extras`` JSON, so nothing in the source is silently lost.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from coord_bench import __version__
from coord_bench.schema import load_schema, schema_version
from coord_bench.sources.readers import ReadFailure, iter_records
from coord_bench.splits import assign_split, group_hash


class Reject(Exception):
    """A raw record that cannot become a unified record. ``field`` names the offending source field;
    ``failures`` lists every field failure when an adapter collects them (``reason`` joins them)."""

    def __init__(
        self, reason: str, field: str | None = None, kind: str = "invalid", failures: list[dict[str, Any]] | None = None
    ):
        super().__init__(reason)
        self.reason = reason
        self.field = field
        self.kind = kind
        self.failures = failures


@dataclass(frozen=True)
class RawRecord:
    """One record as read from a source file, with where it came from."""

    file: str  # path relative to the source root
    index: int  # position in the file
    value: Any  # the parsed JSON value, or a ReadFailure

    @property
    def locator(self) -> str:
        return f"{self.file}#{self.index}"


@dataclass
class SourceSpec:
    """What to read: a named source instance, its adapter, and where its files are."""

    name: str
    adapter: str
    root: Path
    dataset: str  # Hub repo id or the path it was read from, for provenance
    revision: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def blank(section: str) -> dict[str, Any]:
    """An all-null instance of one object section of the record schema (lists start empty)."""
    props = load_schema()["properties"][section]["properties"]
    return {name: [] if node.get("type") == "array" else None for name, node in props.items()}


def message(message_id: int, agent_id: str, kind: str, text: str, **fields: Any) -> dict[str, Any]:
    """A unified message; fields not given are null."""
    out = {
        "message_id": message_id,
        "agent_id": agent_id,
        "kind": kind,
        "text": text,
        "n_chars": len(text),
        "n_tokens": None,
        "timestamp": None,
        "agreement": None,
        "solution": None,
        "visible_message_ids": None,
        "tool_call": None,
    }
    out.update(fields)
    return out


def agent(
    agent_id: str,
    name: str,
    role: str,
    model: str | None = None,
    description: str | None = None,
    in_source_roster: bool = True,
) -> dict[str, Any]:
    return {
        "agent_id": agent_id,
        "name": name,
        "role": role,
        "model": model,
        "description": description,
        "in_source_roster": in_source_roster,
    }


def require(
    raw: dict[str, Any], key: str, kinds: type | tuple[type, ...], *, nullable: bool = False, where: str = ""
) -> Any:
    """Return ``raw[key]`` if it has one of ``kinds``; otherwise reject naming the field and what was found."""
    label = f"{where}{key}"
    if key not in raw:
        raise Reject(f"missing required field '{label}'", field=label, kind="missing_field")
    value = raw[key]
    if value is None and nullable:
        return None
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        ok = False  # bool is an int subclass; never accept it where a number is expected
    else:
        ok = isinstance(value, kinds)
    if not ok:
        names = " or ".join(k.__name__ for k in (kinds if isinstance(kinds, tuple) else (kinds,)))
        raise Reject(
            f"field '{label}': expected {names}, found {type(value).__name__} {_preview(value)}",
            field=label,
            kind="wrong_type",
        )
    return value


def check_item(value: Any, label: str, kinds: type | tuple[type, ...], expected: str) -> Any:
    """Reject a list element of the wrong type, naming it by its path (``personas[2]``)."""
    if not isinstance(value, kinds):
        raise Reject(
            f"field '{label}': expected {expected}, found {type(value).__name__}", field=label, kind="wrong_type"
        )
    return value


def optional(raw: dict[str, Any], key: str, kinds: type | tuple[type, ...], *, where: str = "") -> Any:
    """Like ``require``, but an absent or null field is None (older source versions lack some fields)."""
    return require(raw, key, kinds, nullable=True, where=where) if key in raw else None


@contextmanager
def reading(label: str) -> Iterator[None]:
    """Turn an error no check foresaw while reading field ``label`` into a reject that names the field."""
    try:
        yield
    except Reject:
        raise
    except Exception as err:
        raise Reject(
            f"field '{label}' has a shape this adapter cannot read: {type(err).__name__}: {err}",
            field=label,
            kind="adapter_error",
        ) from None


def abbreviated(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters, ending in '...': ids and keys may be whole question texts."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _preview(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def content_hash(record: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the record's content, without split, annotations and provenance."""
    skip = {"split", "split_group", "annotations", "provenance", "source_locator"}
    content = {k: v for k, v in record.items() if k not in skip}
    return hashlib.sha256(json.dumps(content, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class SourceAdapter(ABC):
    """Base of every source adapter. Subclasses set the class attributes and implement ``convert``."""

    name: ClassVar[str]
    hub_repo_id: ClassVar[str | None] = None
    license: ClassVar[str]
    interaction: ClassVar[str]
    file_patterns: ClassVar[tuple[str, ...]]  # globs under the source root, in the Hub layout
    hub_config_pattern: ClassVar[str | None] = None  # the files of one config on the Hub, with {config}
    FIELD_MAP: ClassVar[dict[str, str]]  # source field -> the column it fills
    KEPT_IN_EXTRAS: ClassVar[dict[str, str]] = {}  # source field -> what it is (documentation of extras)
    DROPPED: ClassVar[dict[str, str]] = {}  # source field -> why it has no column
    # What the dataset card says of a source: one line of what it is, its caveats, its split group key
    SUMMARY: ClassVar[str] = ""
    CAVEATS: ClassVar[tuple[str, ...]] = ()
    GROUP_KEY: ClassVar[str] = ""
    DUPLICATE_HINT: ClassVar[str] = ""  # appended to a duplicate id's reject: how a recipe can tell them apart
    TAGS: ClassVar[tuple[str, ...]] = ()  # Hub tags a card gets when a build holds this source
    MULTILINGUAL: ClassVar[bool] = False  # records in many languages (the card's `multilinguality`)

    def __init__(self, spec: SourceSpec):
        self.spec = spec
        self._values_per_file: dict[Path, int] = {}

    def read_values(self, path: Path, values: Iterator[tuple[int, Any]] | None = None) -> Iterator[tuple[int, Any]]:
        """The top-level values of a file (``iter_records``, or ``values`` read another way: a text log's
        conversations), counted per file, so that reading a file twice (the flat layout's passes) counts it once."""
        for index, value in iter_records(path) if values is None else values:
            self._values_per_file[path] = max(self._values_per_file.get(path, 0), index + 1)
            yield index, value

    @property
    def top_level_values(self) -> int:
        """The top-level values read from the files so far: JSONL lines, JSON array elements, Parquet rows, the
        conversations of a text log. A record need not be one: a value may hold a list of conversations, a flat
        log's value is one event."""
        return sum(self._values_per_file.values())

    def values_read(self) -> dict[str, int]:
        """The top-level values read per file (relative path), for an engine to send from where it read them."""
        return {path.relative_to(self.spec.root).as_posix(): n for path, n in self._values_per_file.items()}

    def count_values(self, counts: dict[str, int]) -> None:
        """Add ``values_read`` of the same files read elsewhere (a Ray worker) to this adapter's counts."""
        for relative, n in counts.items():
            path = self.spec.root / relative
            self._values_per_file[path] = max(self._values_per_file.get(path, 0), n)

    @property
    def reads_in_order(self) -> bool:
        """Whether a record depends on the records read before it in other files (so an engine must read the
        source's files in order, in one place, rather than a file at a time anywhere)."""
        return False

    def files(self) -> list[Path]:
        """The source's data files under its root, in a stable order."""
        root = self.spec.root
        found = sorted({p for pattern in self.file_patterns for p in root.glob(pattern) if p.is_file()})
        if not found:
            patterns = ", ".join(self.file_patterns)
            raise FileNotFoundError(
                f"source '{self.spec.name}': no data files under {root} (looked for {patterns}); "
                f"is this the {self.name} Hub layout?"
            )
        return found

    def iter_raw(self) -> Iterator[RawRecord]:
        for path in self.files():
            yield from self.raw_records(path)

    def raw_records(self, path: Path) -> Iterator[RawRecord]:
        """The raw records of one of ``files()``: a file is the unit an engine may read anywhere."""
        relative = path.relative_to(self.spec.root).as_posix()
        for index, value in self.read_values(path):
            yield RawRecord(relative, index, value)

    def normalize(self, raw: RawRecord) -> dict[str, Any]:
        """Turn a raw record into a complete unified record; raises ``Reject``."""
        if isinstance(raw.value, ReadFailure):
            raise Reject(raw.value.reason, field=raw.value.field, kind=raw.value.kind)
        if not isinstance(raw.value, dict):
            raise Reject(f"expected a JSON object, found {type(raw.value).__name__}", kind="wrong_type")
        body = self.convert(raw)
        record_id = f"{self.spec.name}:{body.pop('local_id')}"
        group_key = body.pop("group_key")
        group = group_hash(record_id if self.spec.options.get("split_group") == "record" else group_key)
        record: dict[str, Any] = {
            "id": record_id,
            "source": self.spec.name,
            "source_id": body.pop("source_id"),
            "source_config": body.pop("source_config", None),
            "source_locator": raw.locator,
            "split": assign_split(group, self.spec.options.get("split_ratios")),
            "split_group": group,
            "task": body.pop("task"),
            "protocol": {**blank("protocol"), "interaction": self.interaction, **body.pop("protocol", {})},
            "agents": body.pop("agents"),
            "turns": body.pop("turns"),
        }
        record["n_turns"] = len(record["turns"])
        record["n_messages"] = sum(len(turn["messages"]) for turn in record["turns"])
        record["n_agents"] = len(record["agents"])
        record["outcome"] = {**blank("outcome"), **body.pop("outcome", {})}
        record["timestamp"] = body.pop("timestamp", None)
        record["duration_seconds"] = body.pop("duration_seconds", None)
        record["safety"] = {**blank("safety"), **body.pop("safety", {})}
        record["annotations"] = blank("annotations")
        record["extras"] = json.dumps(self.extras(raw.value), sort_keys=True, ensure_ascii=False, default=str)
        if body:
            raise AssertionError(f"{type(self).__name__}.convert returned unknown keys {sorted(body)}")
        record["provenance"] = {
            "source_dataset": self.spec.dataset,
            "source_license": self.license,
            "source_revision": self.spec.revision,
            "source_file": raw.file,
            "content_hash": content_hash(record),
            "builder_version": __version__,
            "schema_version": schema_version(),
        }
        return record

    def extras(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Source fields that are neither mapped to a column nor on the documented drop list."""
        return {k: v for k, v in raw.items() if k not in self.FIELD_MAP and k not in self.DROPPED}

    @abstractmethod
    def convert(self, raw: RawRecord) -> dict[str, Any]:
        """Return the record's parts: local_id (unique within the source), source_id, group_key, task,
        agents, turns, and optionally source_config, protocol, outcome, timestamp, duration_seconds, safety.
        Raise ``Reject`` on bad input."""
