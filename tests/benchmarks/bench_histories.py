"""Mapping per-agent histories, run by hand (not a test): the merge alone and a whole build, for debates of
three agents over N rounds, each answer copied into the other two histories.

An answer's visible_message_ids hold everything before it in its agent's history, so they grow with the
square of the rounds; the build's time past a few hundred rounds is the schema check of those ids.

    PYTHONPATH=. .venv/bin/python tests/benchmarks/bench_histories.py [--rounds 10 100 300]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from coord_bench.build import BuildPlan, run_build
from coord_bench.sources import SourceSpec
from coord_bench.sources.mapping.histories import history_items
from coord_bench.sources.mapping.options import parse_mapping

MAPPING = {"files": "*.json", "conversation_id": "id", "histories": "players", "role": "role", "text": "content"}


def debate(rounds: int, names=("a", "b", "c")) -> dict[str, list[dict[str, str]]]:
    players = {x: [{"role": "user", "content": "the topic"}] for x in names}
    for r in range(rounds):
        for x in names:
            players[x].append({"role": "assistant", "content": f"{x} in round {r}"})
        for x in names:
            players[x] += [{"role": "user", "content": f"{y} in round {r}"} for y in names if y != x]
    return players


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, nargs="+", default=[10, 100, 300])
    args = parser.parse_args()
    options = parse_mapping(MAPPING)
    for rounds in args.rounds:
        players = debate(rounds)
        start = time.perf_counter()
        items = history_items({"players": players}, options, "bench")
        merge_s = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "in"
            root.mkdir()
            (root / "d.json").write_text(json.dumps({"id": "d", "players": players}))
            spec = SourceSpec(name="bench", adapter="mapping", root=root, dataset="local", options={"mapping": MAPPING})
            start = time.perf_counter()
            manifest = run_build(BuildPlan(sources=[spec], out_dir=Path(tmp) / "out"))
            build_s = time.perf_counter() - start
        assert manifest["sources"]["bench"]["normalized"] == 1
        entries = sum(map(len, players.values()))
        seen = sum(len(item.seen or ()) for item in items)
        print(f"{rounds} rounds: {entries} history entries -> {len(items)} messages, {seen} visible ids; "
              f"merge {merge_s:.2f} s, build {build_s:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
