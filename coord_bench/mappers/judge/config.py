"""The judge's recipe section as a typed, checked config: every refusal happens here, before any request."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from coord_bench.mappers.judge.client import MODES
from coord_bench.mappers.judge.prompt import PROMPT_VERSION
from coord_bench.mappers.judge.tasks import COORDINATION, FAILURE_MODES, TASKS

RUN_OPTIONS = ("enabled", "raise_budget")  # how to run, not what to judge: never recorded in the manifest


class JudgeConfigError(ValueError):
    """The judge cannot start (no key, no price, bad parameter); raised before any request is sent."""


@dataclass(frozen=True)
class JudgeConfig:
    """``annotations.judge`` of a recipe. Defaults are the published recipe's."""

    base_url: str = "https://openrouter.ai/api/v1"
    api_key_env: str = "OPENROUTER_API_KEY"
    models: tuple[str, ...] = ("openai/gpt-4o-mini",)
    tasks: tuple[str, ...] = (COORDINATION,)  # what to ask: coordination scores and/or MAST failure_modes
    prompt_version: str = PROMPT_VERSION
    mode: str = "auto"
    max_calls: int = 100
    max_cost_usd: float = 1.0
    concurrency: int = 4
    sample_seed: int = 0
    sample_size: int | None = None  # default: as many rows as max_calls allows (max_calls // calls per row)
    both_orders: bool = False
    timeout_s: float = 60.0
    max_retries: int = 4
    max_reasks: int = 2
    max_tokens: int = 400
    temperature: float = 0.0
    prompt_token_budget: int = 3000
    backoff_base_s: float = 1.0
    max_backoff_s: float = 60.0
    max_consecutive_failures: int = 10
    success_threshold: float = 5.0
    prices: dict[str, dict[str, float]] | None = None  # {model: {prompt: USD per 1M, completion: USD per 1M}}
    cache_dir: str | None = None  # folder of judge_cache.sqlite; default $COORD_BENCH_CACHE/judge

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> JudgeConfig:
        """The config of a recipe section: unknown names, wrong types and unknown modes are refused by name;
        a null value means the default; ``RUN_OPTIONS`` are not part of the config."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(params) - set(known) - set(RUN_OPTIONS))
        if unknown:
            raise JudgeConfigError(f"annotations.judge: unknown parameter(s) {', '.join(unknown)}")
        values = {}
        for name, value in params.items():
            if name in RUN_OPTIONS or value is None:
                continue
            values[name] = _typed(name, value, cls.__dataclass_fields__[name].default)
        config = cls(**values)
        if config.prompt_version != PROMPT_VERSION:
            raise JudgeConfigError(
                f"annotations.judge.prompt_version: this coord_bench has prompt {PROMPT_VERSION}, "
                f"not {config.prompt_version!r}"
            )
        if config.mode not in ("auto", *MODES):
            raise JudgeConfigError(
                f"annotations.judge.mode: expected auto or one of {', '.join(MODES)}, got {config.mode!r}"
            )
        if not config.models:
            raise JudgeConfigError("annotations.judge.models: name at least one judge model")
        unknown_tasks = [t for t in config.tasks if t not in TASKS]
        if unknown_tasks or not config.tasks:
            raise JudgeConfigError(
                f"annotations.judge.tasks: expected a list of {', '.join(TASKS)}, got {list(config.tasks)!r}"
            )
        return config

    @property
    def requests_per_row(self) -> int:
        """Requests per sampled pairwise conversation and model: the coordination verdict (two when judged in
        both orders) and the failure modes (one, in the stored order)."""
        coordination = (2 if self.both_orders else 1) if COORDINATION in self.tasks else 0
        return coordination + (FAILURE_MODES in self.tasks)


def _typed(name: str, value: Any, default: Any) -> Any:
    """``value`` in the type of the field's default (numbers from YAML ints or floats, models as a tuple of
    distinct names), or a JudgeConfigError naming the key, what was expected and what was found."""

    def refuse(expected: str) -> JudgeConfigError:
        return JudgeConfigError(
            f"annotations.judge.{name}: expected {expected}, found {type(value).__name__} {value!r}"
        )

    if name in ("models", "tasks"):
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, (list, tuple)) or not all(isinstance(m, str) for m in names):
            raise refuse(f"a list of {'model' if name == 'models' else 'task'} names")
        return tuple(dict.fromkeys(names))
    if name == "prices":
        if not isinstance(value, dict):
            raise refuse("{model: {prompt: USD_PER_1M, completion: USD_PER_1M}}")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise refuse("true or false")
        return value
    if isinstance(default, int) or name == "sample_size":
        if isinstance(value, bool) or not isinstance(value, int):
            raise refuse("a whole number")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise refuse("a number")
        return float(value)
    if not isinstance(value, str):
        raise refuse("text")
    return value


DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(JudgeConfig)}
