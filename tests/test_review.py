"""`coord-bench review-sample` (coord_bench/review.py): a seeded, stratified CSV of a build for manual review."""

from __future__ import annotations

import csv

from coord_bench.cli import main


def test_review_sample_exports_a_stratified_csv(real_build, tmp_path, capsys):
    target = tmp_path / "review.csv"
    assert main(["review-sample", str(real_build), "--n", "6", "--out", str(target), "--seed", "3"]) == 0
    rows = list(csv.DictReader(target.open(encoding="utf-8")))
    assert len(rows) == 6 and {r["source"] for r in rows} == {"chatbot_arena", "debate", "multi_character_dialogue"}
    assert {"review_success", "review_agreement_level", "conversation", "rules_success"} <= set(rows[0])
    assert all("[turn 0]" in r["conversation"] for r in rows)
    again = tmp_path / "again.csv"
    assert main(["review-sample", str(real_build), "--n", "6", "--out", str(again), "--seed", "3"]) == 0
    assert again.read_text() == target.read_text()  # seeded: the same sample
