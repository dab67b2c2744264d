"""Per-agent histories (``{agent name: [its own chat memory]}``) merged into the one conversation they record.

Each agent's history holds its own messages (role ``own_role``: the key is their speaker) and what it received
(other agents' words, or a moderator's). A received message with the text of another agent's own message is
that message, said once; received messages with the same text in several histories (a prompt sent to all)
are one message too (the k-th copy of a text in one history matches the k-th in another). The order: a
message said where it is (an own message, a prompt) comes after everything before it in that history (a copy
of another agent's message only after its own place), and among the messages this leaves free the round
comes first (the mapped ``turn_index``, else how many messages the agent had said before), then the
history's place in the object, then the place in the history. An own message's ``seen`` is everything before
it in its speaker's history: what that agent was shown.
"""

from __future__ import annotations

import heapq
from typing import Any

from coord_bench.sources.base import Reject
from coord_bench.sources.mapping.items import Item
from coord_bench.sources.mapping.options import MappingOptions
from coord_bench.sources.mapping.paths import get_path, identifier, wrong_type

DEFAULT_SPEAKER = "moderator"  # who said a received message that no agent said, when speaker is not mapped


def history_items(conversation: dict[str, Any], o: MappingOptions, where: str) -> list[Item]:
    histories, label = get_path(conversation, o.histories, where)
    if not isinstance(histories, dict) or not all(isinstance(h, list) for h in histories.values()):
        raise wrong_type(label, "histories", where, "an object {agent name: [its messages]}", histories)
    said: list[list[tuple[str, Item, tuple, Any]]] = []  # per history: (kind, item, (text, k-th copy), rank)
    own: set[tuple[str, str, int]] = set()
    for h, (name, history) in enumerate(histories.items()):
        identifier(name, f"{label} key", "histories", where)
        said.append([])
        counts: dict[tuple[bool, str], int] = {}
        n_own = 0
        for p, msg in enumerate(history):
            prefix = f"{label}.{name}.{p}"
            if not isinstance(msg, dict):
                raise wrong_type(prefix, "histories", where, "an object (one message)", msg)
            role, _ = get_path(msg, o.role, where, prefix)
            text, text_label = get_path(msg, o.text, where, prefix)
            if not isinstance(text, str):
                raise wrong_type(text_label, "text", where, "text", text)
            is_own = role == o.own_role
            k = counts.get((is_own, text), 0)
            counts[is_own, text] = k + 1
            turn = get_path(msg, o.turn_index, where, prefix)[0] if o.turn_index else n_own
            rank = turn if isinstance(turn, (int, float)) and not isinstance(turn, bool) else n_own
            item = Item(msg, prefix, where, n_own if o.turn_index is None else None, name if is_own else None)
            said[-1].append(("own" if is_own else "received", item, (text, k), (rank, h, p)))
            if is_own:
                own.add((name, text, k))
                n_own += 1
    names = list(histories)
    nodes: dict[tuple, dict[str, Any]] = {}
    sequences = []
    for h, entries in enumerate(said):
        sequence: list[tuple] = []
        since: list[tuple] = []  # the last message said here (own, or a prompt) and the copies received after it
        for kind, item, (text, k), rank in entries:
            speaker = (
                names[h] if kind == "own" else next((b for b in names if (b, text, k) in own and b != names[h]), None)
            )
            key = (speaker, text, k)
            node = nodes.setdefault(key, {"item": item, "rank": rank, "after": set(), "own_at": None})
            node["rank"] = min(node["rank"], rank)
            if kind == "own":
                node["item"], node["own_at"] = item, (h, len(sequence))
            if kind == "own" or speaker is None:  # said when it entered this history: after all before it
                node["after"].update(other for other in since if other != key)
                since = [key]
            else:  # another agent's message, said before it was received: its place is its speaker's
                since.append(key)
            sequence.append(key)
        sequences.append(sequence)
    order = _merge(nodes, label, where)
    position = {key: i for i, key in enumerate(order)}
    items = []
    for key in order:
        node = nodes[key]
        item = node["item"]
        if node["own_at"] is not None:
            h, at = node["own_at"]
            item = item._replace(seen=tuple(sorted({position[k] for k in sequences[h][:at]})))
        elif item.speaker is None and o.speaker is None:
            item = item._replace(speaker=DEFAULT_SPEAKER)
        items.append(item)
    return items


def _merge(nodes: dict[tuple, dict[str, Any]], label: str, where: str) -> list[tuple]:
    """The nodes in an order that keeps every history's order, earliest rank first (Kahn's algorithm)."""
    waiting = {key: set(node["after"]) for key, node in nodes.items()}
    followers: dict[tuple, list[tuple]] = {}
    for key, before in waiting.items():
        for other in before:
            followers.setdefault(other, []).append(key)
    ready = [(nodes[key]["rank"], key) for key, before in waiting.items() if not before]
    heapq.heapify(ready)
    order = []
    while ready:
        _, key = heapq.heappop(ready)
        order.append(key)
        for follower in followers.get(key, ()):
            waiting[follower].discard(key)
            if not waiting[follower]:
                heapq.heappush(ready, (nodes[follower]["rank"], follower))
    if len(order) < len(nodes):
        stuck = next(nodes[key]["item"] for key in nodes if waiting[key])
        raise Reject(
            f"the histories at {label} in {where} disagree on the order of their messages: {stuck.prefix} comes "
            "after a message that, in another history, comes after it (a message said once is matched by its "
            "text); check the histories or map a round index with turn_index",
            field=label,
            kind="inconsistent",
        )
    return order
