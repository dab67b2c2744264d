"""``coord-bench export --format seed-json``: the arena rows in the layout researchers already hold.

``{"examples": [{"input", "context": {...}, "output": "Winner: model_b", "metadata": {...}}]}`` — one example
per arena conversation, with its first round's prompt and responses (the layout has one of each). It is
written as a stream, one example at a time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coord_bench.dataset_dir import iter_rows, read_manifest, shard_files

FORMATS = ("seed-json",)


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
            "token_usage": annotations["token_usage"],
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
