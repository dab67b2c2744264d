"""Benchmark of the judge's concurrency, run by hand (not a test).

A loopback OpenAI-compatible server (``tests/llm_server.py::FakeChatServer``, in its own process) answers
every request after a FIXED latency L. With N requests and concurrency c the ideal wall time is
``N * L / c`` (c <= N). For each concurrency the script plans a sample of N distinct synthetic conversations
(cold cache), then times the judge's run: cache lookups, budget reservations, HTTP, validation, SQLite
writes. It prints the measured wall time, the ideal, their ratio (target: within 1.3x), the speed-up over
concurrency 1 and the peak number of requests the server saw in flight.

    .venv/bin/python tests/benchmarks/bench_judge.py [--calls 64] [--latency 0.25] [--concurrency 1 4 16]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

import httpx  # noqa: E402
from llm_server import free_port  # noqa: E402

from coord_bench.mappers.judge import JudgeMapper  # noqa: E402
from coord_bench.mappers.judge.runner import run_sync  # noqa: E402


def records(n: int) -> list[dict]:
    """Synthetic arena-style conversations (every one distinct, so every request misses the cache)."""
    out = []
    for i in range(n):
        prompt = f"Question {i}: which is better for task {i % 7}, plan A or plan B?"
        out.append(
            {
                "id": f"bench:{i}",
                "source": "bench",
                "source_config": None,
                "protocol": {"interaction": "pairwise_comparison"},
                "outcome": {"winner": ["model_a", "model_b", "tie"][i % 3], "answer_correct": None},
                "task": {"instruction": None, "input": prompt, "context": None, "setting": None},
                "agents": [
                    {"agent_id": a, "name": a, "role": r}
                    for a, r in (("user", "user"), ("model_a", "assistant"), ("model_b", "assistant"))
                ],
                "turns": [
                    {
                        "index": 0,
                        "messages": [
                            {"agent_id": "user", "kind": "prompt", "text": prompt},
                            {"agent_id": "model_a", "kind": "response", "text": f"Plan A, because {i}."},
                            {"agent_id": "model_b", "kind": "response", "text": f"Plan B, since {i * 3}."},
                        ],
                    }
                ],
            }
        )
    return out


class Corpus:
    def __init__(self, rows: list[dict]):
        self.rows = rows

    def batches(self, columns=None):
        yield [{k: v for k, v in r.items() if columns is None or k in columns} for r in self.rows]


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    """The fake server in its own process, so its threads do not compete with the judge for the GIL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, str(TESTS / "llm_server.py"), str(port), str(latency)])
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/models", timeout=1).status_code == 200:
                return process, base_url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the fake server did not start")


def run(calls: int, latency: float, concurrency: int) -> tuple[float, int, int]:
    process, base_url = start_server(latency)
    try:
        with tempfile.TemporaryDirectory() as cache:
            params = {
                "base_url": base_url,
                "models": ["fake-judge"],
                "mode": "json_object",
                "max_calls": calls,
                "sample_size": calls,
                "concurrency": concurrency,
                "cache_dir": cache,
                "timeout_s": 30,
            }
            mapper = JudgeMapper(params, progress=False)
            mapper.plan(Corpus(records(calls)))  # sampling and prompts (one-off costs): not timed
            started = time.perf_counter()
            run_sync(mapper.runner.run(mapper.jobs))
            wall = time.perf_counter() - started
            assert mapper.counters.fresh == calls, mapper.counters.failure_reasons
            stats = httpx.get(f"{base_url}/stats", timeout=5).json()
            return wall, stats["received"], stats["peak_in_flight"]
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.25, help="seconds the server waits before answering")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    args = parser.parse_args()
    print(f"{args.calls} requests, fixed server latency {args.latency:g} s")
    print(f"{'concurrency':>11} {'wall s':>8} {'ideal s':>8} {'ratio':>6} {'speed-up':>9} {'peak in flight':>15}")
    base = None
    worst = 0.0
    for concurrency in args.concurrency:
        wall, received, peak = run(args.calls, args.latency, concurrency)
        ideal = args.calls * args.latency / min(concurrency, args.calls)
        base = base or wall
        worst = max(worst, wall / ideal)
        print(f"{concurrency:>11} {wall:>8.2f} {ideal:>8.2f} {wall / ideal:>6.2f} {base / wall:>8.1f}x {peak:>15}")
        assert received == args.calls and peak <= concurrency
    print(f"worst wall / ideal: {worst:.2f} ({'within' if worst <= 1.3 else 'OVER'} the 1.3x target)")
    return 0 if worst <= 1.3 else 1


if __name__ == "__main__":
    sys.exit(main())
