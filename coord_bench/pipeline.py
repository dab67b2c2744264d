"""The build engine: records flow forward once, source -> staging -> layers -> shards -> manifest.

An input stages records (pass 1: the sources' adapters, or the records of a finished build when it is
labelled); every layer then sees the whole staged corpus (``prepare``: embeddings, model fitting, judging);
pass 2 applies the layers a batch at a time, checks each record against the schema again and writes the config
shards. Everything is written into a staging folder beside the output that replaces it only once complete
(``folder_swap``). The engine knows no layer and no card: the caller passes the layers and the ``finishers``
that write extra files (the card) into the finished folder before it is swapped in.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from coord_bench.build_folder import REJECTS_FILE, write_manifest
from coord_bench.folder_swap import BuildFolderError, recover, start_staging, swap_in
from coord_bench.mappers.layer import Layer, LayerContext
from coord_bench.plan import BuildError
from coord_bench.schema import record_problems
from coord_bench.sources import Reject
from coord_bench.staging import AnnotatedView, StagedCorpus
from coord_bench.writer import ConfigWriters

Say = Callable[[str], None]
Finisher = Callable[[Path, dict[str, Any]], None]  # (the finished staging folder, its manifest)


class RecordInput(Protocol):
    """Where a build's records come from, and the manifest it makes of what the layers and writers did."""

    applied: frozenset[str]  # the per-record layers whose annotations the staged records already carry

    def stage(self, corpus: StagedCorpus, work_dir: Path, progress: bool) -> None:
        """Pass 1: add every record to ``corpus``; write ``work_dir/rejects.jsonl`` and whatever else the
        input owns in the folder (a labelled build keeps its rejects, artifacts and reports)."""

    def manifest(self, configs: dict[str, dict[str, int]], annotations: dict[str, Any]) -> dict[str, Any]:
        """The build's manifest, given the rows per config and split and the layers' ``describe()``."""


@dataclass
class Output:
    """Where and how the shards are written."""

    out_dir: Path
    configs: dict[str, list[str]]  # config name -> its sources
    max_shard_bytes: int


def run_pipeline(
    records: RecordInput,
    output: Output,
    layers: list[Layer],
    context: LayerContext,
    finishers: Iterable[Finisher] = (),
    say: Say | None = None,
) -> dict[str, Any]:
    """Build ``output`` from ``records`` through ``layers``; return the manifest written.

    ``context.out_dir`` is set to the staging folder, where layers write their artifacts."""
    from coord_bench.mappers.registry import needed_by

    say = say or (lambda _message: None)
    out_dir = Path(output.out_dir).absolute()
    try:
        recover(out_dir, say)
        work_dir = start_staging(out_dir, say)
    except BuildFolderError as err:
        raise BuildError(str(err)) from None
    context.out_dir = work_dir
    corpus = StagedCorpus(work_dir / ".staging")
    records.stage(corpus, work_dir, context.progress)
    corpus.close_writing()
    for layer in layers:
        layer.prepare(AnnotatedView(corpus, layer.reads, needed_by(layer, layers), records.applied))
    writers = ConfigWriters(work_dir, output.configs, output.max_shard_bytes)
    late_rejects: Counter = Counter()  # (source, split) -> records an annotation broke
    with open(work_dir / REJECTS_FILE, "a", encoding="utf-8") as rejects:
        for batch in corpus.batches():
            for layer in layers:
                if layer.name not in records.applied:
                    layer.apply(batch)
            for record in batch:
                problems = list(record_problems(record))
                if problems:  # an annotation broke the schema: a bug, but the record is still accounted for
                    late_rejects[record["source"], record["split"]] += 1
                    reject = schema_reject("the annotated record breaks the schema: ", problems)
                    write_reject(rejects, record["source"], record["source_locator"], reject)
                    continue
                writers.add(record)
    corpus.remove()
    annotations = {layer.name: layer.describe() for layer in layers}
    manifest = records.manifest(writers.close(), annotations)
    _count_late_rejects(manifest, late_rejects)
    for finish in finishers:
        finish(work_dir, manifest)
    write_manifest(work_dir, manifest)  # the manifest last: a folder with one is a finished build
    swap_in(work_dir, out_dir)
    return manifest


def write_reject(
    rejects: IO[str], source: str, locator: str, reject: Reject, payload: dict[str, Any] | None = None
) -> None:
    """One line of rejects.jsonl: where the record was, why it was not kept, and the record (or a pointer)."""
    entry = {"source": source, "locator": locator, "kind": reject.kind, "field": reject.field, "reason": reject.reason}
    if reject.failures:
        entry["failures"] = reject.failures
    rejects.write(json.dumps({**entry, **(payload or {})}, ensure_ascii=False, default=str) + "\n")


def schema_reject(prefix: str, problems: list[tuple[str, str]]) -> Reject:
    """One reject for a record the schema refuses; ``field`` is the first offending field of the unified record."""
    text = "; ".join(f"{path}: {problem}" for path, problem in problems[:5])
    return Reject(prefix + text, field=problems[0][0], kind="schema")


def _count_late_rejects(manifest: dict[str, Any], late: Counter) -> None:
    """Move the records rejected in pass 2 from normalized to rejected in the manifest's source counts."""
    for (source, split), n in late.items():
        entry = manifest["sources"][source]
        entry["normalized"] -= n
        entry["splits"][split] -= n
        entry["rejected"] += n
        entry["rejects_by_kind"]["schema"] = entry["rejects_by_kind"].get("schema", 0) + n
        manifest["totals"]["normalized"] -= n
        manifest["totals"]["rejected"] += n
