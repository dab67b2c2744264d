"""Human review, outward: ``coord-bench review-sample`` exports a stratified sample of a build for people to label.

The sample follows the judge's design (strata of source, config and native outcome), so the reviewed labels
can be compared with the judge's and the rules' on the same conversations. It is written three ways: a CSV a
person fills in a spreadsheet (the transcript in one cell, the label columns empty), the same rows as JSONL,
and an annotation guide in Markdown generated from :data:`FORM`, the review form, which is also what
``review-import`` validates the filled-in files against (``coord_bench.review_import``). The export is blind:
it shows no rule, judge or native label, so a reviewer is not anchored by what is to be measured.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, NamedTuple

from coord_bench.build_folder import iter_record_batches, read_manifest
from coord_bench.labels import LABEL_SCHEMA_VERSION, MAST_MODES, MAST_VALUES, MAST_VERSION
from coord_bench.mappers.judge.prompt import render_conversation
from coord_bench.mappers.judge.sampling import stratified_sample, stratum_of

LIGHT_COLUMNS = ["id", "source", "source_config", "outcome", "protocol", "annotations"]  # enough to stratify
PAIRWISE = "pairwise_comparison"  # protocol.interaction of the conversations with two responses A and B
DEFAULT_SAMPLE_SIZE = 30
DEFAULT_TOKEN_BUDGET = 2000  # the transcript shown per conversation; a spreadsheet cell holds 32,767 characters


class FormField(NamedTuple):
    """One label a reviewer gives: its column (and label name), allowed values, definition and where it applies."""

    name: str
    values: tuple[str, ...]
    definition: str
    pairwise_only: bool = False  # asked only of pairwise conversations (left empty elsewhere)
    required: bool = True  # an empty cell is an error where the field applies


FORM: tuple[FormField, ...] = (
    FormField("success", ("true", "false"),
              "the conversation achieved what its task asked (arena: at least one response answers the prompt "
              "well; debate: the agents settled on a correct answer; scene: the scene moved as its setting asked)"),
    FormField("agreement_level", ("full", "partial", "none"),
              "how far the agents ended up agreeing: full = one shared position at the end, partial = some "
              "convergence, none = positions still apart (two arena responses: whether they say the same thing)"),
    FormField("preferred", ("A", "B", "tie"),
              "which response is better, A or B; tie when neither is clearly better", pairwise_only=True),
    *(FormField(f"mast:{m.id}", MAST_VALUES, f"MAST {m.id} {m.name} ({m.category}): {m.definition}",
                required=False) for m in MAST_MODES),
)  # fmt: skip
CONTEXT_COLUMNS = ["id", "source", "source_config", "split", "stratum", "n_turns", "conversation"]
COLUMNS = [*CONTEXT_COLUMNS, "annotator", *(f.name for f in FORM), "notes"]


def review_files(out: str | Path) -> tuple[Path, Path, Path]:
    """The CSV, the JSONL and the guide that ``review-sample --out X.csv`` writes."""
    out = Path(out)
    return out, out.with_suffix(".jsonl"), out.with_name(f"{out.stem}_guide.md")


def sample_settings(manifest: dict[str, Any]) -> tuple[int, int]:
    """(size, seed) of the review sample: the recipe's ``review`` section, else 30 conversations, seed 0."""
    review = (manifest.get("recipe") or {}).get("review") or {}
    return review.get("sample_size", DEFAULT_SAMPLE_SIZE), review.get("sample_seed", 0)


def review_sample(
    folder: str | Path,
    out: str | Path,
    n: int | None = None,
    seed: int | None = None,
    judged_only: bool = False,
    token_budget: int = DEFAULT_TOKEN_BUDGET,
) -> int:
    """Write a stratified sample of ``n`` conversations (same design as the judge's; ``n`` and ``seed`` default
    to the recipe's ``review`` section) as CSV, JSONL and an annotation guide; return the sample's size."""
    from coord_bench.mappers.tokens import load_encoding

    folder = Path(folder)
    manifest = read_manifest(folder)
    size, recipe_seed = sample_settings(manifest)
    n, seed = size if n is None else n, recipe_seed if seed is None else seed
    rows = []
    for batch in iter_record_batches(folder, manifest, LIGHT_COLUMNS):
        for record in batch:
            judges = ((record["annotations"] or {}).get("coordination") or {}).get("judges") or []
            if judged_only and not any(j["status"] == "ok" for j in judges):
                continue
            rows.append((record["id"], stratum_of(record)))
    order, _ = stratified_sample(rows, n, seed)
    wanted = set(order)
    found: dict[str, dict[str, Any]] = {}
    encoding = load_encoding()[0]
    for batch in iter_record_batches(folder, manifest):
        for record in batch:
            if record["id"] in wanted:
                found[record["id"]] = _review_row(record, encoding, token_budget)
    ordered = [found[i] for i in sorted(order, key=lambda i: (found[i]["stratum"], i))]
    csv_path, jsonl_path, guide_path = review_files(out)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(ordered)
    with open(jsonl_path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in ordered)
    guide_path.write_text(annotation_guide(), encoding="utf-8")
    return len(order)


def _review_row(record: dict[str, Any], encoding: Any, token_budget: int) -> dict[str, Any]:
    conversation, _, _ = render_conversation(record, encoding, token_budget)
    return {
        "id": record["id"],
        "source": record["source"],
        "source_config": record["source_config"] or "",
        "split": record["split"],
        "stratum": stratum_of(record),
        "n_turns": record["n_turns"],
        "conversation": conversation,
        "annotator": "",
        **{f.name: "" for f in FORM},
        "notes": "",
    }


def annotation_guide() -> str:
    """The annotation guide, generated from :data:`FORM` (so it cannot drift from what is validated)."""
    lines = [
        "# Annotation guide",
        "",
        f"Label schema version {LABEL_SCHEMA_VERSION}; MAST failure modes as pinned at {MAST_VERSION} "
        "(Cemri et al. 2025, *Why Do Multi-Agent LLM Systems Fail?*).",
        "",
        "Fill one row per conversation, in the CSV (a spreadsheet) or the JSONL, and leave the other columns as "
        "they are. Put your annotator id in `annotator` (or name the file after yourself: `alice.csv`). Judge "
        "from the transcript alone; `notes` takes one free sentence. Values are case-insensitive.",
        "",
        "| field | values | required | definition |",
        "|---|---|---|---|",
    ]
    for f in FORM:
        need = "pairwise conversations only" if f.pairwise_only else ("yes" if f.required else "no (may be empty)")
        lines.append(f"| `{f.name}` | {' / '.join(f'`{v}`' for v in f.values)} | {need} | {f.definition} |")
    lines += [
        "",
        "`preferred` stays empty for conversations that are not a pairwise comparison. A MAST mode is `yes` "
        "when the failure occurs, `no` when it could have and did not, `not_applicable` when the conversation "
        "has no place for it (e.g. verification in a chit-chat scene); leave it empty to not review it.",
        "",
        "Then: `coord-bench review-import DIR your-file.csv` (one or more annotators' files).",
    ]
    return "\n".join(lines) + "\n"
