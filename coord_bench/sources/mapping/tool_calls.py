"""Tool calls in a message (OpenAI ``tool_calls``) and the tool results that answer them (``tool_call_id``).

Each call becomes its own unified message of kind ``tool_call`` whose ``tool_call`` holds the call id, the
function name and its arguments as JSON text (Arrow needs one type, and arguments are any JSON); its text is
``name(arguments)``, so the caller's tokens count what it asked. A message answering a call is kind
``tool_result``, its ``tool_call`` naming the call it answers (the name from the call, when the conversation
made it earlier; null otherwise, e.g. in a truncated log).
"""

from __future__ import annotations

import json
from typing import Any

from coord_bench.sources.mapping.options import MappingOptions
from coord_bench.sources.mapping.paths import get_path, identifier, try_path, wrong_type


def calls_in(msg: dict[str, Any], o: MappingOptions, prefix: str, root: str, where: str) -> list[dict[str, Any]]:
    """The message's calls as ``{call_id, name, arguments}``; none when it has no ``tool_calls`` (or null)."""
    if o.tool_calls is None:
        return []
    found, calls, label, _ = try_path(msg, o.tool_calls, prefix, root)
    if not found or calls is None:
        return []
    if not isinstance(calls, list):
        raise wrong_type(label, "tool_calls", where, "a list of calls", calls)
    out = []
    for i, call in enumerate(calls):
        at = f"{label}.{i}"
        if not isinstance(call, dict):
            raise wrong_type(at, "tool_calls", where, "an object (one call)", call)
        name, name_label = get_path(call, o.tool_call["name"], where, at)
        call_id, id_label = get_path(call, o.tool_call["call_id"], where, at)
        arguments, args_label = get_path(call, o.tool_call["arguments"], where, at)
        if isinstance(arguments, (dict, list)):
            arguments = json.dumps(arguments, ensure_ascii=False)
        elif arguments is not None and not isinstance(arguments, str):
            raise wrong_type(args_label, "tool_call.arguments", where, "JSON text or an object", arguments)
        out.append({
            "call_id": None if call_id is None else identifier(call_id, id_label, "tool_call.call_id", where),
            "name": identifier(name, name_label, "tool_call.name", where),
            "arguments": arguments,
        })  # fmt: skip
    return out


def answered_call(msg: dict[str, Any], o: MappingOptions, prefix: str, root: str, where: str) -> str | None:
    """The id of the call a tool result answers; None when the message is not one."""
    if o.tool_call_id is None:
        return None
    found, value, label, _ = try_path(msg, o.tool_call_id, prefix, root)
    return identifier(value, label, "tool_call_id", where) if found and value is not None else None


def call_text(call: dict[str, Any]) -> str:
    return f"{call['name']}({call['arguments'] or ''})"
