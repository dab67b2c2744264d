"""Latent coordination states: one model fitted on the train split, applied to every conversation.

`LinearGaussianSSM` ("lds-em", the default) and its baseline and initialisation `PCAReducedRank` ("pca-rrr"),
the names recipes and rows use, share one API: fit / transform / transform_many / predict_next_observation /
save / load / model_hash.
`quality` holds the honest checks (next-turn R^2 against baselines, grouped-CV probes, refit stability).
"""

from __future__ import annotations

import json
from pathlib import Path

from coord_bench.mappers.latents.baseline import PCAReducedRank
from coord_bench.mappers.latents.config import LDSConfig
from coord_bench.mappers.latents.lds import LinearGaussianSSM
from coord_bench.mappers.latents.quality import (
    next_turn_r2,
    next_turn_report,
    principal_angles,
    probe_report,
    stability_report,
)


def load_model(path: Path) -> LinearGaussianSSM | PCAReducedRank:
    """Load a saved latent model of either method (<path>.npz + <path>.json), by the method its JSON names."""
    method = json.loads(Path(f"{path}.json").read_text()).get("method")
    for cls in (LinearGaussianSSM, PCAReducedRank):
        if cls.method == method:
            return cls.load(path)
    raise ValueError(f"{path}.json: unknown latent model method {method!r}")


__all__ = [
    "LDSConfig",
    "LinearGaussianSSM",
    "PCAReducedRank",
    "load_model",
    "next_turn_r2",
    "next_turn_report",
    "principal_angles",
    "probe_report",
    "stability_report",
]
