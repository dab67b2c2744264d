"""What a benchmark task declares, and the examples it makes from a build's records.

A task reads each record once (``example``) and keeps only the small features it and its baselines need, so
the benchmark streams a build of any size. Baselines are fitted on train, any threshold or setting is chosen
on validation, and every reported number is computed on test (``score``) with group-bootstrap intervals.
A user's own predictions go through ``check_prediction`` (one per test id) and the same ``score``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from coord_bench.mappers.embeddings import Embedder

MIN_TEST_EXAMPLES = 5  # fewer test rows cannot give an interval worth printing


class PredictionError(ValueError):
    """A predictions file that cannot be scored; the message names the line and the field."""


@dataclass
class Example:
    """One row of a task: the record's id, split and split group, the gold labels and the task's features."""

    id: str
    split: str
    group: str
    gold: dict[str, Any]
    features: dict[str, Any] = field(default_factory=dict)


class TaskContext:
    """What tasks share: the embedder of the build's embeddings layer (same model and cache, so the texts the
    build embedded are not encoded again), made on first use; the build folder (its artifacts, e.g. the latent
    model) and the annotation layers the build ran (a task embeds only texts the build has embedded)."""

    def __init__(self, make_embedder: Callable[[], Embedder], folder: Path | None = None,
                 layers: frozenset[str] = frozenset()):  # fmt: skip
        self._make_embedder, self._embedder = make_embedder, None
        self.folder, self.layers = folder, layers

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = self._make_embedder()
        return self._embedder


class Predictions(dict):
    """A baseline's {test id: prediction}, plus what it chose on validation for each result subset (``settings``:
    subset -> {setting: value}); the evaluation adds them to that subset's result row."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.settings: dict[str, dict[str, Any]] = {}


Predictor = Callable[[list[Example], list[Example], list[Example]], dict[str, dict[str, Any]]]
# (train, validation, test) -> {test id: prediction}; fitted on train, tuned on validation


class Task:
    """The interface of a task (see the module docstring); one module per task in ``coord_bench.tasks``."""

    name: ClassVar[str]
    definition: ClassVar[str]  # one paragraph for the card: input, target, metric
    prediction_fields: ClassVar[dict[str, str]]  # field of a predictions line -> what it holds

    def __init__(self, context: TaskContext):
        self.context = context

    def example(self, record: dict[str, Any]) -> Example | None:
        """The task's example of ``record``, or None when the record is not part of the task."""
        raise NotImplementedError

    def unsupported(self, examples: list[Example]) -> str | None:
        """Why the task cannot be scored on these examples (None: it can)."""
        test = [e for e in examples if e.split == "test"]
        if not examples:
            return "no record of this build is part of the task"
        if len(test) < MIN_TEST_EXAMPLES:
            return f"{len(test)} test example(s); at least {MIN_TEST_EXAMPLES} are needed"
        return None

    def baselines(self) -> dict[str, Predictor]:
        raise NotImplementedError

    def check_prediction(self, value: dict[str, Any]) -> dict[str, Any]:
        """One prediction as read from a file, checked (raise ``PredictionError`` saying what is wrong)."""
        raise NotImplementedError

    def score(self, test: list[Example], predictions: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        """Result rows ``{"subset": ..., "metrics": {name: estimate}}`` of one predictor on the test examples."""
        raise NotImplementedError


def split_examples(examples: list[Example]) -> tuple[list[Example], list[Example], list[Example]]:
    by = {"train": [], "validation": [], "test": []}
    for e in examples:
        by[e.split].append(e)
    return by["train"], by["validation"], by["test"]


def probability(value: Any, field_name: str) -> float:
    """A number in [0, 1], or a ``PredictionError`` naming the field."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise PredictionError(f"field '{field_name}': expected a probability in [0, 1], found {value!r}")
    return float(value)
