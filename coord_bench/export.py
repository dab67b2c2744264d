"""``coord-bench export --format seed-json``: the arena rows in the layout researchers already hold.

``{"examples": [{"input", "context": {...}, "output": "Winner: model_b", "metadata": {...}}]}`` — one example
per arena conversation, with its first round's prompt and responses (the layout has one of each). It is
written as a stream, one example at a time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coord_bench.build_folder import iter_rows, read_manifest, shard_files

FORMATS = ("seed-json",)


def seed_token_usage(record: dict[str, Any]) -> dict[str, Any] | None:
    """The seed layout's token_usage block, from the tokens annotation (null when it did not run).

    Lengths are characters; the arena gives one timestamp per conversation, so only the first round has a
    timestamp_offset (0.0); the others are null rather than invented."""
    usage = record["annotations"]["token_usage"]
    if usage is None:
        return None
    rounds = []
    for turn in record["turns"]:
        by_agent = {m["agent_id"]: m for m in turn["messages"]}
        entry = {"turn_number": turn["index"] + 1, "timestamp_offset": 0.0 if turn["index"] == 0 else None}
        for prefix, agent_id in (("input", "user"), ("response_a", "model_a"), ("response_b", "model_b")):
            if agent_id in by_agent:
                entry[f"{prefix}_tokens"] = by_agent[agent_id]["n_tokens"]
                entry[f"{prefix}_length"] = by_agent[agent_id]["n_chars"]
        rounds.append(entry)
    per_agent = {a["agent_id"]: a["n_tokens"] for a in usage["per_agent"]}
    return {
        "turns": rounds,
        "total_input_tokens": usage["input_tokens"],
        "total_output_tokens_a": per_agent.get("model_a", 0),
        "total_output_tokens_b": per_agent.get("model_b", 0),
        "total_tokens": usage["total_tokens"],
        "message_lengths": {
            prefix: [r[f"{prefix}_length"] for r in rounds if f"{prefix}_length" in r]
            for prefix in ("input", "response_a", "response_b")
        },
        "communication_efficiency": {
            "avg_tokens_per_turn": usage["tokens_per_turn"],
            "input_output_ratio": usage["input_output_ratio"],
            "coordination_overhead": usage["coordination_overhead"],
        },
    }


def seed_example(record: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    models = {a["agent_id"]: a["model"] for a in record["agents"]}
    first = {m["agent_id"]: m["text"] for m in record["turns"][0]["messages"]}
    annotations = record["annotations"]
    return {
        "input": first["user"],
        "context": {
            "model_a": models["model_a"],
            "model_b": models["model_b"],
            "winner": record["outcome"]["winner"],
            "judge": record["outcome"]["judge"],
            "language": record["task"]["language"],
            "turn": record["protocol"]["rounds"],
            "response_a": first.get("model_a"),
            "response_b": first.get("model_b"),
            "token_usage": seed_token_usage(record),
            "latent_states": annotations["latents"],
            "coordination_outcomes": annotations["coordination"],
        },
        "output": f"Winner: {record['outcome']['winner']}",
        "metadata": {
            "dataset_source": record["provenance"]["source_dataset"],
            "annotation_version": record["provenance"]["builder_version"],
            "annotation_date": manifest["built_at"][:10],
        },
    }


def export_seed_json(folder: Path, out_file: Path, config: str = "chatbot_arena") -> int:
    """Write the seed layout for the arena records of ``config``; return how many were written."""
    manifest = read_manifest(folder)
    if config not in manifest["configs"]:
        raise ValueError(f"config {config!r} is not in {folder}; configs: {', '.join(manifest['configs'])}")
    count = 0
    with open(out_file, "w", encoding="utf-8") as out:
        out.write('{"examples": [')
        for path in shard_files(folder, config):
            for record in iter_rows(path):
                if record["protocol"]["interaction"] != "pairwise_comparison":
                    continue
                out.write(
                    ("," if count else "") + "\n" + json.dumps(seed_example(record, manifest), ensure_ascii=False)
                )
                count += 1
        out.write("\n]}\n")
    return count
