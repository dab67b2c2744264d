"""The normalized corpus between the two passes of a build: Parquet files under ``<out>/.staging``.

Corpus-level mappers (embeddings, the latent model) need to see every record before any record can be
annotated; staging keeps memory bounded while they do, and is deleted when the build ends.
"""

from __future__ import annotations

import shutil
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from coord_bench.schema import features

BATCH_ROWS = 200


class StagedCorpus:
    """Append records per source, then read them back in batches, as often as a mapper needs."""

    def __init__(self, folder: Path):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        self.folder = folder
        self.schema = features().arrow_schema
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.buffers: dict[str, list[dict[str, Any]]] = {}

    def add(self, record: dict[str, Any]) -> None:
        buffer = self.buffers.setdefault(record["source"], [])
        buffer.append(record)
        if len(buffer) >= BATCH_ROWS:
            self._flush(record["source"])

    def _flush(self, source: str) -> None:
        rows = self.buffers.get(source)
        if not rows:
            return
        if source not in self.writers:
            self.writers[source] = pq.ParquetWriter(self.folder / f"{source}.parquet", self.schema)
        self.writers[source].write_table(pa.Table.from_pylist(rows, schema=self.schema))
        self.buffers[source] = []

    def close_writing(self) -> None:
        for source in list(self.buffers):
            self._flush(source)
        for writer in self.writers.values():
            writer.close()

    def batches(self, columns: list[str] | None = None) -> Iterator[list[dict[str, Any]]]:
        """Every staged record, in the order staged, a batch at a time (only ``columns`` if given)."""
        for path in sorted(self.folder.glob("*.parquet")):
            for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=columns):
                yield batch.to_pylist()

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class AnnotatedView:
    """The staged corpus as one layer's corpus pass sees it: each batch with only the layers that layer needs
    applied, read with only the columns it and they declare. Applying tokens again is cheaper than a second
    copy of the corpus on disk; layers named in ``applied`` were applied before staging, so are only read."""

    def __init__(
        self, corpus: StagedCorpus, reads: Sequence[str], needed: Sequence[Any], applied: Collection[str] = ()
    ):
        self.corpus, self.reads, self.needed = corpus, tuple(reads), list(needed)
        self.to_apply = [layer for layer in self.needed if layer.name not in applied]  # the rest are staged

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[list[dict[str, Any]]]:
        """Every staged record with the needed layers applied; ``columns`` (default: the layer's ``reads``)
        plus what the needed layers read and write."""
        wanted = set(self.reads if columns is None else columns)
        for layer in self.needed:
            wanted.update(layer.reads, layer.writes)
        for batch in self.corpus.batches([name for name in self.corpus.schema.names if name in wanted]):
            for layer in self.to_apply:
                layer.apply(batch)
            yield batch
