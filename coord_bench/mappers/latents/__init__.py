"""Latent coordination states: one model fitted on the train split, applied to every conversation.

`ChangeLDS` ("delta-lds-em", the default: the LDS of turn-to-turn changes, which nests copy-last),
`LinearGaussianSSM` ("lds-em", the LDS of the turns themselves) and its initialisation `PCAReducedRank`
("pca-rrr"), the names recipes and rows use, share one API: fit / transform / transform_many /
predict_next_observation / save / load / model_hash. `selection` chooses k and r on the validation split.
`quality` holds the honest checks (next-turn R^2 against baselines, grouped-CV probes, refit stability).
"""

from __future__ import annotations

import json
from pathlib import Path

from coord_bench.mappers.latents.baseline import PCAReducedRank
from coord_bench.mappers.latents.changes import ChangeLDS
from coord_bench.mappers.latents.config import LDSConfig
from coord_bench.mappers.latents.lds import LinearGaussianSSM
from coord_bench.mappers.latents.quality import (
    next_turn_r2,
    next_turn_report,
    principal_angles,
    probe_report,
    stability_report,
)

MODELS = {cls.method: cls for cls in (ChangeLDS, LinearGaussianSSM, PCAReducedRank)}


def load_model(path: Path) -> ChangeLDS | LinearGaussianSSM | PCAReducedRank:
    """Load a saved latent model of any method (<path>.npz + <path>.json), by the method its JSON names."""
    method = json.loads(Path(f"{path}.json").read_text()).get("method")
    if method not in MODELS:
        raise ValueError(f"{path}.json: unknown latent model method {method!r}")
    return MODELS[method].load(path)


__all__ = [
    "MODELS",
    "ChangeLDS",
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
