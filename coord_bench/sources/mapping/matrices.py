"""Round-by-agent matrices (``contexts[agent][message]``, the layout of multi-agent debate code) as messages.

Row i is agent i's chat: the prompts it was shown (any role but ``own_role``) alternating with its own answers.
The r-th answer of a row is that agent's message in round r (turn r); the agents speak in row order. An answer
given after a prompt saw the other agents' answers of the previous round (``seen``); the first round saw none
of theirs. The prompts themselves are not messages: what they showed is in ``seen``, and their templates are
the recipe's to map (``task.instruction``, say).
"""

from __future__ import annotations

from typing import Any

from coord_bench.sources.base import Reject
from coord_bench.sources.mapping.items import Item
from coord_bench.sources.mapping.options import MappingOptions
from coord_bench.sources.mapping.paths import get_path, wrong_type


def matrix_items(conversation: dict[str, Any], o: MappingOptions, where: str) -> list[Item]:
    rows, label = get_path(conversation, o.matrix, where)
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise wrong_type(label, "matrix", where, "a list holding one list of messages per agent", rows)
    names = o.speaker.by_position if o.speaker else ()
    if names and len(names) < len(rows):
        raise Reject(
            f"mapping.speaker.by_position names {len(names)} agents, but {label} in {where} holds {len(rows)} "
            "(one list per agent); name every agent",
            field=label,
            kind="wrong_type",
        )
    answers: list[list[tuple[Item, bool]]] = []  # per agent: (its answer, whether a prompt came before it)
    for i, row in enumerate(rows):
        speaker, shown, answers_i = names[i] if names else f"agent_{i}", False, []
        for p, msg in enumerate(row):
            prefix = f"{label}.{i}.{p}"
            if not isinstance(msg, dict):
                raise wrong_type(prefix, "matrix", where, "an object (one message)", msg)
            if get_path(msg, o.role, where, prefix)[0] == o.own_role:
                answers_i.append((Item(msg, prefix, where, len(answers_i), speaker), shown))
                shown = False
            else:
                shown = True
        answers.append(answers_i)
    at: dict[tuple[int, int], int] = {}  # (agent, round) -> position in the items
    for r in range(max(map(len, answers), default=0)):
        for i, answers_i in enumerate(answers):
            if r < len(answers_i):
                at[i, r] = len(at)
    items = []
    for i, r in at:  # in position order
        item, shown = answers[i][r]
        seen = tuple(at[j, r - 1] for j in range(len(answers)) if j != i and (j, r - 1) in at) if r and shown else ()
        items.append(item._replace(seen=seen))
    return items
