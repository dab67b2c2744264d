"""What an annotation layer declares, and the context through which layers share resources.

A layer names the layers it ``needs`` (their annotations must be on a record before it can read it), the
top-level columns it ``reads`` and the ones it ``writes``, and a typed config built from its recipe section.
The build runs ``prepare(corpus)`` once per layer (a corpus-level pass, on a view that applies only the
layers it needs), then ``apply(batch)`` once per record, then ``describe()`` for the manifest.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from coord_bench.mappers.embeddings import Embedder


@dataclass
class LayerContext:
    """What the layers of one build share: where artifacts go, the budget folder, and the embedder."""

    out_dir: Path | None = None  # where layers write artifacts: set by the engine to its staging folder
    budget_folder: Path | None = None  # the folder the user named: the judge's budget ledger is that folder's
    progress: bool = True
    embedder: Embedder | None = None  # set by the embeddings layer for the layers that need it

    def require_embedder(self, layer: str) -> Embedder:
        if self.embedder is None:
            raise ValueError(f"the {layer} layer needs the embeddings layer, which is not in this build")
        return self.embedder


def config_from(config_class: type, params: dict[str, Any], layer: str) -> Any:
    """The typed config of a recipe section, refusing keys the layer does not know."""
    known = [f.name for f in dataclasses.fields(config_class)]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ValueError(
            f"annotations.{layer}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(known)}"
        )
    return config_class(**params)


class Layer:
    """The interface every annotation layer implements (see the module docstring)."""

    name: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    Config: ClassVar[type]
    # apply() reads the record alone (no corpus pass, no state shared between records): an engine may apply
    # it where the record is read, before staging (the Ray engine does, in its workers)
    per_record: ClassVar[bool] = False

    @classmethod
    def from_params(cls, params: dict[str, Any], context: LayerContext) -> Layer:
        return cls(config_from(cls.Config, params, cls.name), context)

    def prepare(self, corpus: Any) -> None:
        """No corpus pass by default."""

    def apply(self, batch: list[dict[str, Any]]) -> None:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {}
