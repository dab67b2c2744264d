"""Human review, back in: ``coord-bench review-import DIR FILE...`` validates annotators' files and stores their labels.

Each file is a filled-in export of ``review-sample`` (CSV or JSONL, see ``coord_bench.review``). The annotator
is the row's ``annotator`` cell, else the file's name without its suffix. Every problem of every file (an
unknown conversation id, a missing column or value, a value outside the form, a conversation labelled twice
by one annotator) is collected and reported with its file and line; if there is any, nothing is stored.

The labels are kept twice, both derived from the annotators' files, which are the durable record:

- ``DIR/reviews/human_labels.jsonl``: one line per label (``id`` plus the label item), loadable with
  ``datasets.load_dataset("json", ...)``; a new import replaces the labels of the annotators it names and
  keeps the others', so annotators can come back one at a time. ``reviews/`` is not a folder a build writes,
  so a rebuild into DIR keeps it (``folder_swap``) and merges it into the new records (``build_dataset``);
- in the records, as ``annotations.coordination.labels`` items with ``human:<annotator>`` provenance: the build
  is rewritten like ``coord-bench label`` rewrites it (staged, then swapped in whole), then its labels report
  (``reports/labels.json``) and card follow.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from coord_bench.build_folder import iter_record_batches, max_shard_bytes
from coord_bench.labels import coordination_of, make_label, with_labels
from coord_bench.mappers.layer import Layer, LayerContext
from coord_bench.review import FORM, PAIRWISE

STORE = "reviews/human_labels.jsonl"  # not a build folder: a rebuild carries it over (folder_swap)
HUMAN = "human:"
ANNOTATOR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]*$")
MAX_SHOWN = 30


class ReviewError(ValueError):
    """Invalid review files: every problem, one per line, with its file and line."""


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """(line, row, problem) per row of a CSV or JSONL file; ``line`` is where the row starts (the header is 1)."""
    if path.suffix.lower() == ".jsonl":
        with open(path, encoding="utf-8") as handle:
            for number, text in enumerate(handle, 1):
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as err:
                    yield number, None, f"not JSON: {err.msg}"
                    continue
                yield (number, row, None) if isinstance(row, dict) else (number, None, "expected a JSON object")
        return
    if path.suffix.lower() != ".csv":
        raise ReviewError(f"{path}: expected a .csv or .jsonl review file")
    with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: a spreadsheet's byte-order mark
        reader = csv.DictReader(handle)
        start = 2
        for row in reader:
            extra = row.pop(None, None)
            yield start, row, (f"{len(extra)} cell(s) more than the header has" if extra else None)
            start = reader.line_num + 1


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def parse_files(
    paths: list[Path], known: dict[str, str]
) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], list[str]]:
    """Validate ``paths`` against the form and the build (``known``: id -> protocol.interaction).

    Returns (annotator -> conversation id -> its labels, problems)."""
    labels: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(dict)
    problems: list[str] = []
    seen: dict[tuple[str, str], str] = {}
    for path in paths:
        rows = 0
        for line, row, problem in read_rows(Path(path)):
            where = f"{path}, line {line}"
            if problem:
                problems.append(f"{where}: {problem}")
                continue
            rows += 1
            annotator = _text(row.get("annotator")) or Path(path).stem
            if not ANNOTATOR.match(annotator):
                problems.append(f"{where}: annotator id {annotator!r} must be letters, digits and _.@- only")
                continue
            row_id = _text(row.get("id"))
            if not row_id:
                problems.append(f"{where}: missing field 'id'")
                continue
            if row_id not in known:
                problems.append(f"{where}: unknown conversation id {row_id!r}: not in this build")
                continue
            if (annotator, row_id) in seen:
                first = seen[annotator, row_id]
                problems.append(f"{where}: {annotator} labels {row_id} a second time (first at {first})")
                continue
            seen[annotator, row_id] = where
            found, row_problems = _row_labels(row, annotator, known[row_id] == PAIRWISE)
            problems += [f"{where}: {p}" for p in row_problems]
            labels[annotator][row_id] = found
        if not rows:
            problems.append(f"{path}: no review rows")
    return labels, problems


def _row_labels(row: dict[str, Any], annotator: str, pairwise: bool) -> tuple[list[dict[str, Any]], list[str]]:
    found, problems = [], []
    note = _text(row.get("notes")) or None
    for field in FORM:
        if field.name not in row:
            problems.append(f"missing field {field.name!r} (a column of the review form)")
            continue
        value = _text(row[field.name])
        applies = pairwise or not field.pairwise_only
        if not value:
            if applies and field.required:
                problems.append(f"missing value for {field.name!r}: expected one of {', '.join(field.values)}")
            continue
        if not applies:
            problems.append(f"{field.name!r} is for pairwise conversations only; this one is not: leave it empty")
            continue
        canonical = {v.casefold(): v for v in field.values}.get(value.casefold())
        if canonical is None:
            problems.append(f"invalid value {value!r} for {field.name!r}: expected one of {', '.join(field.values)}")
            continue
        found.append(make_label(field.name, canonical, f"{HUMAN}{annotator}", reason=note))
    return found, problems


def merged_store(folder: Path, new: dict[str, dict[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """The store's lines after this import: the stored labels of annotators not in ``new``, then ``new``'s."""
    names = {f"{HUMAN}{a}" for a in new}
    lines = [item for item in stored_labels(folder) if item["provenance"] not in names]
    lines += [{"id": i, **label} for by_id in new.values() for i, items in by_id.items() for label in items]
    return sorted(lines, key=lambda item: (item["id"], item["provenance"], item["name"]))


def write_store(folder: Path, lines: list[dict[str, Any]]) -> None:
    path = Path(folder) / STORE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in lines), encoding="utf-8")


def stored_labels(folder: Path) -> list[dict[str, Any]]:
    """The store's lines in ``folder`` (none when nothing was imported)."""
    path = Path(folder) / STORE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def by_conversation(lines: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in lines:
        out[item["id"]].append({k: v for k, v in item.items() if k != "id"})
    return out


class HumanLabels(Layer):
    """Puts the stored human labels into ``annotations.coordination.labels``, replacing earlier human ones."""

    name = "human_review"
    reads = ("annotations",)
    writes = ("annotations",)

    def __init__(self, labels: dict[str, list[dict[str, Any]]], files: list[str]):
        self.labels, self.files = labels, files
        self.applied: set[str] = set()

    def apply(self, batch: list[dict[str, Any]]) -> None:
        for record in batch:
            annotations = record["annotations"]
            mine = self.labels.get(record["id"], [])
            if annotations.get("coordination") is None and not mine:
                continue
            coordination = coordination_of(annotations)
            with_labels(coordination, HUMAN, mine)
            coordination["labels"] = coordination["labels"] or None
            if mine:
                self.applied.add(record["id"])

    def describe(self) -> dict[str, Any]:
        annotators = sorted({item["provenance"][len(HUMAN) :] for items in self.labels.values() for item in items})
        return {
            "annotators": annotators,
            "conversations": len(self.applied),
            "not_in_build": len(set(self.labels) - self.applied),  # stored for ids this build does not hold
            "store": STORE,
            "from": self.files,
        }


def review_import(folder: str | Path, paths: list[str | Path], say=None) -> dict[str, Any]:
    """Validate ``paths``, store their labels, rewrite the build with them, write its labels report and card."""
    from coord_bench.card import write_card
    from coord_bench.label import BuiltFolderInput, recovered_manifest
    from coord_bench.label_report import write_labels_report
    from coord_bench.pipeline import Output, run_pipeline

    folder = Path(folder).absolute()
    manifest = recovered_manifest(folder, say)
    known = {
        r["id"]: r["protocol"]["interaction"]
        for batch in iter_record_batches(folder, manifest, ["id", "protocol"])
        for r in batch
    }
    new, problems = parse_files([Path(p) for p in paths], known)
    if problems:
        more = len(problems) - MAX_SHOWN
        shown = "\n".join(problems[:MAX_SHOWN]) + (f"\n... and {more} more" if more > 0 else "")
        raise ReviewError(f"{len(problems)} problem(s) in the review file(s); nothing was stored:\n{shown}")
    lines = merged_store(folder, new)
    records = BuiltFolderInput(folder)
    output = Output(folder, {name: info["sources"] for name, info in manifest["configs"].items()},
                    max_shard_bytes(manifest))  # fmt: skip
    return run_pipeline(
        records,
        output,
        [HumanLabels(by_conversation(lines), [Path(p).name for p in paths])],
        LayerContext(budget_folder=folder, progress=False),
        finishers=[
            lambda work_dir, _built: write_store(work_dir, lines),
            write_labels_report,
            lambda work_dir, built: write_card(work_dir, built, f"./{folder.name}"),
        ],
        say=say,
    )
