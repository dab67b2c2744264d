"""Helpers of the judge tests: a base-columns build of real records, its rows, judge parameters for the tiny
local model, and an in-memory run of the `JudgeMapper` (the fixtures built with them are in conftest.py)."""

from __future__ import annotations

import copy
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
