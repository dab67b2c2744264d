"""The judge's seeded, stratified sample: the budget is far smaller than the corpus.

Strata: ``source / source_config / native outcome``, where the native outcome is the arena winner
(model_a, model_b, tie, tie (bothbad)), DEBATE correctness (answer correct / answer wrong, else decision
reached / no decision), and ``no native outcome`` where the source has none (dialogue); see
``coord_bench.outcomes``.

Allocation, in two levels so that every source is represented even by a small sample: ``n`` rows are first
allocated over the sources, then each source's share over its strata, each time by the same rule: over
``S`` groups of populations ``N_g``, when ``n >= S`` every group gets one row and the other ``n - S`` are
allocated in proportion to ``N_g - 1`` (largest remainders, capped at ``N_g``); when ``n < S``, ``n`` groups
are drawn (ordered by sha256(seed, group)) and get one row each. Within a stratum the rows with the smallest
sha256(seed, id) are taken, so the sample does not depend on the order of the corpus. The judge works
through the sample round-robin over the sources and, within a source, over its strata, so a budget that runs
out early still leaves a stratified subset. ``sample_weight = N_s / n_s`` reweights estimates to the corpus.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any

from coord_bench.outcomes import outcome_label

METHOD = (
    "stratified by source, then by config and native outcome within a source; one row per group first, the rest "
    "in proportion to the group sizes (largest remainders); within a stratum the smallest sha256(seed:id); "
    "judged round-robin over sources and strata"
)


def native_outcome(record: dict[str, Any]) -> str:
    return outcome_label(record.get("outcome") or {})


def stratum_of(record: dict[str, Any]) -> str:
    return f"{record['source']}/{record.get('source_config') or '-'}/{native_outcome(record)}"


def _rank(seed: int, text: str) -> str:
    return hashlib.sha256(f"{seed}:{text}".encode()).hexdigest()


def allocate(populations: dict[str, int], size: int, seed: int) -> dict[str, int]:
    """Rows per stratum (see the module docstring)."""
    size = min(size, sum(populations.values()))
    strata = sorted(populations)
    if size <= 0:
        return dict.fromkeys(strata, 0)
    if size < len(strata):
        chosen = set(sorted(strata, key=lambda s: _rank(seed, s))[:size])
        return {s: int(s in chosen) for s in strata}
    counts = dict.fromkeys(strata, 1)
    rest = size - len(strata)
    spare = {s: populations[s] - 1 for s in strata}
    total_spare = sum(spare.values())
    if rest and total_spare:
        quotas = {s: rest * spare[s] / total_spare for s in strata}
        for s in strata:
            counts[s] += min(int(quotas[s]), spare[s])
        left = size - sum(counts.values())
        by_remainder = sorted(strata, key=lambda s: (-(quotas[s] - int(quotas[s])), _rank(seed, s)))
        while left > 0:
            progressed = False
            for s in by_remainder:
                if left and counts[s] < populations[s]:
                    counts[s] += 1
                    left -= 1
                    progressed = True
            if not progressed:
                break
    return counts


def stratified_sample(rows: list[tuple[str, str]], size: int, seed: int) -> tuple[list[str], dict[str, Any]]:
    """``rows``: (id, stratum) pairs. Returns the sampled ids in judging order and the design for the manifest."""
    by_stratum: dict[str, list[str]] = defaultdict(list)
    for row_id, stratum in rows:
        by_stratum[stratum].append(row_id)
    populations = {s: len(ids) for s, ids in by_stratum.items()}
    by_source: dict[str, list[str]] = defaultdict(list)
    for stratum in sorted(populations):
        by_source[stratum.split("/", 1)[0]].append(stratum)
    source_counts = allocate(
        {src: sum(populations[s] for s in strata) for src, strata in by_source.items()}, size, seed
    )
    counts: dict[str, int] = {}
    for src, strata in by_source.items():
        counts.update(allocate({s: populations[s] for s in strata}, source_counts[src], seed))
    picked = {s: sorted(by_stratum[s], key=lambda i: _rank(seed, i))[: counts[s]] for s in sorted(by_stratum)}
    queues = {src: _round_robin([picked[s] for s in sorted(strata, key=lambda s: _rank(seed, s))])
              for src, strata in by_source.items()}  # fmt: skip
    order = _round_robin([queues[src] for src in sorted(queues, key=lambda src: _rank(seed, src))])
    design = {
        "method": METHOD,
        "seed": seed,
        "size": len(order),
        "population": len(rows),
        "strata": {s: {"population": populations[s], "sampled": counts[s]} for s in sorted(populations)},
    }
    return order, design


def _round_robin(lists: list[list[str]]) -> list[str]:
    out: list[str] = []
    for i in range(max((len(v) for v in lists), default=0)):
        out += [v[i] for v in lists if i < len(v)]
    return out


def sample_weight(design: dict[str, Any], stratum: str) -> float | None:
    entry = design["strata"].get(stratum)
    if not entry or not entry["sampled"]:
        return None
    return entry["population"] / entry["sampled"]
