"""Plain-text logs (``format: text``): a file of lines, one conversation (or several), read by a line regex.

A line the regex matches starts a message whose fields are the regex's named groups; a line it does not
match continues the message before it (its ``text`` gains a line). The file, or each part of it that
starts with a line the ``separator`` regex matches, becomes one record of the grouped layout,
``{"messages": [{group: value, ...}, ...]}``, so every other option (paths, transforms, skip, task,
outcome, extras) reads it exactly like a JSON record. Lines before the first message are kept
in the record as ``preamble`` (unmapped, so in extras unless a path maps it), never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from coord_bench.sources.readers import ReadFailure

_BOM = "\ufeff"


def iter_text_log(path: Path, line: re.Pattern, separator: re.Pattern | None = None) -> Iterator[tuple[int, Any]]:
    """Yield ``(index, record)`` per conversation of the file, or ``(index, ReadFailure)`` for one without a
    message; a line that is not UTF-8 ends the file with a failure naming it. Without ``separator`` the file
    is one conversation; with it, a line it matches starts the next one (and is read like any other line)."""
    current, index, number = _Conversation(1), 0, 0
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                reason = f"line {number} of {path.name} is not UTF-8 text: {err.reason} (byte {raw[err.start]:#04x})"
                yield index, ReadFailure(reason)
                return
            if number == 1:
                text = text.removeprefix(_BOM)
            if separator is not None and separator.match(text) and number > current.first:
                yield index, current.record(path, line, number - 1, separator)
                current, index = _Conversation(number), index + 1
            current.add(text, line.match(text))
    if number >= current.first or index == 0:  # the last conversation, or the failure of an empty file
        yield index, current.record(path, line, number, separator)


class _Conversation:
    """The lines of one conversation as they are read: its messages, the lines before the first, and the
    lines of the message being read."""

    def __init__(self, first: int):
        self.first = first  # its first line number
        self.messages: list[dict[str, Any]] = []
        self.preamble: list[str] = []
        self.body: list[str] = []

    def add(self, text: str, match: re.Match | None) -> None:
        if match is None:
            (self.body if self.messages else self.preamble).append(text)
            return
        if self.messages:
            self.messages[-1]["text"] = _joined(self.body)
        self.messages.append(match.groupdict())
        self.body = [match.group("text") or ""]

    def record(self, path: Path, line: re.Pattern, last: int, separator: re.Pattern | None) -> Any:
        if not self.messages:
            lines = f"lines {self.first}-{last}" if separator is not None else f"the {last} lines"
            return ReadFailure(f"none of {lines} of {path.name} matches mapping.line {line.pattern!r}",
                               field="line", kind="no_messages")  # fmt: skip
        self.messages[-1]["text"] = _joined(self.body)
        record: dict[str, Any] = {"messages": self.messages}
        if _joined(self.preamble):
            record["preamble"] = _joined(self.preamble)
        return record


def _joined(lines: list[str]) -> str:
    """A message's lines as one text, without the blank lines around it (logs separate entries by them)."""
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return "\n".join(lines[start:end])
