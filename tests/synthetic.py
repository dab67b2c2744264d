"""Schema-valid synthetic records with a planted (or no) signal, and build folders made of them.

The benchmark's honesty tests need corpora whose answer is known: debates whose first-turn vote share decides
correctness, arena votes that follow response length, and the same corpora with the labels shuffled. Records
start from a real normalized record of the embedded sample (so every column is as a build writes it) and
only the fields a task reads are replaced. ``write_build`` writes them as a finished build folder that
``coord-bench evaluate`` reads like any other.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
from pathlib import Path
from typing import Any

from coord_bench.build_folder import write_manifest
from coord_bench.locate import embedded_source
from coord_bench.schema import record_errors
from coord_bench.sources import adapter_class
from coord_bench.sources.base import message
from coord_bench.writer import ConfigWriters


@functools.cache
def _template(source: str) -> dict[str, Any]:
    spec = embedded_source(source)
    adapter = adapter_class(spec.adapter)(spec)
    for raw in adapter.iter_raw():
        try:
            return adapter.normalize(raw)
        except Exception:  # noqa: BLE001 - the sample has deliberately bad rows; take the first good one
            continue
    raise AssertionError(f"no good record in the embedded {source} sample")


def debate(
    index: int,
    split: str,
    turns: list[list[tuple[str, bool | None]]],
    correct: bool | None,
    decided: bool | None = True,
    reference: str = "A",
    group: str | None = None,
) -> dict[str, Any]:
    """A DEBATE record: ``turns[t]`` lists each agent's (solution, agreement) in turn ``t``."""
    record = copy.deepcopy(_template("debate"))
    agents = [a["agent_id"] for a in record["agents"]]
    record["turns"] = [
        {**copy.deepcopy(record["turns"][0]), "index": t, "messages": [
            message(t * len(agents) + i, agents[i % len(agents)], "improve", f"turn {t} agent {i}: I say {solution}.",
                    solution=solution, agreement=agreement)
            for i, (solution, agreement) in enumerate(turn)
        ]}
        for t, turn in enumerate(turns)
    ]  # fmt: skip
    record["n_turns"] = len(turns)
    record["n_messages"] = sum(len(t) for t in turns)
    record["task"]["references"] = [reference]
    final = turns[-1][-1][0]
    record["outcome"].update(decision_success=decided, final_answer=final, answer_correct=correct)
    return _identify(record, "debate", index, split, group)


def arena(index: int, split: str, winner: str, text_a: str, text_b: str, model_a: str = "m1", model_b: str = "m2",
          prompt: str = "Tell me something.", group: str | None = None) -> dict[str, Any]:  # fmt: skip
    """An arena record: one prompt, the two responses and the vote."""
    record = copy.deepcopy(_template("chatbot_arena"))
    for a in record["agents"]:
        a["model"] = {"model_a": model_a, "model_b": model_b}.get(a["agent_id"], a["model"])
    record["turns"] = [{**copy.deepcopy(record["turns"][0]), "index": 0, "messages": [
        message(0, "user", "prompt", prompt), message(1, "model_a", "response", text_a),
        message(2, "model_b", "response", text_b),
    ]}]  # fmt: skip
    record["n_turns"], record["n_messages"] = 1, 3
    record["outcome"]["winner"] = winner
    return _identify(record, "chatbot_arena", index, split, group)


def _identify(record: dict[str, Any], source: str, index: int, split: str, group: str | None) -> dict[str, Any]:
    record["id"] = f"{source}:synthetic-{index}"
    record["source_id"] = f"synthetic-{index}"
    record["split"] = split
    record["split_group"] = group or f"{index:016x}"  # the schema wants 16 hex digits
    record["annotations"] = {"token_usage": None, "latents": None, "coordination": None}
    errors = list(record_errors(record))
    assert not errors, errors[:3]
    return record


def write_build(folder: Path, records: list[dict[str, Any]], annotations: dict[str, Any] | None = None) -> Path:
    """A finished build folder of ``records``: one config per source and ``all``, and a manifest whose
    ``annotations`` (layer name -> {"params": ...}) say which layers the build ran (none by default)."""
    sources = sorted({r["source"] for r in records})
    configs = {"all": sources, **{s: [s] for s in sources}}
    writers = ConfigWriters(folder, configs, 1 << 30)
    for record in records:
        writers.add(record)
    counts = writers.close()
    normalized = len(records)
    manifest = {
        "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "default_config": "all",
        "recipe_hash": None,
        "annotations": annotations or {},
        "totals": {"read": normalized, "normalized": normalized, "rejected": 0, "filtered": 0},
        "sources": {s: {"read": sum(counts[s].values()), "normalized": sum(counts[s].values()), "rejected": 0,
                        "filtered": 0, "splits": counts[s]} for s in sources},
        "configs": {c: {"sources": members, "splits": counts[c], "num_rows": sum(counts[c].values())}
                    for c, members in configs.items()},
    }  # fmt: skip
    write_manifest(folder, manifest)
    (folder / "rejects.jsonl").write_text("")
    return folder


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def round_trip(folder: Path, task: str, baseline: str, path: Path) -> list[dict[str, Any]]:
    """A baseline's own predictions, written to ``path`` as a user's file and scored from it: the result rows."""
    from coord_bench.evaluate import collect, score_predictions, write_predictions
    from coord_bench.tasks.base import split_examples

    _, tasks, found = collect(folder, [task], progress=False)
    write_predictions(path, tasks[task].baselines()[baseline](*split_examples(found[task])))
    return score_predictions(folder, task, path, progress=False)["results"]
