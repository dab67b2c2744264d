"""Benchmark of the Ray engine against the local one, run by hand (not a test). It prints ratios:

a cold build (an empty embedding cache) of the real records in ../shared/realdata on each engine, each in a
process of its own, interleaved, median of ``--repeats``; the Ray engine starts its own local instance, so its
start-up is counted. On one machine the Ray engine is not meant to be faster: the ratio is its overhead.

    .venv/bin/python tests/benchmarks/bench_ray_engine.py [--annotate rules] [--limit N] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from realdata import source_dir_args  # noqa: E402


def timed_build(engine: str, folder: Path, annotate: str, limit: int | None) -> float:
    command = [
        *(sys.executable, "-m", "coord_bench.cli", "build", "--no-progress", "--out", str(folder / "out")),
        *(*source_dir_args(), "--annotate", annotate, "--set", "output.report=false", "--engine", engine),
    ]
    if limit is not None:
        command += ["--limit", str(limit)]
    env = {**os.environ, "COORD_BENCH_CACHE": str(folder / "cache")}
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotate", default="rules", help="layers to build (default rules: tokens, embeddings)")
    parser.add_argument("--limit", type=int, help="records per source (default: all)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"local": [], "ray": []}
    for _ in range(args.repeats):
        for engine in times:
            with tempfile.TemporaryDirectory() as tmp:
                times[engine].append(timed_build(engine, Path(tmp), args.annotate, args.limit))
    local, ray = (statistics.median(times[engine]) for engine in ("local", "ray"))
    print(f"cold build of the realdata ({args.annotate}, limit {args.limit}), median of {args.repeats}:")
    print(f"  local {local:.1f} s, ray {ray:.1f} s: ray / local = {ray / local:.2f}x on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
