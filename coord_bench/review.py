"""``coord-bench review-sample``: a stratified sample of a build's conversations in a CSV, for people to check.

The sample follows the judge's design (strata of source, config and native outcome), so the reviewed labels
can be compared with the judge's and the rules' on the same conversations.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from coord_bench.build_folder import iter_record_batches, read_manifest
from coord_bench.mappers.judge.prompt import render_conversation
from coord_bench.mappers.judge.sampling import native_outcome, stratified_sample, stratum_of

LIGHT_COLUMNS = ["id", "source", "source_config", "outcome", "protocol", "annotations"]  # enough to stratify

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
