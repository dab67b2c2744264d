"""From request results to the judge entries of a row, its consensus, and agreement with ground truth.

A row's entry per model combines its one or two requests (two when judged in both orders: a preference
that changes with the order becomes a tie). The consensus is the median score and the majority labels of
the models' entries. Agreement is measured against the native outcomes (arena winner, DEBATE correctness).
"""

from __future__ import annotations

from typing import Any

from coord_bench.labels import LABEL_SCHEMA_VERSION, MAST_MODES, WHO_WHEN, llm_provenance, make_label
from coord_bench.mappers.judge import agreement as stats
from coord_bench.mappers.judge.prompt import PROMPT_VERSION, TEMPLATE_SHA256
from coord_bench.mappers.judge.runner import Job, Result
from coord_bench.mappers.judge.sampling import sample_weight, stratum_of
from coord_bench.mappers.judge.tasks import COORDINATION, FAILURE_MODES, TASKS


def blank_entry(model: str, schema_version: str) -> dict[str, Any]:
    """A judge entry with no verdict yet: provenance set, every label null."""
    return {
        "model": model,
        "prompt_version": PROMPT_VERSION,
        "schema_version": schema_version,
        "provenance": llm_provenance(model, TEMPLATE_SHA256),
        "label_schema_version": LABEL_SCHEMA_VERSION,
        "status": None,
        "reason": None,
        "success_score": None,
        "agreement_level": None,
        "efficiency_score": None,
        "preferred": None,
        "events": [],
        "rationale": None,
        "position_consistent": None,
        "confidence": None,
        "output_mode": None,
        "calls": None,
        "cached": None,
        "cost_usd": None,
    }


def not_sampled_entry(model: str, schema_version: str, reason: str) -> dict[str, Any]:
    return {**blank_entry(model, schema_version), "status": "not_sampled", "reason": reason}


def judge_entry(model: str, schema_version: str, results: list[Result]) -> dict[str, Any]:
    """One model's entry for one row from the results of its requests (one per order)."""
    base = {
        **blank_entry(model, schema_version),
        "output_mode": next((r.mode for r in results if r.mode), None),
        "calls": sum(r.calls for r in results),
        "cost_usd": sum(r.cost_usd for r in results),
    }
    ok = [r for r in results if r.status == "ok"]
    if not ok:
        worst = next((r for r in results if r.status == "failed"), results[0])
        return {**base, "status": worst.status, "reason": worst.reason}
    first = ok[0].output
    levels = [r.output["agreement_level"] for r in ok]
    entry = {
        **base,
        "status": "ok",
        "reason": None,
        "success_score": sum(r.output["success_score"] for r in ok) / len(ok),
        "agreement_level": levels[0] if len(set(levels)) == 1 else stats.majority_level(levels),
        "efficiency_score": sum(r.output["efficiency_score"] for r in ok) / len(ok),
        "preferred": first["preferred"],
        "events": first["events"],
        "rationale": first["rationale"],
        "cached": all(r.cached for r in ok),
    }
    if len(ok) == 2:
        consistent = ok[0].output["preferred"] == ok[1].output["preferred"]
        entry["position_consistent"] = consistent
        entry["confidence"] = 1.0 if consistent else 0.5  # share of the two orders agreeing with the majority
        entry["preferred"] = first["preferred"] if consistent else "tie"
    elif len(results) == 2:
        other = next(r for r in results if r.status != "ok")
        entry["reason"] = f"judged in one order only; the other: {other.status}: {other.reason}"
    return entry


def entries_by_row(
    jobs: list[Job], results: dict[tuple[str, str, str, int], Result], schema_version: str
) -> dict[str, dict[str, dict[str, Any]]]:
    """Row id -> model -> entry, for every planned coordination job."""
    grouped: dict[tuple[str, str], list[Result]] = {}
    for job in jobs:
        if job.task == COORDINATION:
            key = job.row_id, job.model, job.task, job.order
            grouped.setdefault((job.row_id, job.model), []).append(results[key])
    entries: dict[str, dict[str, dict[str, Any]]] = {}
    for (row_id, model), row_results in grouped.items():
        entries.setdefault(row_id, {})[model] = judge_entry(model, schema_version, row_results)
    return entries


def failure_mode_labels(job: Job, result: Result) -> list[dict[str, Any]]:
    """The ``mast:<id>`` labels (and the ``who_when`` of a failed conversation) of one failure-mode judgement;
    a judgement that did not come back gives the same labels with value null and the reason."""
    provenance = llm_provenance(job.model, TASKS[FAILURE_MODES].template_sha256)
    if result.status != "ok":
        why = f"{result.status}: {result.reason}"
        labels = [make_label(m.label, None, provenance, reason=why) for m in MAST_MODES]
        return labels + ([make_label(WHO_WHEN, None, provenance, reason=why)] if job.prompt.failed else [])
    output = result.output
    labels = [make_label(m.label, output["modes"][m.id], provenance) for m in MAST_MODES]
    blame = output["attribution"]
    if blame is not None:
        labels.append(
            make_label(
                WHO_WHEN,
                blame["agent_id"],
                provenance,
                turn_index=blame["turn_index"],
                agent_id=blame["agent_id"],
                reason=blame["reason"],
            )
        )
    return labels


def labels_by_row(jobs: list[Job], results: dict[tuple[str, str, str, int], Result]) -> dict[str, list[dict]]:
    """Row id -> the failure-mode labels of every model that judged it."""
    out: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        if job.task == FAILURE_MODES:
            result = results[job.row_id, job.model, job.task, job.order]
            out.setdefault(job.row_id, []).extend(failure_mode_labels(job, result))
    return out


def consensus(
    record: dict[str, Any], entries: list[dict[str, Any]], sampled: bool, design: dict | None, threshold: float
) -> dict[str, Any]:
    """``annotations.coordination.consensus`` of a row from its models' entries."""
    ok = [e for e in entries if e["status"] == "ok"]
    stratum = stratum_of(record)
    score = stats.median([e["success_score"] for e in ok])
    return {
        "sampled": sampled,
        "stratum": stratum,
        "sample_weight": sample_weight(design, stratum) if design and sampled else None,
        "n_judges": len(ok),
        "success_score": score,
        "success": None if score is None else score >= threshold,
        "agreement_level": stats.majority_level([e["agreement_level"] for e in ok]),
        "efficiency_score": stats.median([e["efficiency_score"] for e in ok]),
        "preferred": stats.majority_preference([e["preferred"] for e in ok if e["preferred"] is not None]),
    }


def ground_truth(
    entries: dict[str, dict[str, dict[str, Any]]],
    truth: dict[str, dict[str, Any]],
    models: tuple[str, ...],
    threshold: float,
) -> dict[str, Any]:
    """Agreement of the consensus and of each model with the native outcomes of the judged rows."""
    out: dict[str, Any] = {}
    for label, judge_of in [("consensus", None), *[(m, m) for m in models]]:
        arena_truth, arena_pred, pref_hits, pref_n, debate_truth, debate_pred = [], [], 0, 0, [], []
        for row_id, by_model in entries.items():
            ok = [e for m, e in by_model.items() if e["status"] == "ok" and (judge_of is None or m == judge_of)]
            if not ok:
                continue
            score = stats.median([e["success_score"] for e in ok])
            preferred = stats.majority_preference([e["preferred"] for e in ok if e["preferred"] is not None])
            native = truth.get(row_id, {})
            if native.get("kind") == "pairwise_comparison" and native.get("winner"):
                arena_truth.append(native["winner"] in ("model_a", "model_b"))
                arena_pred.append(score >= threshold)
                if preferred is not None:
                    pref_n += 1
                    expected = {"model_a": "A", "model_b": "B"}.get(native["winner"], "tie")
                    pref_hits += preferred == expected
            elif native.get("answer_correct") is not None:
                debate_truth.append(native["answer_correct"])
                debate_pred.append(score >= threshold)
        out[label] = {
            "arena_success_vs_decisive_winner": stats.binary_agreement(arena_truth, arena_pred),
            "arena_preferred_vs_winner": {"n": pref_n, "accuracy": pref_hits / pref_n if pref_n else None},
            "debate_success_vs_answer_correct": stats.binary_agreement(debate_truth, debate_pred),
        }
    return out


def position_consistency(
    entries: dict[str, dict[str, dict[str, Any]]], models: tuple[str, ...], both_orders: bool
) -> dict[str, Any]:
    """Per model: how many pairs judged in both orders kept their verdict."""
    if not both_orders:
        return {"note": "both_orders is off: each conversation was judged in one order"}
    out = {}
    for model in models:
        flags = [
            by_model[model]["position_consistent"]
            for by_model in entries.values()
            if by_model.get(model, {}).get("position_consistent") is not None
        ]
        out[model] = {"pairs": len(flags), "consistent": sum(flags), "rate": sum(flags) / len(flags) if flags else None}
    return out
