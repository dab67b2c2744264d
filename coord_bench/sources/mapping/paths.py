"""Field paths looked up in a source record, and the values found coerced to what their column wants.

Every lookup and type check names the path, the first missing key and the record, so the messages of a
rejected record read the same wherever a path is used.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

from coord_bench.sources.base import Reject
from coord_bench.sources.chatbot_arena import WINNERS
from coord_bench.sources.mapping.options import FieldPath


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


def try_path(container: Any, fp: FieldPath, prefix: str = "", root: str = "the record") -> tuple[bool, Any, str, str]:
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


def missing_field(fp: FieldPath, why: str, where: str, label: str) -> Reject:
    """The reject of a path that matches nothing, with why (``why`` from ``try_path``) and where."""
    hint = " (end the path with '?' if it may be absent)" if fp.may_be_optional else ""
    paths = "field path" if len(fp.alternatives) == 1 else "none of the field paths"
    return Reject(
        f"{paths} {fp.shown} ({fp.option}) matches nothing: {why} in {where}{hint}", field=label, kind="missing_field"
    )


def get_path(container: Any, fp: FieldPath, where: str, prefix: str = "", root: str = "the record") -> tuple[Any, str]:
    """(value, label of the path used); raises ``missing_field`` unless the path matches or is optional."""
    found, value, label, why = try_path(container, fp, prefix, root)
    if not found and not fp.optional:
        raise missing_field(fp, why, where, label)
    return value, label


def wrong_type(label: str, option: str, where: str, expected: str, value: Any) -> Reject:
    """The reject of a value found at ``label`` that is not what ``option`` expects."""
    found = "null" if value is None else f"{type(value).__name__} {_show(value)}"
    return Reject(
        f"field '{label}' ({option}) in {where}: expected {expected}, found {found}", field=label, kind="wrong_type"
    )


def identifier(value: Any, label: str, option: str, where: str) -> str:
    """An id (conversation, speaker) as text: non-empty text, or an integer."""
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise wrong_type(label, option, where, "non-empty text or an integer", value)


def coerce(value: Any, how: str, label: str, option: str, where: str) -> Any:
    """A mapped value as its column wants it; null stays null (references: an empty list)."""
    if how == "texts":
        items = [] if value is None else value if isinstance(value, list) else [value]
        return [coerce(item, "text", f"{label}.{i}", option, where) for i, item in enumerate(items)]
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
        raise wrong_type(label, option, where, "text (or a number, or a list of texts)", value)
    if how == "bool":
        if isinstance(value, bool):
            return value
        raise wrong_type(label, option, where, "true or false", value)
    if how == "number":
        if number:
            return float(value)
        raise wrong_type(label, option, where, "a number", value)
    if how == "int":
        if number and float(value).is_integer():
            return int(value)
        raise wrong_type(label, option, where, "an integer", value)
    if how == "winner":
        if value in WINNERS:
            return value
        raise Reject(
            f"field '{label}' ({option}) in {where}: expected one of {', '.join(WINNERS)}, found {_show(value)}",
            field=label,
            kind="unknown_value",
        )
    raise AssertionError(how)


def unix_seconds(value: Any, label: str, where: str) -> float | None:
    """A timestamp as Unix seconds: a number, a number as text, an ISO-8601 text or a datetime (naive: UTC)."""
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
        raise wrong_type(label, "timestamp", where, "Unix seconds or an ISO-8601 date-time", value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment.timestamp()
