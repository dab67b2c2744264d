"""Which source fields the paths map, as a tree, and the unmapped rest of a record that goes to ``extras``.

Kept apart from the lookups: it reads the options only to learn which fields are mapped, never a value.
A tree is nested keys ending in ``True`` (the field is mapped whole); ``*`` stands for every item of a list,
or every value of an object (the histories keyed by agent name).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from coord_bench.sources.mapping.options import MappingOptions


def mapped_tree(options: MappingOptions) -> dict[str, Any]:
    """The tree of every field the options map, message paths placed under the messages they are relative to."""
    o = options
    tree: dict[str, Any] = {}
    conversation_paths = [o.conversation_id, o.group_by, o.descriptions]
    conversation_paths += [*o.task.values(), *o.outcome.values(), *o.protocol.values()]
    message_paths = [o.speaker, o.text, o.role, o.kind, o.model, o.timestamp, o.turn_index, o.tool_call_id]
    message_paths += [fp for fp, _ in o.skip]
    if o.layout == "flat":
        prefix: tuple[str, ...] = ()
    elif o.histories is not None or o.matrix is not None:  # {agent: [messages]} or [[messages] per agent]
        prefix = (*(o.histories or o.matrix).alternatives[0], "*", "*")
    elif o.turns is not None:
        prefix = (*o.turns.alternatives[0], "*", *o.messages.alternatives[0], "*")
    else:
        prefix = (*o.messages.alternatives[0], "*")
    for fp in conversation_paths:
        for alt in fp.alternatives if fp else ():
            _insert(tree, alt)
    for fp in message_paths:
        for alt in fp.alternatives if fp else ():
            _insert(tree, (*prefix, *alt))
    for fp in o.tool_call.values() if o.tool_calls else ():  # relative to each call of a message
        for alt in fp.alternatives:
            _insert(tree, (*prefix, *o.tool_calls.alternatives[0], "*", *alt))
    return tree


def unmapped_fields(value: dict[str, Any], tree: dict[str, Any], layout: str) -> dict[str, Any]:
    """The extras of a raw record: its unmapped fields (grouped layout), or the unmapped keys of its events (flat)."""
    if layout == "flat":
        keys = {key for event in value["events"] for key in _unmapped_keys(event, tree)}
        return {"unmapped_event_keys": sorted(keys)} if keys else {}
    rest = _prune(value, tree)
    return {} if rest is _GONE else rest


def _insert(tree: dict[str, Any], segments: tuple[str, ...]) -> None:
    node = tree
    for seg in segments[:-1]:
        child = node.setdefault(seg, {})
        if child is True:
            return
        node = child
    node[segments[-1]] = True


def _merge(*trees: Any) -> Any:
    trees = tuple(t for t in trees if t is not None)
    if not trees:
        return None
    if any(t is True for t in trees):
        return True
    out: dict[str, Any] = {}
    for tree in trees:
        for key, sub in tree.items():
            out[key] = _merge(out.get(key), sub)
    return out


_GONE = object()


def _prune(value: Any, tree: Any) -> Any:
    """``value`` without the parts the paths in ``tree`` map; ``_GONE`` when nothing is left."""
    if tree is True:
        return _GONE
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            sub = _merge(tree.get(key), tree.get("*"))
            kept = item if sub is None else _prune(item, sub)
            if kept is not _GONE:
                out[key] = kept
        return out or _GONE
    if isinstance(value, list):
        items = []
        for i, item in enumerate(value):
            sub = _merge(tree.get("*"), tree.get(str(i)), tree.get(str(i - len(value))))
            items.append(item if sub is None else _prune(item, sub))
        if all(item is _GONE for item in items):
            return _GONE
        return [None if item is _GONE else item for item in items]
    return value


def _unmapped_keys(event: dict[str, Any], tree: Any, prefix: str = "") -> Iterator[str]:
    for key, item in event.items():
        sub = tree.get(key)
        if sub is None:
            yield f"{prefix}{key}"
        elif sub is not True and isinstance(item, dict):
            yield from _unmapped_keys(item, sub, f"{prefix}{key}.")
