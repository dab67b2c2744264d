"""A build from sources: pass 1 reads every source, normalizes or rejects each record and stages the kept ones.

Records stream from the source files through the adapter and the schema check into the staged corpus; the
engine (``pipeline``) then runs the layers and writes the shards. Only corpus-level state (the ids seen, the
counts) grows with the corpus. Every record read ends up counted as normalized, rejected or filtered.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from coord_bench import __version__
from coord_bench.build_folder import REJECTS_FILE
from coord_bench.filters import filter_reason
from coord_bench.locate import file_sha256
from coord_bench.mappers.layer import Layer, LayerContext
from coord_bench.pipeline import Finisher, Output, RecordInput, Say, run_pipeline, schema_reject, write_reject
from coord_bench.plan import BuildError, BuildPlan
from coord_bench.schema import record_problems, schema_version
from coord_bench.sources import RawRecord, Reject, adapter_class
from coord_bench.sources.base import abbreviated
from coord_bench.sources.readers import ReadFailure
from coord_bench.splits import SPLITS
from coord_bench.staging import StagedCorpus

MAX_RAW_IN_REJECTS = 64 * 1024  # larger raw records are referenced by file and index instead of copied
FIRST_REJECTS = 3  # the reject reasons an error or a warning quotes
WARN_REJECTED_SHARE = 0.5  # a source with more of its records rejected is warned about
Engine = Callable[[BuildPlan, list[Layer]], RecordInput]  # pass 1 of a plan through its layers


def run_build(
    plan: BuildPlan,
    layers: list[Layer] = (),
    context: LayerContext | None = None,
    finishers: Iterable[Finisher] = (),
    say: Say | None = None,
    engine: Engine | None = None,
) -> dict[str, Any]:
    """Build ``plan`` through ``layers`` (made with ``context``, see ``registry.build_layers``); return the
    manifest. ``finishers`` write extra files (the card) into the finished folder before it is swapped in.
    ``engine`` makes pass 1 of the plan's layers (default: here, ``SourcesInput``; ``ray_engine.on_ray``)."""
    context = context or LayerContext(progress=False)
    output = Output(Path(plan.out_dir), plan.configs, plan.max_shard_bytes)
    records = engine(plan, list(layers)) if engine else SourcesInput(plan)
    return run_pipeline(records, output, list(layers), context, finishers, say)


def build_dataset(
    plan: BuildPlan, progress: bool = True, say: Say | None = None, engine: Engine | None = None
) -> dict[str, Any]:
    """The build ``coord-bench build`` runs: the plan's layers (and those they need), then the card."""
    from coord_bench.card import write_card
    from coord_bench.mappers.registry import build_layers
    from coord_bench.review_import import STORE, HumanLabels, by_conversation, stored_labels

    context = LayerContext(budget_folder=Path(plan.out_dir).absolute(), progress=progress)  # the judge's budget
    load_path = f"./{Path(plan.out_dir).name}"  # the card names the folder asked for, not the staging folder
    layers = build_layers(plan.annotations, context)
    finishers = [lambda work_dir, manifest: write_card(work_dir, manifest, load_path)]
    reviewed = stored_labels(Path(plan.out_dir))  # a review imported into the previous build: merged again
    if reviewed:
        from coord_bench.label_report import write_labels_report

        layers.append(HumanLabels(by_conversation(reviewed), [STORE]))
        finishers.insert(0, write_labels_report)
    return run_build(plan, layers, context, finishers, say, engine)


class SourcesInput:
    """Pass 1 of a build from sources, and the manifest that accounts for every record read."""

    applied: frozenset[str] = frozenset()  # every layer runs after staging

    def __init__(self, plan: BuildPlan):
        self.plan = plan
        self.adapters = [adapter_class(spec.adapter)(spec) for spec in plan.sources]
        self.inputs = {a.spec.name: a.files() for a in self.adapters}  # fails early on a missing layout
        self.stats = {spec.name: _new_stats() for spec in plan.sources}

    def stage(self, corpus: StagedCorpus, work_dir: Path, progress: bool) -> None:
        """Pass 1; a source that gives no record (every one rejected, or none read) stops the build here, with
        rejects.jsonl complete in the staging folder and the previous build left in place."""
        with open(work_dir / REJECTS_FILE, "w", encoding="utf-8") as rejects:
            _normalize_into(corpus, self.adapters, self.inputs, self.plan.limit, self.stats, rejects, progress,
                            self.outcomes)  # fmt: skip
        failed = [name for name, s in self.stats.items() if s["normalized"] == 0 and s["filtered"] == 0]
        if failed:
            corpus.close_writing()
            corpus.remove()
            lines = [_nothing_normalized(name, self.stats[name]) for name in failed]
            lines.append(
                f"the build stopped: nothing was written to {self.plan.out_dir} (a previous build there is unchanged); "
                f"every reject, with its record: {work_dir / REJECTS_FILE}"
            )
            raise BuildError("\n".join(lines))

    def outcomes(self, adapter: Any) -> Iterator[Outcome]:
        """The outcome of each raw record of ``adapter``'s source, in reading order, computed here."""
        return (outcome_of(adapter, raw) for raw in adapter.iter_raw())

    def manifest(self, configs: dict[str, dict[str, int]], annotations: dict[str, Any]) -> dict[str, Any]:
        params = self.plan.annotations
        annotations = {name: {"params": params.get(name, {}), **info} for name, info in annotations.items()}
        entries = {a.spec.name: _source_entry(a, self.inputs[a.spec.name], self.stats[a.spec.name])
                   for a in self.adapters}  # fmt: skip
        return _manifest(self.plan, entries, configs, annotations)


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
        "first_rejects": [],  # (locator, Reject) of the first FIRST_REJECTS, for errors and warnings
    }


def _normalize_into(
    corpus: StagedCorpus,
    adapters: list,
    inputs: dict[str, list[Path]],
    limit: int | None,
    stats: dict[str, Any],
    rejects: Any,
    progress: bool,
    outcomes: Callable[[Any], Iterator[Outcome]],
) -> None:
    """Pass 1: account for each adapter's ``outcomes`` in reading order (the limit, duplicate ids, filters)
    and stage the records kept; note empty files. Only this needs the whole corpus: engines differ in where
    ``outcomes`` are computed."""
    seen_ids: dict[str, str] = {}
    with tqdm(desc="normalizing", unit="rec", disable=not progress) as bar:
        for adapter in adapters:
            spec = adapter.spec
            source_stats = stats[spec.name]
            filters = spec.options.get("filters") or {}
            files = [p.relative_to(spec.root).as_posix() for p in inputs[spec.name]]
            with_records: set[str] = set()
            read_up_to = len(files)  # files before this position were read to their end
            for outcome in outcomes(adapter):
                if limit is not None and source_stats["read"] >= limit:
                    read_up_to = files.index(outcome.file)
                    break
                with_records.add(outcome.file)
                source_stats["read"] += 1
                bar.update()
                record, reject = outcome.record, outcome.reject
                if record is not None and record["id"] in seen_ids:
                    reject = _duplicate(record, seen_ids, adapter)
                if reject is not None:
                    _reject(rejects, source_stats, spec.name, outcome.locator, outcome.raw_payload(), reject)
                    continue
                seen_ids[record["id"]] = outcome.locator
                reason = filter_reason(record, filters)
                if reason:
                    source_stats["filtered"] += 1
                    source_stats["filtered_by_reason"][reason] += 1
                    continue
                source_stats["normalized"] += 1
                source_stats["splits"][record["split"]] += 1
                corpus.add(record)
            source_stats["empty_files"] = [name for name in files[:read_up_to] if name not in with_records]


@dataclass
class Outcome:
    """What pass 1 makes of one raw record: the normalized record, or why not. ``raw`` (here) or ``payload``
    (computed where the record was read, see ``detached``) give the raw record that rejects.jsonl shows."""

    file: str
    locator: str
    record: dict[str, Any] | None = None
    reject: Reject | None = None
    raw: RawRecord | None = None
    payload: dict[str, Any] | None = None
    file_values: int | None = None  # top-level values of its file read when it was made (set by the Ray engine)

    def raw_payload(self) -> dict[str, Any] | None:
        return _raw_payload(self.raw) if self.raw is not None else self.payload

    def detached(self) -> Outcome:
        """This outcome without the raw value, to send to another process: a record may still turn out to
        be a duplicate, so the payload goes along."""
        return Outcome(self.file, self.locator, self.record, self.reject, payload=self.raw_payload())


def outcome_of(adapter: Any, raw: RawRecord) -> Outcome:
    """Normalize ``raw`` and check it against the schema: the part of pass 1 that needs only the record."""
    try:
        record = adapter.normalize(raw)
        problems = list(record_problems(record))
        if problems:
            raise schema_reject("the normalized record breaks the schema: ", problems)
        return Outcome(raw.file, raw.locator, record, raw=raw)
    except Reject as reject:
        return Outcome(raw.file, raw.locator, reject=reject, raw=raw)
    except Exception as err:  # an input shape no adapter check foresaw: still one reject, not a crash
        reject = Reject(f"the {adapter.spec.adapter} adapter could not read this record: "
                        f"{type(err).__name__}: {err}", kind="adapter_error")  # fmt: skip
        return Outcome(raw.file, raw.locator, reject=reject, raw=raw)


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
    if len(source_stats["first_rejects"]) < FIRST_REJECTS:
        source_stats["first_rejects"].append((locator, reject))
    write_reject(rejects, source, locator, reject, payload)


def _duplicate(record: dict[str, Any], seen_ids: dict[str, str], adapter: Any) -> Reject:
    """The reject of a second copy of an id (the adapter's hint says how a recipe can tell them apart)."""
    first, same = seen_ids[record["id"]], abbreviated(record["id"])
    return Reject(f"duplicate of {first} (same id {same}){adapter.DUPLICATE_HINT}", kind="duplicate")


def _raw_payload(raw: RawRecord) -> dict[str, Any]:
    """The raw record itself when small, else a pointer to it (DEBATE rows are megabytes)."""
    value = None if isinstance(raw.value, ReadFailure) else raw.value
    text = json.dumps(value, ensure_ascii=False, default=str)
    if value is not None and len(text) <= MAX_RAW_IN_REJECTS:
        return {"raw": value}
    return {"raw_pointer": f"{raw.file}#{raw.index}"}  # relative to the source's folder: no local paths leak


def _first_reasons(stats: dict[str, Any]) -> list[str]:
    """The first rejects of a source, one line each: record, field, kind and reason."""
    return [
        f"{locator}" + (f" field '{reject.field}'" if reject.field else "") + f" ({reject.kind}): {reject.reason}"
        for locator, reject in stats["first_rejects"]
    ]


def _nothing_normalized(name: str, stats: dict[str, Any]) -> str:
    if not stats["read"]:
        return f"source '{name}': its files hold no records (empty: {', '.join(stats['empty_files'])})"
    n = stats["rejected"]
    rejected = "its only record was rejected:" if n == 1 else f"all {n} of its records were rejected; the first:"
    return "\n  ".join([f"source '{name}': {rejected}", *_first_reasons(stats)])


def _warnings(stats: dict[str, Any]) -> list[str]:
    """What a build that succeeded should still shout about: a source that lost most of its records."""
    read, rejected = stats["read"], stats["rejected"]
    if not read or rejected / read <= WARN_REJECTED_SHARE:
        return []
    first = "; ".join(_first_reasons(stats))
    return [f"{rejected} of {read} records ({rejected / read:.0%}) were rejected; the first: {first}"]


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
        "read": stats["read"],  # conversations (what the adapter yields as one record)
        "top_level_values": adapter.top_level_values,  # values of the files they came from (lines, elements)
        "normalized": stats["normalized"],
        "rejected": stats["rejected"],
        "rejects_by_kind": dict(sorted(stats["rejects_by_kind"].items())),
        "filtered": stats["filtered"],
        "filtered_by_reason": dict(sorted(stats["filtered_by_reason"].items())),
        "splits": {split: stats["splits"].get(split, 0) for split in SPLITS},
        "warnings": _warnings(stats),
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
        "recipe_hash": plan.recipe_hash,
        "split_method": {"ratios": plan.split_ratios, "hash": "sha256(group key)[:16] as a fraction of 16**16"},
        "totals": totals,
        "sources": sources,
        "configs": {
            name: {"sources": plan.configs[name], "splits": counts, "num_rows": sum(counts.values())}
            for name, counts in config_counts.items()
        },
    }
