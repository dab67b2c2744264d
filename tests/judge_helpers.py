"""Helpers of the judge tests: a base-columns build of real records, its rows, judge parameters for the tiny
local model, an in-memory run of the `JudgeMapper` (the fixtures built with them are in conftest.py), and the
`label` subprocess runs, kills and ledger checks of the budget tests."""

from __future__ import annotations

import copy
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
from realdata import source_dir_args

from coord_bench.cli import main
from coord_bench.mappers.judge import JudgeMapper
from coord_bench.schema import record_errors


def build_sources(out: Path, sources: tuple[str, ...], limit: int) -> Path:
    args = ["build", "--no-progress", "--out", str(out), "--limit", str(limit), "--sources", ",".join(sources)]
    args += ["--annotate", "none", "--set", "output.report=false"]  # the base columns: what the judge reads
    args += source_dir_args(sources)
    assert main(args) == 0
    return out


def records_of(folder: Path, config: str = "all") -> list[dict]:
    return [r for p in sorted((folder / config).glob("*.parquet")) for r in pq.read_table(p).to_pylist()]


class ListCorpus:
    """The corpus interface the mappers read (``batches(columns)``) over records in memory."""

    def __init__(self, records):
        self.records = records

    def batches(self, columns=None):
        rows = [{k: copy.deepcopy(v) for k, v in r.items() if columns is None or k in columns} for r in self.records]
        yield rows


def params(tmp_path: Path, base_url: str, **overrides) -> dict:
    """Judge parameters for the tiny local model: short prompts and answers, fast backoff."""
    return {
        "base_url": base_url,
        "models": ["smollm2"],
        "mode": "json_object",
        "max_tokens": 160,
        "prompt_token_budget": 100,
        "timeout_s": 60,
        "max_retries": 2,
        "max_reasks": 1,
        "backoff_base_s": 0.05,
        "max_backoff_s": 2,
        "concurrency": 2,
        "max_calls": 10,
        "cache_dir": str(tmp_path / "judge_cache"),
        **overrides,
    }


def run_judge(p: dict, records: list[dict]) -> tuple[JudgeMapper, list[dict]]:
    mapper = JudgeMapper({"sample_size": len(records), **p}, progress=False)
    mapper.prepare(ListCorpus(records))
    out = copy.deepcopy(records)
    mapper.apply(out)
    for record in out:
        assert list(record_errors(record)) == [], record["id"]
    return mapper, out


def entry(record: dict, model: str | None = None) -> dict:
    judges = record["annotations"]["coordination"]["judges"]
    return judges[0] if model is None else next(j for j in judges if j["model"] == model)


def label_args(folder: Path, cache: Path, base_url: str, *extra: str, calls: int = 12, sample: int | None = 4):
    args = [
        "label", str(folder), "--base-url", base_url, "--judge-model", "smollm2", "--mode", "json_object",
        "--max-calls", str(calls), "--concurrency", "8", "--no-progress", "--set", f"cache_dir={cache}",
        "--set", "max_tokens=160", "--set", "prompt_token_budget=100", "--set", "max_reasks=0",
        "--set", "max_retries=0", "--set", "timeout_s=300", *extra,
    ]  # fmt: skip
    return args + (["--sample-size", str(sample)] if sample else [])


def ledger_of(folder: Path) -> dict:
    return json.loads((folder / "build_manifest.json").read_text())["annotations"]["judge"]["budget"]["ledger"]


def cached(cache: Path) -> int:
    db = cache / "judge_cache.sqlite"
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute("SELECT COUNT(*) FROM judgements").fetchone()[0]
    except sqlite3.OperationalError:  # no file or no table yet
        return 0


def start_label(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as handle:
        return subprocess.Popen([sys.executable, "-m", "coord_bench.cli", *args], stdout=handle, stderr=handle)


def kill_when(process: subprocess.Popen, ready, log: Path, timeout: float = 240) -> None:
    """SIGKILL ``process`` as soon as ``ready()``; fails if it ended first (the kill point was missed)."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, f"the run ended before the kill point: {log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"the kill point never came: {log.read_text()[-2000:]}"
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def assert_adds_up(ledger: dict) -> None:
    assert ledger["in_flight"] == 0
    assert ledger["calls_sent"] == ledger["answered"] + ledger["failed"] + ledger["lost_in_crash"]
    assert ledger["calls_remaining"] == ledger["max_calls"] - ledger["calls_sent"]
