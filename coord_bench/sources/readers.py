"""Streaming readers for the raw file formats the sources use: JSON arrays, JSONL (optionally gzipped), Parquet.

Each reader yields ``(index, value)`` for good records and ``(index, ReadFailure)`` for a record it could
not parse, so that a bad line becomes a reject with a reason instead of ending the build. Memory stays
bounded by one element of a JSON array: a DEBATE config file (100 rows of up to 4 MB) is never held whole.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ReadFailure:
    """A record that could not be parsed; ``reason`` says where and why."""

    reason: str


def _skip_ws(buf: str, pos: int) -> int:
    while pos < len(buf) and buf[pos] in " \t\r\n":
        pos += 1
    return pos


def iter_json(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield the elements of a top-level JSON array one at a time, or a lone top-level object as element 0.

    Uses ``json.JSONDecoder.raw_decode`` on a sliding buffer: an element is parsed once it is complete,
    then dropped from the buffer. A lone top-level object (older MALLM output, or a mapping source's
    ``{"conversations": [...]}``) is one value and is read whole.
    """
    index = 0
    try:
        for index, value in _iter_json(path):
            yield index, value
    except UnicodeDecodeError as err:
        yield index, ReadFailure(f"{path.name} is not UTF-8 text: {err.reason} at byte {err.start}")


def _iter_json(path: Path) -> Iterator[tuple[int, Any]]:
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8") as handle:
        buf = handle.read(_CHUNK)
        pos = _skip_ws(buf, 0)
        if pos >= len(buf):
            yield 0, ReadFailure("the file is empty; expected a JSON array or object")
            return
        if buf[pos] == "{":
            try:
                yield 0, json.loads(buf + handle.read())
            except json.JSONDecodeError as err:
                yield 0, ReadFailure(f"invalid JSON object: {err.msg} at line {err.lineno} column {err.colno}")
            return
        if buf[pos] != "[":
            yield 0, ReadFailure(f"expected a JSON array or object, found {buf[pos]!r} at the start")
            return
        pos += 1
        index, eof, offset = 0, False, 0  # offset = characters of the file dropped before buf
        expect_comma = False
        while True:
            pos = _skip_ws(buf, pos)
            if pos < len(buf) and buf[pos] == "]":
                rest = (buf[pos + 1:] + handle.read()).strip()
                if rest:
                    yield index, ReadFailure(f"unexpected content after the JSON array's closing ']': {rest[:40]!r}")
                return
            if expect_comma:
                if pos < len(buf) and buf[pos] == ",":
                    pos, expect_comma = _skip_ws(buf, pos + 1), False
                elif pos < len(buf) or eof:
                    found = repr(buf[pos]) if pos < len(buf) else "the end of the file"
                    yield (
                        index,
                        ReadFailure(
                            f"the JSON array breaks off after element {index - 1}: expected ',' or ']' "
                            f"at character {offset + pos}, found {found}"
                        ),
                    )
                    return
            try:
                value, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as err:
                if eof:
                    yield (
                        index,
                        ReadFailure(
                            f"element {index} of the JSON array is truncated or invalid: {err.msg} "
                            f"at character {offset + err.pos}"
                        ),
                    )
                    return
                more = handle.read(max(_CHUNK, len(buf)))
                eof = not more
                buf, offset, pos = buf[pos:] + more, offset + pos, 0
                continue
            yield index, value
            index, pos, expect_comma = index + 1, end, True
            if pos > _CHUNK:
                buf, offset, pos = buf[pos:], offset + pos, 0


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield the objects of a JSONL file (gzipped when it ends in .gz), one line at a time; blank lines are skipped."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        index = 0
        try:
            for line_no, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    yield index, json.loads(line)
                except json.JSONDecodeError as err:
                    yield index, ReadFailure(f"line {line_no} is not valid JSON: {err.msg} at column {err.colno}")
                index += 1
        except (EOFError, OSError, zlib.error, UnicodeDecodeError) as err:  # BadGzipFile is an OSError
            yield index, ReadFailure(f"the file is cut off or corrupt after {index} records: {err}")


def iter_parquet(path: Path, batch_size: int = 256) -> Iterator[tuple[int, Any]]:
    """Yield the rows of a Parquet file as dicts, one record batch in memory at a time."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several unrelated types for a bad file
        yield 0, ReadFailure(f"not a readable Parquet file: {err}")
        return
    index = 0
    for batch in parquet.iter_batches(batch_size=batch_size):
        for row in batch.to_pylist():
            yield index, row
            index += 1


def iter_records(path: Path) -> Iterator[tuple[int, Any]]:
    """Dispatch on the file name: .json, .jsonl, .jsonl.gz, .json.gz (JSONL) or .parquet."""
    name = path.name
    if name.endswith(".parquet"):
        return iter_parquet(path)
    if name.endswith((".jsonl", ".jsonl.gz", ".json.gz", ".ndjson")):
        return iter_jsonl(path)
    if name.endswith(".json"):
        return iter_json(path)
    raise ValueError(f"{path}: unsupported file type; expected .json, .jsonl, .jsonl.gz or .parquet")
