"""One source message on its way into the unified record: what the assembly of turns consumes.

Every shape of conversation (a list of messages, turns of messages, per-agent histories, a round-by-agent
matrix, the events of the flat layout) is first turned into these items, in the order the messages were said.
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Item(NamedTuple):
    msg: Any  # the source message (an object)
    prefix: str  # its path, for messages ("messages.3"); "" for an event
    where: str  # the record it is in, for messages ("record runs.jsonl#0")
    turn: Any = None  # its turn in the source (a turn's position, a round), or None
    speaker: str | None = None  # the speaker, when the structure gives it (a history's key, a matrix row)
    seen: tuple[int, ...] | None = None  # positions, in the item list, of the messages its speaker had seen
