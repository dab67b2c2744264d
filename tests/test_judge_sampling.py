"""The judge's stratified sample (coord_bench/mappers/judge/sampling.py): seeded, proportional with one per
stratum, round-robin, independent of corpus order."""

from __future__ import annotations

from coord_bench.mappers.judge.sampling import stratified_sample, stratum_of


def test_stratified_sample_is_seeded_proportional_and_round_robin():
    rows = [(f"a{i}", "arena/-/model_a") for i in range(60)] + [(f"d{i}", "debate/x/correct") for i in range(30)]
    rows += [(f"r{i}", "debate/x/incorrect") for i in range(2)]
    order, design = stratified_sample(rows, 10, seed=7)
    assert len(order) == len(set(order)) == 10
    counts = {s: v["sampled"] for s, v in design["strata"].items()}
    assert counts == {"arena/-/model_a": 6, "debate/x/correct": 3, "debate/x/incorrect": 1}  # 1 each + proportional
    assert {o[0] for o in order[:4]} == {"a", "d", "r"}  # round-robin: a truncated run stays stratified
    assert {o[0] for o in stratified_sample(rows, 2, seed=1)[0]} == {"a", "d"}  # every source, even when small
    assert stratified_sample(list(reversed(rows)), 10, seed=7)[0] == order  # independent of corpus order
    assert stratified_sample(rows, 10, seed=8)[0] != order
    assert stratified_sample(rows, 2, seed=7)[1]["size"] == 2  # fewer rows than strata: strata drawn
    assert stratum_of({"source": "s", "source_config": None, "outcome": {"winner": "tie"}}) == "s/-/tie"
