"""Field paths looked up in a source record, and the values found coerced to what their column wants.

Every lookup and type check names the path, the first missing key and the record, so the messages of a
rejected record read the same wherever a path is used.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

from coord_bench.sources.base import Reject, abbreviated
from coord_bench.sources.chatbot_arena import WINNERS
from coord_bench.sources.mapping.options import FieldPath


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _keys(obj: dict[str, Any]) -> str:
    """The keys of an object for a message, each cut to 40 characters (keys may be whole question texts)."""
    keys = [abbreviated(str(k), 40) for k in obj]
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
    """(matched, value, label of the path used, why not): the first alternative with a non-null value wins
    (a constant, or every path's value joined, when the option says so), then the option's transforms."""
    if fp.is_const:
        return True, transform(fp.const, fp, f"{fp.option} (constant)"), f"{fp.option} (constant)", ""
    if fp.join is not None:
        return _joined(container, fp, prefix, root)
    found, value, label, why = _first(container, fp, prefix, root)
    return found, (transform(value, fp, label) if found else value), label, why


def _joined(container: Any, fp: FieldPath, prefix: str, root: str) -> tuple[bool, Any, str, str]:
    parts, labels = [], []
    for alt in fp.alternatives:
        label = ".".join((prefix, *alt)) if prefix else ".".join(alt)
        found, value, why = _walk(container, alt, prefix, root)
        if not found:
            return False, None, label, why
        if value is None:
            return True, None, label, ""
        if isinstance(value, (dict, list, bool)):
            raise wrong_type(label, fp.option, root, "text or a number to join", value)
        parts.append(str(value))
        labels.append(label)
    label = " + ".join(labels)
    return True, transform(fp.join.join(parts), fp, label), label, ""


def transform(value: Any, fp: FieldPath, label: str) -> Any:
    """The option's regex group, value map and threshold applied to a found value (null stays null)."""
    if value is None:
        return None
    if fp.regex is not None:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise wrong_type(label, fp.option, "the record", "text for the regex", value)
        match = fp.regex.search(str(value))
        if match is None and fp.has_default:
            return fp.default
        if match is None:
            raise Reject(
                f"field '{label}' ({fp.option}): {_show(value)} does not match the regex {fp.regex.pattern!r}",
                field=label,
                kind="unknown_value",
            )
        value = match.group(fp.group)
        if value is None:
            return None
    if fp.value_map is not None:
        key = value if isinstance(value, str) else json.dumps(value)
        if key in fp.value_map:
            value = fp.value_map[key]
        elif fp.has_default:
            return fp.default
        else:
            raise Reject(
                f"field '{label}' ({fp.option}): {_show(value)} is not in the map (keys: "
                f"{', '.join(list(fp.value_map)[:12])}); add it or give a default",
                field=label,
                kind="unknown_value",
            )
    if fp.at_least is not None and value is not None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong_type(label, fp.option, "the record", f"a number to compare with {fp.at_least:g}", value)
        value = value >= fp.at_least
    return value


def _first(container: Any, fp: FieldPath, prefix: str, root: str) -> tuple[bool, Any, str, str]:
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


def unix_seconds(value: Any, label: str, where: str, fp: FieldPath | None = None) -> float | None:
    """A timestamp as Unix seconds: a number, a number as text, an ISO-8601 text, a text in the option's
    ``time_format``, or a datetime; one without a zone is in the option's ``time_zone`` (default UTC)."""
    if value is None:
        return None
    zone = fp.time_zone if fp is not None else dt.timezone.utc
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    moment = value if isinstance(value, dt.datetime) else None  # Parquet timestamp columns
    if isinstance(value, str) and fp is not None and fp.time_format is not None:
        try:
            moment = dt.datetime.strptime(value.strip(), fp.time_format)
        except ValueError:
            raise wrong_type(label, "timestamp", where, f"a date-time like {fp.time_format!r}", value) from None
    elif isinstance(value, str):
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
        moment = moment.replace(tzinfo=zone)
    return moment.timestamp()
