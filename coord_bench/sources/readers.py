"""Streaming readers for the raw file formats the sources use: JSON arrays, JSONL (optionally gzipped), Parquet.

Each reader yields ``(index, value)`` for good records and ``(index, ReadFailure)`` for a record it could
not parse, so that a bad line becomes a reject with a reason instead of ending the build. Memory stays
bounded by one element of a JSON array: a DEBATE config file (100 rows of up to 4 MB) is never held whole.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ReadFailure:
    """A record that could not be read; ``reason`` says where and why, ``field`` names the bad value if one."""

    reason: str
    field: str | None = None
    kind: str = "unreadable"


_BOM = b"\xef\xbb\xbf"
_WS = b" \t\r\n"
_OUTSIDE_STRING = re.compile(rb'["\[\]{}]')  # the bytes that open or close something outside a string
_INSIDE_STRING = re.compile(rb'["\\]')
_SCALAR_END = re.compile(rb"[,\]\s]")


def _not_finite(literal: str) -> float:
    raise _NonFinite(literal)


def _finite_float(literal: str) -> float:
    """A JSON number too large for a float (``1e999``) would read as infinity: refused like the literals."""
    value = float(literal)
    if not math.isfinite(value):
        raise _NonFinite(literal)
    return value


class _NonFinite(ValueError):
    """Python's json reads NaN and Infinity, which JSON does not have; they are refused per record."""


def _decode(data: bytes, where: str) -> Any:
    """One record's bytes -> its value, or a ReadFailure naming the record and what is wrong with it."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        return ReadFailure(f"{where} is not UTF-8 text: {err.reason} (byte {data[err.start]:#04x}) at byte "
                           f"{err.start} of the record")
    try:
        value = json.loads(text, parse_constant=_not_finite, parse_float=_finite_float)
    except json.JSONDecodeError as err:
        return ReadFailure(f"{where} is not valid JSON: {err.msg.removesuffix(' at')} at column {err.colno}")
    except RecursionError:
        return ReadFailure(f"{where} is nested too deeply to read (more than about {sys.getrecursionlimit()} "
                           "levels of arrays or objects)", kind="too_deep")
    except _NonFinite as err:
        bad = _non_finite_path(text)
        return ReadFailure(f"{where} holds {err} in '{bad}', which is not a finite number (NaN, Infinity or past "
                           "the float range); non-finite numbers are refused", kind="non_finite_number", field=bad)
    return value


def _non_finite_path(text: str) -> str | None:
    """The field path of the first NaN/Infinity in a record (read again with the literals allowed)."""
    try:
        return first_non_finite(json.loads(text))
    except (ValueError, RecursionError):
        return None


def first_non_finite(value: Any) -> str | None:
    """The path (``a.b[2]``) of the first NaN or infinite float in ``value``, or None if there is none."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, float) and not math.isfinite(node):
            return path or None
        if isinstance(node, dict):
            stack += [(f"{path}.{k}" if path else str(k), v) for k, v in reversed(node.items())]
        elif isinstance(node, list):
            stack += [(f"{path}[{i}]", v) for i, v in reversed(list(enumerate(node)))]
    return None


def iter_json(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield the elements of a top-level JSON array one at a time, or a lone top-level object as element 0.

    Works on bytes: each element's extent is found by its brackets and quotes (without recursion, so any
    depth is fine), then the element alone is decoded and parsed. A bad byte, a NUL or a too-deep value
    thus costs exactly its own element, and reading goes on at the next one. A leading UTF-8 BOM is skipped.
    A lone top-level object (older MALLM output, or a mapping source's ``{"conversations": [...]}``) is one
    value. An empty file or ``[]`` yields nothing.
    """
    with open(path, "rb") as handle:
        reader = _Bytes(handle)
        pos = reader.skip_ws(len(_BOM) if reader.buf.startswith(_BOM) else 0)
        if reader.at_end(pos):
            return
        first = reader.buf[pos:pos + 1]
        if first == b"{":
            end = reader.value_end(pos)
            if end is None:
                yield 0, ReadFailure(f"the JSON object of {path.name} is truncated: the file ends inside it")
                return
            data, pos = reader.take(pos, end)
            yield 0, _decode(data, f"the JSON object of {path.name}")
            if not reader.at_end(reader.skip_ws(pos)):
                yield 1, ReadFailure(f"unexpected content after the JSON object: {reader.preview(pos)!r}")
            return
        if first != b"[":
            yield 0, ReadFailure(f"expected a JSON array or object, found {first.decode('latin-1')!r} at the start")
            return
        index, pos = 0, pos + 1
        while True:
            pos = reader.skip_ws(pos)
            if reader.buf[pos:pos + 1] == b"]":
                if not reader.at_end(reader.skip_ws(pos + 1)):
                    yield index, ReadFailure(
                        f"unexpected content after the JSON array's closing ']': {reader.preview(pos + 1)!r}")
                return
            if index:
                if reader.buf[pos:pos + 1] != b",":
                    found = "the end of the file" if reader.at_end(pos) else repr(reader.preview(pos, 1))
                    yield index, ReadFailure(
                        f"the JSON array breaks off after element {index - 1}: expected ',' or ']' "
                        f"at byte {reader.offset + pos}, found {found}")
                    return
                pos = reader.skip_ws(pos + 1)
            start = reader.offset + pos
            end = reader.value_end(pos)
            if end is None:
                yield index, ReadFailure(f"element {index} of the JSON array is truncated or invalid: the file "
                                         f"ends inside it (it starts at byte {start})")
                return
            data, pos = reader.take(pos, end)
            yield index, _decode(data, f"element {index} of the JSON array (at byte {start})")
            index += 1


class _Bytes:
    """A sliding window over a binary file: ``buf`` holds the bytes from file offset ``offset`` on."""

    def __init__(self, handle):
        self.handle, self.offset, self.eof = handle, 0, False
        self.buf = handle.read(_CHUNK)
        self.eof = not self.buf

    def _more(self) -> bool:
        if self.eof:
            return False
        more = self.handle.read(max(_CHUNK, len(self.buf)))
        self.eof = not more
        self.buf += more
        return bool(more)

    def skip_ws(self, pos: int) -> int:
        while True:
            while pos < len(self.buf) and self.buf[pos] in _WS:
                pos += 1
            if pos < len(self.buf) or not self._more():
                return pos

    def at_end(self, pos: int) -> bool:
        return pos >= len(self.buf) and not self._more()

    def preview(self, pos: int, size: int = 40) -> str:
        while len(self.buf) < pos + size and self._more():
            pass
        return self.buf[pos:pos + size].decode("utf-8", "replace").strip()

    def take(self, start: int, end: int) -> tuple[bytes, int]:
        """The bytes of one value, dropping what lies before it from the window; the new position of ``end``."""
        data = self.buf[start:end]
        self.buf, self.offset = self.buf[end:], self.offset + end
        return data, 0

    def value_end(self, pos: int) -> int | None:
        """Where the JSON value starting at ``pos`` ends, by its brackets and quotes; None if the file ends first."""
        depth, in_string = 0, False
        scalar = self.buf[pos:pos + 1] not in (b"{", b"[", b'"')
        while True:
            if scalar:
                match = _SCALAR_END.search(self.buf, pos)
                if match:
                    return match.start()
            elif in_string:
                match = _INSIDE_STRING.search(self.buf, pos)
                if match and match.group() == b"\\":
                    if match.end() < len(self.buf):
                        pos = match.end() + 1
                        continue
                    match = None  # the escaped byte is in the next chunk
                elif match:
                    pos, in_string = match.end(), False
                    if depth == 0:
                        return pos
                    continue
            else:
                match = _OUTSIDE_STRING.search(self.buf, pos)
                if match:
                    pos, byte = match.end(), match.group()
                    if byte == b'"':
                        in_string = True
                    elif byte in (b"[", b"{"):
                        depth += 1
                    else:
                        depth -= 1
                        if depth <= 0:
                            return pos
                    continue
            if not match:
                pos = len(self.buf) - (1 if in_string and self.buf.endswith(b"\\") else 0)
                if not self._more():
                    return len(self.buf) if scalar else None


def iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield the records of a JSONL file (gzipped when it ends in .gz), one line at a time.

    Each line is decoded on its own, so a bad byte costs exactly its line; blank lines are skipped, a leading
    UTF-8 BOM is ignored. A file cut off or corrupt inside its compression ends with one failure."""
    opener = gzip.open if path.suffix == ".gz" else open
    index = 0
    try:
        with opener(path, "rb") as handle:
            for line_no, line in enumerate(handle, start=1):
                if line_no == 1 and line.startswith(_BOM):
                    line = line[len(_BOM):]
                if not line.strip():
                    continue
                yield index, _decode(line, f"line {line_no}")
                index += 1
    except (EOFError, OSError, zlib.error) as err:  # BadGzipFile is an OSError
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
            bad = first_non_finite(row)
            yield index, row if bad is None else ReadFailure(
                f"row {index} holds a NaN or infinite number in '{bad}'; non-finite numbers are refused",
                field=bad,
                kind="non_finite_number",
            )
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
