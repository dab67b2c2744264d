"""Reading plain-text logs (``format: text``), run by hand (not a test): one generated ChatDev-style log of N
entries (each a header line, a blank line and a three-line code block), read alone and built whole.

The reader holds one conversation (a file, or a part of it between separators) in memory.

    PYTHONPATH=. .venv/bin/python tests/benchmarks/bench_text_logs.py [--entries 10000 100000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from coord_bench.build import BuildPlan, run_build
from coord_bench.sources import SourceSpec
from coord_bench.sources.mapping.options import parse_mapping
from coord_bench.sources.mapping.text_log import iter_text_log

EXAMPLE = Path(__file__).resolve().parents[2] / "builder_scripts" / "examples" / "text_log.yaml"


def write_log(path: Path, entries: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        handle.write("[2024-03-12 09:00:00 INFO] **[Preprocessing]**\n\n**ChatDev Starts** (20240312090000)\n\n")
        for i in range(entries):
            speaker = ("Programmer", "Code Reviewer")[i % 2]
            header = f"[2024-03-12 09:{i // 60 % 60:02d}:{i % 60:02d} INFO] {speaker}: **on : Coding, turn {i}**"
            handle.write(f"{header}\n\n```python\ndef f(x):\n    return x + {i}\n```\n\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args()
    mapping = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))["sources"][0]["mapping"]
    mapping = {**mapping, "files": "*.log", "task": {}, "outcome": {}}
    line = parse_mapping(mapping).line
    for entries in args.entries:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "in"
            root.mkdir()
            log = root / "run.log"
            write_log(log, entries)
            megabytes = log.stat().st_size / 1e6
            start = time.perf_counter()
            [(_, record)] = list(iter_text_log(log, line))
            read_s = time.perf_counter() - start
            spec = SourceSpec(name="bench", adapter="mapping", root=root, dataset="local", options={"mapping": mapping})
            start = time.perf_counter()
            manifest = run_build(BuildPlan(sources=[spec], out_dir=Path(tmp) / "out"))
            build_s = time.perf_counter() - start
        assert manifest["sources"]["bench"]["normalized"] == 1 and len(record["messages"]) == entries + 1
        print(f"{entries} entries ({megabytes:.1f} MB): read {read_s:.2f} s ({megabytes / read_s:.1f} MB/s), "
              f"build {build_s:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
