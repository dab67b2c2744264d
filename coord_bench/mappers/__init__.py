"""Annotation mappers: each fills one nullable annotation layer of the unified record, in batches.

A mapper has ``prepare(corpus)`` (a pass over the whole staged corpus, for corpus-level work such as
embedding every text or fitting the latent model), ``apply(batch)`` (annotates records in place) and
``describe()`` (method, parameters and counts for the manifest).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

AVAILABLE = ("tokens", "embeddings", "latents", "rules", "judge")  # also the order the layers run in
REQUIRES = {"latents": ("embeddings", "tokens"), "rules": ("tokens", "embeddings")}


def resolve(names: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Add the layers a requested layer needs (latents need embeddings and tokens), in running order."""
    wanted = dict(names)
    for name in list(wanted):
        for needed in REQUIRES.get(name, ()):
            wanted.setdefault(needed, {})
    unknown = sorted(set(wanted) - set(AVAILABLE))
    if unknown:
        raise ValueError(f"unknown annotation layer(s) {', '.join(unknown)}; known: {', '.join(AVAILABLE)}")
    return {name: wanted[name] for name in AVAILABLE if name in wanted}


def build_mappers(
    annotations: dict[str, dict[str, Any]], out_dir: Path, progress: bool = True, budget_folder: Path | None = None
) -> list[Any]:
    """Instantiate the mappers of the requested layers, sharing one embedder. Artifacts go to ``out_dir`` (a
    build's staging folder); the judge's budget belongs to ``budget_folder`` (the build folder the user named,
    which ``label`` later sees too), default ``out_dir``."""
    from coord_bench.mappers.embeddings import EmbeddingsMapper
    from coord_bench.mappers.tokens import TokensMapper

    mappers: list[Any] = []
    for name, params in resolve(annotations).items():
        if name == "tokens":
            mappers.append(TokensMapper(params.get("encoding", "cl100k_base")))
        elif name == "embeddings":
            mappers.append(EmbeddingsMapper(params, progress=progress))
        elif name == "latents":
            from coord_bench.mappers.latent_states import LatentsMapper

            embedder = next(m.embedder for m in mappers if isinstance(m, EmbeddingsMapper))
            mappers.append(LatentsMapper(params, embedder, out_dir))
        elif name == "rules":
            from coord_bench.mappers.rules import RulesMapper

            embedder = next(m.embedder for m in mappers if isinstance(m, EmbeddingsMapper))
            mappers.append(RulesMapper(params, embedder))
        else:  # judge
            from coord_bench.mappers.judge import JudgeMapper

            mappers.append(JudgeMapper(params, progress=progress, folder=budget_folder or out_dir))
    return mappers
