"""The annotation layers by name, in the order they run, and the choice of layers a build needs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from coord_bench.mappers.embeddings import EmbeddingsMapper
from coord_bench.mappers.judge import JudgeMapper
from coord_bench.mappers.latents.layer import LatentsMapper
from coord_bench.mappers.layer import Layer, LayerContext
from coord_bench.mappers.rules import RulesMapper
from coord_bench.mappers.tokens import TokensMapper

LAYERS: dict[str, type[Layer]] = {
    layer.name: layer for layer in (TokensMapper, EmbeddingsMapper, LatentsMapper, RulesMapper, JudgeMapper)
}  # running order: a layer comes after every layer it needs


def with_needs(names: Iterable[str]) -> list[str]:
    """The named layers and every layer they need, transitively, in running order."""
    wanted: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name not in LAYERS:
            raise ValueError(f"unknown annotation layer {name!r}; known: {', '.join(LAYERS)}")
        if name not in wanted:
            wanted.add(name)
            pending += LAYERS[name].needs
    return [name for name in LAYERS if name in wanted]


def build_layers(annotations: dict[str, dict[str, Any]], context: LayerContext) -> list[Layer]:
    """The layers of the requested names and the ones they need, configured from their recipe sections."""
    return [LAYERS[name].from_params(annotations.get(name) or {}, context) for name in with_needs(annotations)]


def needed_by(layer: Layer, layers: list[Layer]) -> list[Layer]:
    """The layers of a build that ``layer`` needs, transitively: those its corpus pass must see applied."""
    names = set(with_needs(layer.needs))
    return [other for other in layers if other.name in names]
