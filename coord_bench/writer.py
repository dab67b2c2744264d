"""Parquet shards per config and split, written as records stream in, named the way ``datasets`` expects.

Rows are buffered in small batches and flushed as row groups; a shard is closed before the next row group
would take it past the size limit, counting the footer Parquet writes on close (the schema with its
``datasets`` features, about 30 KB, and a few KB of metadata per row group, learnt from the shards closed).
Names are only known at the end (``train-00000-of-00003.parquet``), so shards are renamed on close.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from coord_bench.build_folder import shard_name
from coord_bench.schema import features
from coord_bench.splits import SPLITS

ROWS_PER_BATCH = 200
GROUP_FOOTER_GUESS_PER_COLUMN = 320  # bytes of footer per row group and leaf column, until a closed shard says


@functools.cache
def empty_file() -> tuple[int, int]:
    """(bytes, leaf columns) of a Parquet file of our schema with no rows: its size is the part of every
    footer that rows do not change."""
    buffer = io.BytesIO()
    pq.ParquetWriter(buffer, features().arrow_schema, compression="zstd").close()
    return len(buffer.getvalue()), pq.ParquetFile(io.BytesIO(buffer.getvalue())).metadata.num_columns


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
        self.groups = 0  # row groups in the open shard
        self.group_footer = GROUP_FOOTER_GUESS_PER_COLUMN * empty_file()[1]  # footer bytes per row group

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
        room = max(1, self.max_shard_bytes - empty_file()[0] - self.group_footer)  # a shard's room for rows
        rows_per_slice = max(1, int(table.num_rows * room / max(table.nbytes * ratio, 1)))
        for start in range(0, table.num_rows, rows_per_slice):
            piece = table.slice(start, rows_per_slice)
            current = self.parts[-1].stat().st_size if self.writer is not None else 0
            footer = empty_file()[0] + (self.groups + 1) * self.group_footer
            if self.writer is not None and current + piece.nbytes * ratio + footer > self.max_shard_bytes:
                self._close_shard()
            if self.writer is None:
                part = self.folder / f".{self.split}.part{len(self.parts)}.parquet"
                self.parts.append(part)
                self.writer = pq.ParquetWriter(part, self.schema, compression="zstd")
                current = 0
            self.writer.write_table(piece)
            self.groups += 1
            self.written_bytes += self.parts[-1].stat().st_size - current
            self.arrow_bytes += piece.nbytes

    def _close_shard(self) -> None:
        """Close the open shard and learn from its footer how much each row group adds to it."""
        before = self.parts[-1].stat().st_size
        self.writer.close()
        footer = self.parts[-1].stat().st_size - before
        self.group_footer = max(0, footer - empty_file()[0]) / self.groups
        self.writer, self.groups = None, 0

    def close(self) -> list[Path]:
        """Write what is buffered, then give the shards their final names. An empty split writes no file:
        ``datasets`` cannot read a Parquet file without rows, so the card lists only splits that have rows."""
        if self.rows:
            self._flush()
        if self.writer is not None:
            self._close_shard()
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
