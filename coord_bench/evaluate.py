"""``coord-bench evaluate``: score the benchmark tasks' baselines, or a user's own predictions, on a build.

Every record is read once; each task keeps its examples' small features. A task the build's data cannot
support is listed with the reason. Baselines are fitted on train, tuned on validation and scored on test;
the results, with their intervals, the split sizes, the code version and the build's recipe hash, go to
``reports/benchmark.json``, which is checked against ``schemas/benchmark.schema.json`` before it is written.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from coord_bench import __version__
from coord_bench.build_folder import iter_record_batches, read_manifest
from coord_bench.tasks import TASKS
from coord_bench.tasks.base import Example, PredictionError, Task, TaskContext, split_examples
from coord_bench.tasks.metrics import BOOTSTRAP_SAMPLES, BOOTSTRAP_SEED, format_estimate

BENCHMARK_REPORT = "reports/benchmark.json"
SCHEMA_FILE = "benchmark.schema.json"


def _context(folder: Path, manifest: dict[str, Any], progress: bool) -> TaskContext:
    """Tasks embed with the build's embeddings settings (model, cache) and the backend and precision it used
    (torch fp32 before builds recorded them), so the build's vectors are reused."""

    def make():
        from coord_bench.mappers.embeddings import BUNDLED_MODEL, Embedder

        used = (manifest.get("annotations") or {}).get("embeddings") or {}
        params = used.get("params") or {}
        cache = params.get("cache_dir")
        return Embedder(params.get("model") or BUNDLED_MODEL, batch_size=int(params.get("batch_size") or 64),
                        cache_dir=Path(cache) if cache else None, progress=progress,
                        backend=used.get("backend") or "torch", precision=used.get("precision") or "fp32")  # fmt: skip

    return TaskContext(make, folder, frozenset(manifest.get("annotations") or {}))


def unknown_tasks(names: list[str]) -> list[str]:
    return [n for n in names if n not in TASKS]


def collect(folder: Path, names: list[str], progress: bool = True) -> tuple[dict[str, Any], dict[str, Task], dict]:
    """The build's manifest, the tasks, and each task's examples (every record read once)."""
    unknown = unknown_tasks(names)
    if unknown:
        raise ValueError(f"unknown task(s) {', '.join(unknown)}; tasks: {', '.join(TASKS)}")
    manifest = read_manifest(folder)
    context = _context(folder, manifest, progress)
    tasks = {name: TASKS[name](context) for name in names}
    examples: dict[str, list[Example]] = {name: [] for name in names}
    total = manifest.get("totals", {}).get("normalized")
    with tqdm(total=total, desc="reading the build", unit="rec", disable=not progress) as bar:
        for batch in iter_record_batches(folder, manifest):
            for record in batch:
                for name, task in tasks.items():
                    example = task.example(record)
                    if example is not None:
                        examples[name].append(example)
            bar.update(len(batch))
    return manifest, tasks, examples


def _sizes(examples: list[Example]) -> dict[str, int]:
    train, validation, test = split_examples(examples)
    return {"train": len(train), "validation": len(validation), "test": len(test)}


def score_task(task: Task, examples: list[Example]) -> dict[str, Any]:
    """The report entry of one task: unsupported with the reason, or every baseline's result rows on test."""
    entry = {"definition": task.definition, "prediction_fields": task.prediction_fields, "splits": _sizes(examples)}
    reason = task.unsupported(examples)
    if reason:
        return {"status": "unsupported", "reason": reason, **entry, "results": []}
    train, validation, test = split_examples(examples)
    results = []
    for predictor, fit in task.baselines().items():
        try:
            predictions = fit(train, validation, test)
        except PredictionError as why:  # a baseline with nothing to go on here (no labelled train rows, ...)
            results.append({"predictor": predictor, "subset": "all", "metrics": {}, "reason": str(why)})
            continue
        settings = getattr(predictions, "settings", {})
        for row in task.score(test, predictions):
            setting = {**settings.get(row["subset"], {}), **(row.get("setting") or {})}
            results.append({"predictor": predictor, **row, **({"setting": setting} if setting else {})})
    return {"status": "ok", "reason": None, **entry, "results": results}


def run_benchmark(folder: Path, names: list[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """Score every baseline of the named tasks (default: all) on the build in ``folder``; write and return
    ``reports/benchmark.json``."""
    folder = Path(folder)
    manifest, tasks, examples = collect(folder, list(names or TASKS), progress)
    report = {
        "coord_bench_version": __version__,
        "recipe_hash": manifest.get("recipe_hash"),
        "built_at": manifest.get("built_at"),
        "bootstrap": {"samples": BOOTSTRAP_SAMPLES, "seed": BOOTSTRAP_SEED, "resampled": "split groups",
                      "interval": "95% percentile"},  # fmt: skip
        "tasks": {name: score_task(task, examples[name]) for name, task in tasks.items()},
    }
    _check(report)
    path = folder / BENCHMARK_REPORT
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return report


def _check(report: dict[str, Any]) -> None:
    from jsonschema import Draft202012Validator

    from coord_bench.schema import load_schema

    errors = sorted(Draft202012Validator(load_schema(SCHEMA_FILE)).iter_errors(report), key=lambda e: e.path)
    if errors:
        where = "/".join(map(str, errors[0].absolute_path))
        raise ValueError(f"the benchmark report breaks {SCHEMA_FILE} at '{where}': {errors[0].message}")


def read_predictions(path: Path, task: Task, test_ids: set[str]) -> dict[str, dict[str, Any]]:
    """A user's predictions (JSONL, .jsonl.gz or Parquet: ``id`` plus the task's fields), one per test id.

    Refuses, naming the first offending line: a line that is not a JSON object, a missing or unknown id, an id
    given twice, a field of the wrong type; and a file that leaves test ids without a prediction."""
    found: dict[str, dict[str, Any]] = {}
    for line, value in _lines(Path(path)):
        where = f"{path}, line {line}"
        if not isinstance(value, dict):
            raise PredictionError(f"{where}: expected a JSON object with 'id', found {type(value).__name__}")
        row_id = value.get("id")
        if not isinstance(row_id, str):
            raise PredictionError(f"{where}: field 'id': expected the string id of a test row, found {row_id!r}")
        if row_id not in test_ids:
            raise PredictionError(f"{where}: id {row_id!r} is not a test example of task {task.name}")
        if row_id in found:
            raise PredictionError(f"{where}: id {row_id!r} is predicted twice")
        try:
            found[row_id] = task.check_prediction({k: v for k, v in value.items() if k != "id"})
        except PredictionError as why:
            raise PredictionError(f"{where}: {why}") from None
    missing = sorted(test_ids - set(found))
    if missing:
        raise PredictionError(f"{path}: {len(missing)} test example(s) of task {task.name} have no prediction, "
                              f"e.g. {', '.join(missing[:3])}")  # fmt: skip
    return found


def _lines(path: Path):
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for number, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield number, row
        return
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                yield number, json.loads(text)
            except ValueError as err:
                raise PredictionError(f"{path}, line {number}: not JSON ({err})") from None


def score_predictions(folder: Path, name: str, path: Path, progress: bool = True) -> dict[str, Any]:
    """Score the predictions in ``path`` for task ``name`` on the test split of the build in ``folder``."""
    _, tasks, examples = collect(Path(folder), [name], progress)
    task = tasks[name]
    reason = task.unsupported(examples[name])
    if reason:
        raise ValueError(f"task {name} cannot be scored on {folder}: {reason}")
    _, _, test = split_examples(examples[name])
    predictions = read_predictions(path, task, {e.id for e in test})
    return {"task": name, "splits": _sizes(examples[name]), "results": task.score(test, predictions)}


def write_predictions(path: Path, predictions: dict[str, dict[str, Any]]) -> None:
    """Predictions in the file format ``evaluate --predictions`` reads (JSONL, one object per id)."""
    with open(path, "w", encoding="utf-8") as handle:
        for row_id, prediction in sorted(predictions.items()):
            handle.write(json.dumps({"id": row_id, **prediction}) + "\n")


def card_section(folder: Path) -> str:
    """The card's "Benchmark" section, rendered from ``reports/benchmark.json`` (no number typed by hand)."""
    path = Path(folder) / BENCHMARK_REPORT
    parts = ["## Benchmark", ""]
    if not path.is_file():
        tasks = ", ".join(f"`{name}`" for name in TASKS)
        return "\n".join(parts + [f"Tasks: {tasks}. This build has no scores yet: `coord-bench evaluate DIR` "
                                  f"writes `{BENCHMARK_REPORT}` and this section."]) + "\n"  # fmt: skip
    report = json.loads(path.read_text(encoding="utf-8"))
    boot = report["bootstrap"]
    parts += [
        f"Made by `coord-bench evaluate` (coord_bench {report['coord_bench_version']}) from `{BENCHMARK_REPORT}`. "
        f"Baselines are fitted on train, any threshold is chosen on validation, and every number is on the test "
        f"split, with a {boot['interval']} interval from {boot['samples']} bootstrap draws of whole split groups.",
        "",
        "Score your own model or judge on a task: `coord-bench evaluate DIR --task NAME --predictions FILE`, where "
        "FILE is JSONL (or Parquet) with one line per test example: `id` plus the task's prediction fields.",
    ]
    for name, task in report["tasks"].items():
        sizes = task["splits"]
        parts += ["", f"### {name}", "", task["definition"], "",
                  f"Examples: train {sizes['train']}, validation {sizes['validation']}, test {sizes['test']}. "
                  "Prediction fields: " + "; ".join(f"`{k}`: {v}" for k, v in task["prediction_fields"].items())
                  + "."]  # fmt: skip
        if task["status"] != "ok":
            parts += ["", f"Not scored on this build: {task['reason']}."]
            continue
        metrics = list(dict.fromkeys(m for row in task["results"] for m in row["metrics"]))
        parts += ["", "| predictor | rows | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
        for row in task["results"]:
            if row.get("reason"):
                cells = [f"no numbers: {row['reason']}"] + [""] * (len(metrics) - 1)
            else:
                found = row["metrics"]
                cells = [format_estimate(found[m], with_n=True) if m in found else "" for m in metrics]
            parts.append(f"| {row['predictor']} | {row['subset']} | " + " | ".join(cells) + " |")
    return "\n".join(parts) + "\n"
