"""The unified record layout: one JSON Schema in ``schemas/``, and the ``datasets.Features`` derived from it.

The JSON Schema is the single source of truth. ``features()`` converts it property by property, so the
Parquet columns, the card's ``dataset_info`` and the validator can never drift apart.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

import datasets
from jsonschema import Draft202012Validator

from coord_bench.resources import resource_path

SCHEMAS_DIR = resource_path("schemas")
RECORD_SCHEMA_FILE = "coord_bench.schema.json"

_SCALARS = {"string": "string", "integer": "int64", "number": "float64", "boolean": "bool"}


@functools.cache
def load_schema(name: str = RECORD_SCHEMA_FILE) -> dict[str, Any]:
    """Read a JSON Schema shipped in ``schemas/``."""
    return json.loads((SCHEMAS_DIR / name).read_text(encoding="utf-8"))


def schema_version() -> str:
    return load_schema()["x-schema-version"]


WINNERS: tuple[str, ...] = tuple(
    v for v in load_schema()["properties"]["outcome"]["properties"]["winner"]["enum"] if v is not None
)  # the arena vote, as the schema allows it
DECISIVE_WINNERS = tuple(w for w in WINNERS if not w.startswith("tie"))  # a vote for one model


def _non_null_type(node: dict[str, Any]) -> str:
    """The JSON type of a node with nulls allowed (``["string", "null"]`` -> ``"string"``)."""
    if "enum" in node:
        kinds = {type(v) for v in node["enum"] if v is not None}
        if kinds != {str}:
            raise ValueError(f"only string enums map to a column, got {node['enum']}")
        return "string"
    kind = node["type"]
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        if len(kinds) != 1:
            raise ValueError(f"a column needs exactly one non-null type, got {kind}")
        kind = kinds[0]
    return kind


def schema_to_feature(node: dict[str, Any]) -> Any:
    """Convert one JSON Schema node to the matching ``datasets`` feature."""
    kind = _non_null_type(node)
    if kind == "object":
        return {name: schema_to_feature(child) for name, child in node["properties"].items()}
    if kind == "array":
        return datasets.List(schema_to_feature(node["items"]))
    return datasets.Value(_SCALARS[kind])


@functools.cache
def features() -> datasets.Features:
    """The ``datasets.Features`` of a unified record, in the schema's property order."""
    return datasets.Features(schema_to_feature(load_schema()))


@functools.cache
def validator(name: str = RECORD_SCHEMA_FILE) -> Draft202012Validator:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def format_path(path: Any) -> str:
    """Render a jsonschema error path as ``turns[3].messages[0].text``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<record>"


def record_problems(record: dict[str, Any], name: str = RECORD_SCHEMA_FILE) -> Iterator[tuple[str, str]]:
    """Yield (field path, what was wrong) per schema violation, in field order."""
    for error in sorted(validator(name).iter_errors(record), key=lambda e: [str(p) for p in e.absolute_path]):
        yield format_path(error.absolute_path), error.message


def describe_error(error: Any) -> str:
    """One jsonschema error as a line: where, what was expected, what was found."""
    where = format_path(error.absolute_path) if error.absolute_path else "(top level)"
    found = json.dumps(error.instance, default=str)
    found = found if len(found) <= 80 else found[:77] + "..."
    if error.validator == "additionalProperties":
        allowed = ", ".join(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return f"{where}: unknown key(s) {', '.join(map(repr, extra))}; expected one of: {allowed}"
    if error.validator == "required":
        return f"{where}: {error.message}"
    if error.validator == "type":
        return f"{where}: expected {error.validator_value}, found {type(error.instance).__name__} {found}"
    if error.validator == "enum":
        return f"{where}: expected one of {error.validator_value}, found {found}"
    return f"{where}: {error.message}"


def record_errors(record: dict[str, Any], name: str = RECORD_SCHEMA_FILE) -> Iterator[str]:
    """Yield one readable message per schema violation: the field path, then what was wrong."""
    for path, problem in record_problems(record, name):
        yield f"{path}: {problem}"
