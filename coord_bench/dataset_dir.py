"""Reading a built dataset folder back: its manifest, its configs and its records, one batch at a time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from coord_bench.build_folder import MANIFEST_FILE


class NotABuildError(FileNotFoundError):
    pass


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        raise NotABuildError(f"{folder} is not a coord_bench build: {MANIFEST_FILE} is missing")
    return json.loads(path.read_text(encoding="utf-8"))


def shard_files(folder: Path, config: str) -> list[Path]:
    return sorted((Path(folder) / config).glob("*.parquet"))


def iter_rows(path: Path, batch_size: int = 256) -> Iterator[dict[str, Any]]:
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
        yield from batch.to_pylist()
