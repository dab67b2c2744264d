"""The build: read every source, normalize or reject each record, write Parquet per config, the card and the manifest.

Records stream from the source files through the adapter and the schema check straight into the shard
writers, so memory stays bounded by a batch. Every record read ends up counted as normalized or rejected.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from coord_bench import __version__
from coord_bench.filters import filter_reason
from coord_bench.recipe import recipe_hash
from coord_bench.schema import record_errors, schema_version
from coord_bench.sources import RawRecord, Reject, SourceSpec, adapter_class
from coord_bench.sources.readers import ReadFailure
from coord_bench.splits import DEFAULT_RATIOS, SPLITS
from coord_bench.writer import ConfigWriters

DEFAULT_CONFIG = "all"
MANIFEST_FILE = "build_manifest.json"
REJECTS_FILE = "rejects.jsonl"
MAX_RAW_IN_REJECTS = 64 * 1024  # larger raw records are referenced by file and index instead of copied


class BuildError(RuntimeError):
    """The build cannot start or finish; the message says why."""


@dataclass
class BuildPlan:
    """Everything a build needs; the CLI and the datasets builder both make one."""

    sources: list[SourceSpec]
    out_dir: Path
    configs: dict[str, list[str]] = field(default_factory=dict)  # config name -> source names
    limit: int | None = None  # read at most this many raw records per source
    annotate: list[str] = field(default_factory=list)
    max_shard_bytes: int = 100 * 1024 * 1024
    default_config: str = DEFAULT_CONFIG
    split_ratios: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RATIOS))
    recipe: dict[str, Any] | None = None  # the resolved recipe, recorded in the manifest and the card

    def __post_init__(self) -> None:
        for spec in self.sources:
            spec.options["split_ratios"] = self.split_ratios
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise BuildError(f"source names must be unique, got {names}")
        if not self.configs:
            self.configs = {self.default_config: names, **{name: [name] for name in names}}
        for config, members in self.configs.items():
            if config == "data":
                raise BuildError("'data' cannot be a config name (the Hub reserves it)")
            unknown = sorted(set(members) - set(names))
            if unknown:
                raise BuildError(f"config '{config}' names unknown sources {unknown}; sources are {names}")


def run_build(plan: BuildPlan, progress: bool = True) -> dict[str, Any]:
    """Run the build described by ``plan`` and return the manifest it wrote."""
    adapters = [adapter_class(spec.adapter)(spec) for spec in plan.sources]
    inputs = {adapter.spec.name: adapter.files() for adapter in adapters}  # fails early on a missing layout
    out_dir = _prepare_out_dir(plan.out_dir, plan.configs)
    writers = ConfigWriters(out_dir, plan.configs, plan.max_shard_bytes)
    seen_ids: dict[str, str] = {}
    source_stats: dict[str, Any] = {}
    with (
        open(out_dir / REJECTS_FILE, "w", encoding="utf-8") as rejects,
        tqdm(desc="normalizing", unit="rec", disable=not progress) as bar,
    ):
        for adapter in adapters:
            spec = adapter.spec
            stats = {
                "read": 0,
                "normalized": 0,
                "rejected": 0,
                "filtered": 0,
                "rejects_by_kind": Counter(),
                "filtered_by_reason": Counter(),
                "splits": Counter(),
            }
            filters = spec.options.get("filters") or {}
            for raw in adapter.iter_raw():
                if plan.limit is not None and stats["read"] >= plan.limit:
                    break
                stats["read"] += 1
                bar.update()
                try:
                    record = adapter.normalize(raw)
                    _check(record, seen_ids)
                except Reject as reject:
                    stats["rejected"] += 1
                    stats["rejects_by_kind"][reject.kind] += 1
                    rejects.write(json.dumps(_reject_entry(spec, raw, reject), ensure_ascii=False, default=str) + "\n")
                    continue
                seen_ids[record["id"]] = raw.locator
                reason = filter_reason(record, filters)
                if reason:
                    stats["filtered"] += 1
                    stats["filtered_by_reason"][reason] += 1
                    continue
                stats["normalized"] += 1
                stats["splits"][record["split"]] += 1
                writers.add(record)
            source_stats[spec.name] = _source_entry(spec, inputs[spec.name], stats)
    config_counts = writers.close()
    manifest = _manifest(plan, source_stats, config_counts)
    (out_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    from coord_bench.card import write_card

    write_card(out_dir, manifest)
    return manifest


def _check(record: dict[str, Any], seen_ids: dict[str, str]) -> None:
    """Reject records the schema refuses and second copies of an id."""
    errors = list(record_errors(record))
    if errors:
        raise Reject("the normalized record breaks the schema: " + "; ".join(errors[:5]), kind="schema")
    if record["id"] in seen_ids:
        raise Reject(f"duplicate of {seen_ids[record['id']]} (same id {record['id']})", kind="duplicate")


def _prepare_out_dir(out_dir: Path, configs: dict[str, list[str]]) -> Path:
    """Create the output folder; replace an earlier build there, but never delete anything else."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (out_dir / MANIFEST_FILE).exists():
            raise BuildError(
                f"{out_dir} exists and is not a coord_bench build (no {MANIFEST_FILE}); choose an empty or new folder"
            )
        old = json.loads((out_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
        for config in set(old.get("configs", {})) | set(configs):
            shutil.rmtree(out_dir / config, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def _reject_entry(spec: SourceSpec, raw: RawRecord, reject: Reject) -> dict[str, Any]:
    entry = {
        "source": spec.name,
        "locator": raw.locator,
        "kind": reject.kind,
        "field": reject.field,
        "reason": reject.reason,
    }
    value = None if isinstance(raw.value, ReadFailure) else raw.value
    text = json.dumps(value, ensure_ascii=False, default=str)
    if value is not None and len(text) <= MAX_RAW_IN_REJECTS:
        entry["raw"] = value
    else:
        entry["raw_pointer"] = f"{spec.root / raw.file}#{raw.index}"
    return entry


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _source_entry(spec: SourceSpec, files: list[Path], stats: dict[str, Any]) -> dict[str, Any]:
    return {
        "adapter": spec.adapter,
        "dataset": spec.dataset,
        "revision": spec.revision,
        "license": adapter_class(spec.adapter).license,
        "files": [
            {"path": p.relative_to(spec.root).as_posix(), "bytes": p.stat().st_size, "sha256": _sha256(p)}
            for p in files
        ],
        "read": stats["read"],
        "normalized": stats["normalized"],
        "rejected": stats["rejected"],
        "rejects_by_kind": dict(sorted(stats["rejects_by_kind"].items())),
        "filtered": stats["filtered"],
        "filtered_by_reason": dict(sorted(stats["filtered_by_reason"].items())),
        "splits": {split: stats["splits"].get(split, 0) for split in SPLITS},
    }


def _manifest(plan: BuildPlan, sources: dict[str, Any], config_counts: dict[str, dict[str, int]]) -> dict[str, Any]:
    totals = {key: sum(s[key] for s in sources.values()) for key in ("read", "normalized", "rejected", "filtered")}
    return {
        "coord_bench_version": __version__,
        "schema_version": schema_version(),
        "built_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "default_config": plan.default_config,
        "limit_per_source": plan.limit,
        "annotations": plan.annotate,
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
