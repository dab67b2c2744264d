"""The judge's agreement statistics (coord_bench/mappers/judge/agreement.py) against published values."""

from __future__ import annotations

import pytest

from coord_bench.mappers.judge.agreement import cohen_kappa, krippendorff_alpha, majority_level


def test_agreement_statistics_match_published_values():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 coders, 12 units, missing values
    n = None
    coders = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
        [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n],
    ]
    units = list(zip(*coders, strict=True))
    assert krippendorff_alpha(units) == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(units, "interval") == pytest.approx(0.849, abs=5e-4)
    from sklearn.metrics import cohen_kappa_score

    a = ["full", "none", "partial", "full", "full", "none", "partial"]
    b = ["full", "partial", "partial", "full", "none", "none", "full"]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    assert majority_level(["full", "none"]) == "none" and majority_level(["full", "full", "none"]) == "full"
