"""The build: read every source, normalize or reject each record, write Parquet per config, the card and the manifest.

Records stream from the source files through the adapter and the schema check into a staged copy on disk,
then through the annotation mappers into the shard writers, a batch at a time; only corpus-level state (the
ids seen, the latent model's training sequences, small per-record features) grows with the corpus. Every
record read ends up counted as normalized, rejected or filtered.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from coord_bench import __version__
from coord_bench.build_folder import MANIFEST_FILE, REJECTS_FILE, BuildFolderError, recover, start_staging, swap_in
from coord_bench.filters import filter_reason
from coord_bench.locate import file_sha256
from coord_bench.plan import BuildError, BuildPlan
from coord_bench.recipe import recipe_hash
from coord_bench.schema import record_problems, schema_version
from coord_bench.sources import RawRecord, Reject, adapter_class
from coord_bench.sources.readers import ReadFailure
from coord_bench.splits import SPLITS
from coord_bench.staging import AnnotatedView, StagedCorpus
from coord_bench.writer import ConfigWriters

MAX_RAW_IN_REJECTS = 64 * 1024  # larger raw records are referenced by file and index instead of copied


def run_build(plan: BuildPlan, progress: bool = True, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the build described by ``plan`` and return the manifest it wrote.

    Pass 1 normalizes every source into a staged corpus; the mappers then see the whole corpus (embeddings,
    model fitting); pass 2 annotates the staged records batch by batch, checks them against the schema
    again and writes the config shards. Everything is written into a staging folder beside ``plan.out_dir``
    that replaces it only once complete (see ``build_folder``); ``say`` gets what the user should know.
    """
    from coord_bench.mappers.layer import LayerContext
    from coord_bench.mappers.registry import build_layers, needed_by

    say = say or (lambda _message: None)
    adapters = [adapter_class(spec.adapter)(spec) for spec in plan.sources]
    inputs = {adapter.spec.name: adapter.files() for adapter in adapters}  # fails early on a missing layout
    out_dir = Path(plan.out_dir).absolute()
    try:
        recover(out_dir, say)
        work_dir = start_staging(out_dir, say)
    except BuildFolderError as err:
        raise BuildError(str(err)) from None
    context = LayerContext(out_dir=work_dir, budget_folder=out_dir, progress=progress)  # the budget: the named folder's
    mappers = build_layers(plan.annotations, context)
    corpus = StagedCorpus(work_dir / ".staging")
    stats = {spec.name: _new_stats() for spec in plan.sources}
    with open(work_dir / REJECTS_FILE, "w", encoding="utf-8") as rejects:
        _normalize_into(corpus, adapters, inputs, plan.limit, stats, rejects, progress)
        corpus.close_writing()
        for mapper in mappers:
            mapper.prepare(AnnotatedView(corpus, mapper.reads, needed_by(mapper, mappers)))
        writers = ConfigWriters(work_dir, plan.configs, plan.max_shard_bytes)
        for batch in corpus.batches():
            for mapper in mappers:
                mapper.apply(batch)
            for record in batch:
                source_stats = stats[record["source"]]
                problems = list(record_problems(record))
                if problems:  # an annotation broke the schema: a bug, but the record is still accounted for
                    source_stats["normalized"] -= 1
                    source_stats["splits"][record["split"]] -= 1
                    reject = _schema_reject("the annotated record breaks the schema: ", problems)
                    _reject(rejects, source_stats, record["source"], record["source_locator"], None, reject)
                    continue
                writers.add(record)
    corpus.remove()
    config_counts = writers.close()
    annotations = {
        mapper.name: {"params": plan.annotations.get(mapper.name, {}), **mapper.describe()} for mapper in mappers
    }
    entries = {a.spec.name: _source_entry(a, inputs[a.spec.name], stats[a.spec.name]) for a in adapters}
    manifest = _manifest(plan, entries, config_counts, annotations)
    from coord_bench.card import write_card

    write_card(work_dir, manifest, load_path=f"./{Path(plan.out_dir).name}")  # the folder asked for, not staging
    # the manifest last: a folder with one is a finished build
    (work_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    swap_in(work_dir, out_dir)
    return manifest


def _new_stats() -> dict[str, Any]:
    return {
        "read": 0,
        "normalized": 0,
        "rejected": 0,
        "filtered": 0,
        "rejects_by_kind": Counter(),
        "filtered_by_reason": Counter(),
        "splits": Counter(),
        "empty_files": [],
    }


def _normalize_into(
    corpus: StagedCorpus,
    adapters: list,
    inputs: dict[str, list[Path]],
    limit: int | None,
    stats: dict[str, Any],
    rejects: Any,
    progress: bool,
) -> None:
    """Pass 1: read every source, normalize or reject each record, stage the ones kept; note empty files."""
    seen_ids: dict[str, str] = {}
    with tqdm(desc="normalizing", unit="rec", disable=not progress) as bar:
        for adapter in adapters:
            spec = adapter.spec
            source_stats = stats[spec.name]
            filters = spec.options.get("filters") or {}
            files = [p.relative_to(spec.root).as_posix() for p in inputs[spec.name]]
            with_records: set[str] = set()
            read_up_to = len(files)  # files before this position were read to their end
            for raw in adapter.iter_raw():
                if limit is not None and source_stats["read"] >= limit:
                    read_up_to = files.index(raw.file)
                    break
                with_records.add(raw.file)
                source_stats["read"] += 1
                bar.update()
                try:
                    record = adapter.normalize(raw)
                    _check(record, seen_ids)
                except Reject as reject:
                    _reject(rejects, source_stats, spec.name, raw.locator, _raw_payload(raw), reject)
                    continue
                except Exception as err:  # an input shape no adapter check foresaw: still one reject, not a crash
                    reject = Reject(f"the {spec.adapter} adapter could not read this record: "
                                    f"{type(err).__name__}: {err}", kind="adapter_error")
                    _reject(rejects, source_stats, spec.name, raw.locator, _raw_payload(raw), reject)
                    continue
                seen_ids[record["id"]] = raw.locator
                reason = filter_reason(record, filters)
                if reason:
                    source_stats["filtered"] += 1
                    source_stats["filtered_by_reason"][reason] += 1
                    continue
                source_stats["normalized"] += 1
                source_stats["splits"][record["split"]] += 1
                corpus.add(record)
            source_stats["empty_files"] = [name for name in files[:read_up_to] if name not in with_records]


def _reject(
    rejects: Any,
    source_stats: dict[str, Any],
    source: str,
    locator: str,
    payload: dict[str, Any] | None,
    reject: Reject,
) -> None:
    source_stats["rejected"] += 1
    source_stats["rejects_by_kind"][reject.kind] += 1
    entry = {
        "source": source,
        "locator": locator,
        "kind": reject.kind,
        "field": reject.field,
        "reason": reject.reason,
        **(payload or {}),
    }
    rejects.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")


def _check(record: dict[str, Any], seen_ids: dict[str, str]) -> None:
    """Reject records the schema refuses and second copies of an id."""
    problems = list(record_problems(record))
    if problems:
        raise _schema_reject("the normalized record breaks the schema: ", problems)
    if record["id"] in seen_ids:
        raise Reject(f"duplicate of {seen_ids[record['id']]} (same id {record['id']})", kind="duplicate")


def _schema_reject(prefix: str, problems: list[tuple[str, str]]) -> Reject:
    """One reject for a record the schema refuses; ``field`` is the first offending field of the unified record."""
    text = "; ".join(f"{path}: {problem}" for path, problem in problems[:5])
    return Reject(prefix + text, field=problems[0][0], kind="schema")


def _raw_payload(raw: RawRecord) -> dict[str, Any]:
    """The raw record itself when small, else a pointer to it (DEBATE rows are megabytes)."""
    value = None if isinstance(raw.value, ReadFailure) else raw.value
    text = json.dumps(value, ensure_ascii=False, default=str)
    if value is not None and len(text) <= MAX_RAW_IN_REJECTS:
        return {"raw": value}
    return {"raw_pointer": f"{raw.file}#{raw.index}"}  # relative to the source's folder: no local paths leak


def _source_entry(adapter: Any, files: list[Path], stats: dict[str, Any]) -> dict[str, Any]:
    spec = adapter.spec
    return {
        "adapter": spec.adapter,
        "dataset": spec.dataset,
        "revision": spec.revision,
        "license": adapter.license,
        "files": [
            {"path": p.relative_to(spec.root).as_posix(), "bytes": p.stat().st_size, "sha256": file_sha256(p)}
            for p in files
        ],
        "empty_files": stats["empty_files"],  # files that hold no record (zero bytes, [] or blank lines only)
        "read": stats["read"],
        "normalized": stats["normalized"],
        "rejected": stats["rejected"],
        "rejects_by_kind": dict(sorted(stats["rejects_by_kind"].items())),
        "filtered": stats["filtered"],
        "filtered_by_reason": dict(sorted(stats["filtered_by_reason"].items())),
        "splits": {split: stats["splits"].get(split, 0) for split in SPLITS},
    }


def _manifest(
    plan: BuildPlan, sources: dict[str, Any], config_counts: dict[str, dict[str, int]], annotations: dict[str, Any]
) -> dict[str, Any]:
    totals = {key: sum(s[key] for s in sources.values()) for key in ("read", "normalized", "rejected", "filtered")}
    return {
        "coord_bench_version": __version__,
        "schema_version": schema_version(),
        "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "default_config": plan.default_config,
        "limit_per_source": plan.limit,
        "annotations": annotations,
        "recipe": plan.recipe,
        "recipe_hash": recipe_hash(plan.recipe) if plan.recipe is not None else None,
        "split_method": {"ratios": plan.split_ratios, "hash": "sha256(group key)[:16] as a fraction of 16**16"},
        "totals": totals,
        "sources": sources,
        "configs": {
            name: {"sources": plan.configs[name], "splits": counts, "num_rows": sum(counts.values())}
            for name, counts in config_counts.items()
        },
    }
