"""``coord-bench label``: judge a finished build, as a build whose source is that build and whose layer is the judge.

The build's records are staged once each (configs overlap), the judge's corpus pass judges its sample, and
the engine's second pass writes every config again with ``annotations.coordination.judges`` and
``.consensus``; rows keep their config, split and order. The output is the folder itself (in place) or a new
folder (``--out``), written and swapped in like any build, so a label killed at any point leaves the previous
build whole and the rerun starts clean (see ``folder_swap``); judging costs nothing the second time, the
cache holds every answer. The manifest is the build's, with ``annotations.judge`` added and the recipe's
judge section and hash updated; the labels report (``reports/labels.json``: the judge against the arena's
voters and any human review) and the card follow.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
from pathlib import Path
from typing import Any

from coord_bench.build_folder import (
    BUILD_FOLDERS,
    REJECTS_FILE,
    iter_record_batches,
    max_shard_bytes,
    read_manifest,
)
from coord_bench.folder_swap import recover
from coord_bench.mappers.judge.mapper import JudgeMapper
from coord_bench.mappers.layer import LayerContext
from coord_bench.pipeline import Output, Say, run_pipeline
from coord_bench.plan import recipe_hash
from coord_bench.staging import StagedCorpus

KEPT = (REJECTS_FILE, *BUILD_FOLDERS)  # what a labelled build keeps of the build: the configs are rewritten


class BuiltFolderInput:
    """Pass 1 of a label: the records of a finished build, and its manifest with the judge's entry added."""

    applied: frozenset[str] = frozenset()

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.built = read_manifest(self.folder)

    def stage(self, corpus: StagedCorpus, work_dir: Path, progress: bool) -> None:
        for name in KEPT:
            path = self.folder / name
            if path.is_dir() and not name.startswith("."):
                shutil.copytree(path, work_dir / name)
            elif path.is_file():
                shutil.copy2(path, work_dir / name)
        self.stage_records(corpus)

    def stage_records(self, corpus: StagedCorpus) -> None:
        for batch in iter_record_batches(self.folder, self.built):
            for record in batch:
                corpus.add(record)

    def manifest(self, configs: dict[str, dict[str, int]], annotations: dict[str, Any]) -> dict[str, Any]:
        manifest = copy.deepcopy(self.built)
        manifest.setdefault("annotations", {}).update(annotations)
        if manifest.get("recipe") is not None and "judge" in annotations:
            manifest["recipe"].setdefault("annotations", {})["judge"] = {
                "enabled": True, **annotations["judge"]["params"]
            }  # fmt: skip
            manifest["recipe_hash"] = recipe_hash(manifest["recipe"])
        for config, split_counts in configs.items():
            manifest["configs"][config]["splits"] = split_counts
            manifest["configs"][config]["num_rows"] = sum(split_counts.values())
        return manifest


def recovered_manifest(folder: Path, say: Say | None = None) -> dict[str, Any]:
    """The manifest of the build in ``folder``, after repairing a build or label killed while swapping it in."""
    recover(Path(folder).absolute(), say or (lambda _message: None))
    return read_manifest(folder)


def label_build(
    folder: str | Path,
    params: dict[str, Any],
    out: str | Path | None = None,
    dry_run: bool = False,
    progress: bool = True,
    say: Say | None = None,
) -> dict[str, Any]:
    """Judge the build in ``folder``; write it to ``out`` (default: in place). Returns the new manifest, or
    with ``dry_run`` the estimate of what labelling would send and cost (nothing is sent)."""
    from coord_bench.card import write_card
    from coord_bench.label_report import write_labels_report

    folder = Path(folder).absolute()
    recovered_manifest(folder, say)
    records = BuiltFolderInput(folder)
    # the budget belongs to the build being labelled, so `--out` to a new folder cannot start a fresh one
    judge = JudgeMapper(params, progress=progress, check_key=not dry_run, folder=folder)
    if dry_run:
        return _estimate(records, judge)
    target = Path(out).absolute() if out else folder
    output = Output(target, {name: info["sources"] for name, info in records.built["configs"].items()},
                    max_shard_bytes(records.built))  # fmt: skip
    load_path = f"./{target.name}"  # the card names the folder asked for, not the staging folder
    return run_pipeline(
        records,
        output,
        [judge],
        LayerContext(budget_folder=folder, progress=progress),
        finishers=[write_labels_report, lambda work_dir, manifest: write_card(work_dir, manifest, load_path)],
        say=say,
    )


def _estimate(records: BuiltFolderInput, judge: JudgeMapper) -> dict[str, Any]:
    """What labelling would send and cost: the judge plans its sample on a scratch copy of the records."""
    scratch = Path(tempfile.mkdtemp(prefix="coord_bench_label_"))
    try:
        corpus = StagedCorpus(scratch / ".staging")
        records.stage_records(corpus)
        corpus.close_writing()
        judge.plan(corpus)
        judge.runner.resolve_prices_sync()
        return judge.estimate()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
