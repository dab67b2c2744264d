"""Judge an existing build (``coord-bench label``) and export a sample for manual review (``review-sample``).

``label_build`` reads every distinct record of a built folder (configs overlap: ``all`` repeats the others),
judges them with ``JudgeMapper`` and re-writes every config's shards with the new
``annotations.coordination.judges`` and ``.consensus``, in place or into a new folder; the manifest's
``annotations.judge`` and the card follow. Rows keep their split and their order.

Crash safety: the labelled shards, manifest and card are written into ``<target>/.label_tmp/new`` first; then
``swap.json`` is written (the commit point) and each config is swapped in, the manifest last. A label killed
before the commit point leaves scratch files that the next ``label`` removes; one killed during the swap is
finished by the next ``label`` (only if the folder's manifest is still the one the swap replaces), so a config
is never lost. Judging costs nothing the second time: the cache holds every answer.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from coord_bench.build_folder import MANIFEST_FILE
from coord_bench.dataset_dir import read_manifest, shard_files
from coord_bench.mappers.judge.mapper import JudgeMapper
from coord_bench.mappers.judge.prompt import render_conversation
from coord_bench.mappers.judge.sampling import native_outcome, stratified_sample, stratum_of
from coord_bench.schema import record_errors
from coord_bench.staging import StagedCorpus

LABEL_TMP = ".label_tmp"
SWAP_FILE = "swap.json"
LIGHT_COLUMNS = ["id", "source", "source_config", "outcome", "protocol", "annotations"]


def _iter_batches(folder: Path, manifest: dict[str, Any], columns: list[str] | None = None):
    """Every distinct record of the build (by id), a batch at a time, the default config first."""
    configs = sorted(manifest["configs"], key=lambda c: c != manifest.get("default_config"))
    seen: set[str] = set()
    for config in configs:
        for path in shard_files(folder, config):
            for batch in pq.ParquetFile(path).iter_batches(batch_size=200, columns=columns):
                rows = [r for r in batch.to_pylist() if r["id"] not in seen]
                seen.update(r["id"] for r in rows)
                if rows:
                    yield rows


def _max_shard_bytes(manifest: dict[str, Any]) -> int:
    from coord_bench.writer import parse_size

    return parse_size(((manifest.get("recipe") or {}).get("output") or {}).get("max_shard_size", "100MB"))


def label_build(
    folder: str | Path,
    params: dict[str, Any],
    out: str | Path | None = None,
    dry_run: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Judge the build in ``folder``; write it to ``out`` (default: in place). Returns the new manifest, or
    with ``dry_run`` the estimate of what labelling would send and cost (nothing is sent)."""
    from coord_bench.card import CARD_FILE, render_card
    from coord_bench.recipe import recipe_hash
    from coord_bench.writer import ConfigWriters

    folder = Path(folder)
    finish_interrupted_label(folder)
    manifest = read_manifest(folder)
    target = Path(out) if out else folder
    # the budget belongs to the build being labelled, so `--out` to a new folder cannot start a fresh one
    mapper = JudgeMapper(params, progress=progress, check_key=not dry_run, folder=folder)
    work = target
    if not dry_run and target != folder:
        if target.exists() and any(target.iterdir()):
            if not (target / MANIFEST_FILE).exists():
                raise FileExistsError(f"{target} exists and is not a coord_bench build; choose an empty or new folder")
            shutil.rmtree(target)
        shutil.copytree(folder, target, ignore=shutil.ignore_patterns(*manifest["configs"], ".staging", ".label*"))
    replaced_manifest = _sha256(target / MANIFEST_FILE)
    scratch = Path(tempfile.mkdtemp(prefix="coord_bench_label_")) if dry_run else work
    corpus = StagedCorpus(scratch / ".label_staging")
    try:
        for batch in _iter_batches(folder, manifest):
            for record in batch:
                corpus.add(record)
        corpus.close_writing()
        if dry_run:
            mapper.plan(corpus)
            mapper.resolve_prices_sync()
            return mapper.estimate()
        mapper.prepare(corpus)
    finally:
        corpus.remove()
        if dry_run:
            shutil.rmtree(scratch, ignore_errors=True)

    staging = target / LABEL_TMP
    shutil.rmtree(staging, ignore_errors=True)
    new = staging / "new"
    counts = {}
    for config, info in manifest["configs"].items():
        writers = ConfigWriters(new, {config: info["sources"]}, _max_shard_bytes(manifest))
        for path in shard_files(folder, config):
            for batch in pq.ParquetFile(path).iter_batches(batch_size=200):
                rows = batch.to_pylist()
                mapper.apply(rows)
                for record in rows:
                    errors = list(record_errors(record))
                    if errors:
                        raise ValueError(f"labelled record {record['id']} breaks the schema: {'; '.join(errors[:3])}")
                    writers.add(record)
        counts[config] = writers.close()[config]

    saved = mapper.recorded_params()  # base_url without userinfo or query
    manifest.setdefault("annotations", {})["judge"] = {"params": saved, **mapper.describe()}
    if manifest.get("recipe") is not None:
        manifest["recipe"].setdefault("annotations", {})["judge"] = {"enabled": True, **saved}
        manifest["recipe_hash"] = recipe_hash(manifest["recipe"])
    for config, split_counts in counts.items():
        manifest["configs"][config]["splits"] = split_counts
        manifest["configs"][config]["num_rows"] = sum(split_counts.values())
    (new / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    # the card's sizes and content fingerprint come from the NEW shards (else `load_dataset` would keep serving
    # the unlabelled rows from its cache); its figures from the target's report/
    card = render_card(manifest, f"./{target.name}", target, shards_dir=new)
    (new / CARD_FILE).write_text(card, encoding="utf-8")
    swap = {"configs": list(manifest["configs"]), "replaces_manifest_sha256": replaced_manifest}
    (staging / f"{SWAP_FILE}.part").write_text(json.dumps(swap), encoding="utf-8")
    os.replace(staging / f"{SWAP_FILE}.part", staging / SWAP_FILE)  # the commit point
    _swap_in(target)
    return manifest


def _sha256(path: Path) -> str | None:
    from coord_bench.locate import file_sha256

    return file_sha256(path) if path.is_file() else None


def _swap_in(target: Path) -> None:
    """Move the labelled configs, card and manifest of ``.label_tmp/new`` into ``target``; safe to repeat after
    a kill at any step (a step already done is skipped), the manifest moves last."""
    from coord_bench.card import CARD_FILE

    staging = target / LABEL_TMP
    new, old = staging / "new", staging / "old"
    old.mkdir(exist_ok=True)
    for config in json.loads((staging / SWAP_FILE).read_text(encoding="utf-8"))["configs"]:
        if not (new / config).exists():
            continue  # swapped in before the kill
        if (target / config).exists():
            shutil.rmtree(old / config, ignore_errors=True)
            (target / config).replace(old / config)
        (new / config).replace(target / config)
    for name in (CARD_FILE, MANIFEST_FILE):
        if (new / name).exists():
            (new / name).replace(target / name)
    shutil.rmtree(staging)


def finish_interrupted_label(folder: Path) -> None:
    """Finish a label killed while it swapped its shards into ``folder``, or remove the scratch files of one
    killed before (the folder is untouched then). A swap whose manifest no longer matches (the folder was
    rebuilt since) is discarded."""
    staging = Path(folder) / LABEL_TMP
    if not staging.exists():
        return
    swap = staging / SWAP_FILE
    if swap.exists() and (staging / "new" / MANIFEST_FILE).exists():
        replaces = json.loads(swap.read_text(encoding="utf-8"))["replaces_manifest_sha256"]
        if replaces == _sha256(Path(folder) / MANIFEST_FILE):
            _swap_in(Path(folder))
            return
    shutil.rmtree(staging)


REVIEW_FIELDS = [
    "id",
    "source",
    "source_config",
    "split",
    "stratum",
    "native_outcome",
    "n_turns",
    "rules_success",
    "rules_agreement_level",
    "rules_efficiency",
    "judge_statuses",
    "judge_success_score",
    "judge_agreement_level",
    "judge_preferred",
    "judge_rationale",
    "conversation",
    "review_success",
    "review_agreement_level",
    "review_notes",
]


def review_sample(
    folder: str | Path, n: int, out: str | Path, seed: int = 0, judged_only: bool = False, token_budget: int = 600
) -> int:
    """Write a stratified sample of ``n`` conversations (same design as the judge's) to a CSV for manual
    checking: the labels next to a compact transcript, and empty ``review_*`` columns to fill in."""
    from coord_bench.mappers.tokens import load_encoding

    folder = Path(folder)
    manifest = read_manifest(folder)
    rows = []
    for batch in _iter_batches(folder, manifest, LIGHT_COLUMNS):
        for record in batch:
            judges = ((record["annotations"] or {}).get("coordination") or {}).get("judges") or []
            if judged_only and not any(j["status"] == "ok" for j in judges):
                continue
            rows.append((record["id"], stratum_of(record)))
    order, _ = stratified_sample(rows, n, seed)
    wanted = set(order)
    found: dict[str, dict[str, Any]] = {}
    encoding = load_encoding()[0]
    for batch in _iter_batches(folder, manifest):
        for record in batch:
            if record["id"] in wanted:
                found[record["id"]] = _review_row(record, encoding, token_budget)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=REVIEW_FIELDS)
        writer.writeheader()
        for row_id in sorted(order, key=lambda i: (found[i]["stratum"], i)):
            writer.writerow(found[row_id])
    return len(order)


def _review_row(record: dict[str, Any], encoding: Any, token_budget: int) -> dict[str, Any]:
    coordination = (record["annotations"] or {}).get("coordination") or {}
    rules = coordination.get("rules") or {}
    judges = coordination.get("judges") or []
    consensus = coordination.get("consensus") or {}
    ok = [j for j in judges if j["status"] == "ok"]
    conversation, _, _ = render_conversation(record, encoding, token_budget)
    return {
        "id": record["id"],
        "source": record["source"],
        "source_config": record["source_config"] or "",
        "split": record["split"],
        "stratum": stratum_of(record),
        "native_outcome": native_outcome(record),
        "n_turns": record["n_turns"],
        "rules_success": rules.get("success"),
        "rules_agreement_level": rules.get("agreement_level"),
        "rules_efficiency": rules.get("efficiency"),
        "judge_statuses": ";".join(f"{j['model']}={j['status']}" for j in judges),
        "judge_success_score": consensus.get("success_score"),
        "judge_agreement_level": consensus.get("agreement_level"),
        "judge_preferred": consensus.get("preferred"),
        "judge_rationale": ok[0]["rationale"] if ok else "",
        "conversation": conversation,
        "review_success": "",
        "review_agreement_level": "",
        "review_notes": "",
    }
