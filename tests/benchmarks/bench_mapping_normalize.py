"""The mapping adapter's normalize, run by hand (not a test): time per conversation of M messages when every
field maps, and when the speaker path fails in every message (each failure is collected for the one reject).

    PYTHONPATH=. .venv/bin/python tests/benchmarks/bench_mapping_normalize.py [--conversations 2000] [--messages 10]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path

from coord_bench.sources import ADAPTERS, Reject, SourceSpec

MAPPING = {"files": "*.jsonl", "conversation_id": "id", "messages": "messages", "speaker": "from", "text": "text",
           "timestamp": "t", "outcome": {"winner": "verdict"}}  # fmt: skip


def seconds_each(root: Path, mapping: dict, repeats: int = 5) -> float:
    adapter = ADAPTERS["mapping"](SourceSpec("bench", "mapping", root, "local", options={"mapping": mapping}))
    raws = list(adapter.iter_raw())
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for raw in raws:
            with contextlib.suppress(Reject):  # a rejected record costs its collection too
                adapter.normalize(raw)
        best = min(best, time.perf_counter() - start)
    return best / len(raws)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        with open(root / "runs.jsonl", "w") as handle:
            for c in range(args.conversations):
                said = [{"from": f"a{i % 3}", "text": f"message {i}", "t": 1.7e9 + i} for i in range(args.messages)]
                handle.write(json.dumps({"id": f"c{c}", "messages": said, "verdict": "tie"}) + "\n")
        for label, mapping in (("maps", MAPPING), ("speaker fails in every message", {**MAPPING, "speaker": "who"})):
            each = seconds_each(root, mapping)
            print(f"{args.conversations} conversations of {args.messages} messages, {label}: {each * 1e6:.0f} us each")


if __name__ == "__main__":
    main()
