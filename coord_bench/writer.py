"""Parquet shards per config and split, written as records stream in, named the way ``datasets`` expects.

Rows are buffered in small batches and flushed as row groups; a shard is closed once it passes the size
limit. Names are only known at the end (``train-00000-of-00003.parquet``), so shards are renamed on close.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from coord_bench.build_folder import shard_name
from coord_bench.schema import features
from coord_bench.splits import SPLITS

ROWS_PER_BATCH = 200


class SplitWriter:
    """Streams the records of one config's split into size-limited Parquet shards."""

    def __init__(self, folder: Path, split: str, max_shard_bytes: int):
        self.folder, self.split, self.max_shard_bytes = folder, split, max_shard_bytes
        self.schema = features().arrow_schema
        self.rows: list[dict[str, Any]] = []
        self.parts: list[Path] = []
        self.writer: pq.ParquetWriter | None = None
        self.count = 0
        self.written_bytes = 0  # compressed bytes on disk, and the Arrow bytes they hold: the compression ratio
        self.arrow_bytes = 0

    def add(self, record: dict[str, Any]) -> None:
        self.rows.append(record)
        self.count += 1
        if len(self.rows) >= ROWS_PER_BATCH:
            self._flush()

    def _flush(self) -> None:
        """Write the buffered rows, starting a new shard before one would pass the size limit.

        The compressed size of a batch is estimated from its Arrow size times the compression ratio seen so far
        in this split (1.0 before any write, which is conservative); a batch too big for one shard is sliced."""
        table = pa.Table.from_pylist(self.rows, schema=self.schema)
        self.rows = []
        ratio = self.written_bytes / self.arrow_bytes if self.arrow_bytes else 1.0
        rows_per_slice = max(1, int(table.num_rows * self.max_shard_bytes / max(table.nbytes * ratio, 1)))
        for start in range(0, table.num_rows, rows_per_slice):
            piece = table.slice(start, rows_per_slice)
            current = self.parts[-1].stat().st_size if self.writer is not None else 0
            if self.writer is not None and current + piece.nbytes * ratio > self.max_shard_bytes:
                self.writer.close()
                self.writer = None
            if self.writer is None:
                part = self.folder / f".{self.split}.part{len(self.parts)}.parquet"
                self.parts.append(part)
                self.writer = pq.ParquetWriter(part, self.schema, compression="zstd")
                current = 0
            self.writer.write_table(piece)
            self.written_bytes += self.parts[-1].stat().st_size - current
            self.arrow_bytes += piece.nbytes

    def close(self) -> list[Path]:
        """Write what is buffered, then give the shards their final names. An empty split writes no file:
        ``datasets`` cannot read a Parquet file without rows, so the card lists only splits that have rows."""
        if self.rows:
            self._flush()
        if self.writer is not None:
            self.writer.close()
        total = len(self.parts)
        final = []
        for i, part in enumerate(self.parts):
            target = self.folder / shard_name(self.split, i, total)
            part.replace(target)
            final.append(target)
        return final


class ConfigWriters:
    """One ``SplitWriter`` per (config, split)."""

    def __init__(self, out_dir: Path, configs: dict[str, list[str]], max_shard_bytes: int):
        self.configs = configs
        self.writers: dict[tuple[str, str], SplitWriter] = {}
        for config in configs:
            folder = out_dir / config
            folder.mkdir(parents=True, exist_ok=True)
            for split in SPLITS:
                self.writers[config, split] = SplitWriter(folder, split, max_shard_bytes)

    def add(self, record: dict[str, Any]) -> None:
        for config, sources in self.configs.items():
            if record["source"] in sources:
                self.writers[config, record["split"]].add(record)

    def close(self) -> dict[str, dict[str, int]]:
        """Close every shard; return the row count per config and split."""
        counts: dict[str, dict[str, int]] = {config: {} for config in self.configs}
        for (config, split), writer in self.writers.items():
            writer.close()
            counts[config][split] = writer.count
        return counts
