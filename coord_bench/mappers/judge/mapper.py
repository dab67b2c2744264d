"""``JudgeMapper``: LLM-judge labels for a seeded stratified sample of the corpus, within a hard budget.

``prepare(corpus)`` draws the sample (``sampling.py``), renders each sampled conversation (``prompt.py``)
and judges it with every model in ``models`` (twice, A/B swapped, for pairwise conversations with
``both_orders``) through the runner (``runner.py``: concurrency, cache, budget, retries), once per task of
``tasks`` (``tasks.py``). ``apply(batch)`` writes, for the ``coordination`` task,
``annotations.coordination.judges`` (one entry per model, with its provenance, ``results.py``) and
``annotations.coordination.consensus`` into every record (rows outside the sample get status
``not_sampled``, sampled rows the budget could not reach ``over_budget``); for the ``failure_modes`` task
(``failure_modes.py``), the ``mast:<id>`` and ``who_when`` items of ``annotations.coordination.labels`` of the
sampled rows (value null with the reason when the judgement did not come back), replacing earlier ``llm:``
labels and keeping the rules' and the humans'. Both tasks share the sample, the cache and the budget.

Budget: with ``folder`` (a build) the caps are that folder's, kept in a ledger on disk across runs, crashes and
processes (see ``budget.py``); a rerun spends only what earlier runs left.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from coord_bench.labels import MAST_MODES, MAST_VERSION, WHO_WHEN, coordination_of, with_labels
from coord_bench.mappers.judge import agreement as stats
from coord_bench.mappers.judge import failure_modes, results
from coord_bench.mappers.judge.cache import request_key
from coord_bench.mappers.judge.client import public_url
from coord_bench.mappers.judge.config import RUN_OPTIONS, JudgeConfig
from coord_bench.mappers.judge.prompt import PROMPT_VERSION, Prompt, build_prompt, output_schema_version
from coord_bench.mappers.judge.runner import Job, JudgeRunner, Result, run_sync
from coord_bench.mappers.judge.sampling import stratified_sample, stratum_of
from coord_bench.mappers.judge.tasks import COORDINATION, FAILURE_MODES, TASKS
from coord_bench.mappers.layer import Layer, LayerContext

COLUMNS = ["id", "source", "source_config", "protocol", "outcome", "task", "agents", "turns", "annotations"]
# annotations: the rules' success, where a labelled build has it, marks a failed conversation (failure_modes)


class JudgeMapper(Layer):
    """Fills ``annotations.coordination.judges`` and ``.consensus``; see the module docstring."""

    name = "judge"
    reads = tuple(COLUMNS)
    writes = ("annotations",)
    Config = JudgeConfig

    @classmethod
    def from_params(cls, params: dict[str, Any], context: LayerContext) -> JudgeMapper:
        return cls(params, progress=context.progress, folder=context.budget_folder or context.out_dir)

    def __init__(
        self, params: dict[str, Any], progress: bool = True, check_key: bool = True, folder: Path | None = None
    ):
        """``folder``: the build folder whose budget ledger this run spends from (None: a budget for this run
        only). ``params["raise_budget"]``: allow caps above the ledger's."""
        self.config = JudgeConfig.from_params(params)
        self.given = {k: v for k, v in params.items() if k not in RUN_OPTIONS}  # as given, for the manifest
        self.models = self.config.models
        self.runner = JudgeRunner(self.config, progress, check_key, folder, raise_cap=bool(params.get("raise_budget")))
        self.budget = self.runner.budget
        self.counters = self.runner.counters
        self.schema_version = output_schema_version()
        self.design: dict[str, Any] | None = None
        self.jobs: list[Job] = []
        self.results: dict[tuple[str, str, str, int], Result] = {}
        self.entries: dict[str, dict[str, dict[str, Any]]] = {}  # row id -> model -> judge entry
        self.labels: dict[str, list[dict[str, Any]]] = {}  # row id -> failure-mode labels
        self.truth: dict[str, dict[str, Any]] = {}  # row id -> native outcome, for ground-truth agreement
        self._elapsed = 0.0

    @property
    def mode(self) -> str | None:
        """The structured-output mode in use (known, remembered for this server, or found by probing)."""
        return self.runner.mode

    # -- preparation -------------------------------------------------------------------------------------------

    def orders(self, record: dict[str, Any]) -> list[int]:
        pairwise = record["protocol"]["interaction"] == "pairwise_comparison"
        return [0, 1] if self.config.both_orders and pairwise else [0]

    def sample_size(self) -> int:
        if self.config.sample_size is not None:
            return self.config.sample_size
        return self.config.max_calls // (len(self.models) * self.config.requests_per_row)

    def plan(self, corpus: Any) -> None:
        """Draw the sample and render the prompts of the sampled conversations (no request is sent)."""
        rows: list[tuple[str, str]] = []
        for batch in corpus.batches(columns=["id", "source", "source_config", "outcome", "protocol"]):
            for record in batch:
                rows.append((record["id"], stratum_of(record)))
                outcome = record["outcome"]
                self.truth[record["id"]] = {
                    "kind": record["protocol"]["interaction"],
                    "winner": outcome["winner"],
                    "answer_correct": outcome["answer_correct"],
                }
        order, self.design = stratified_sample(rows, self.sample_size(), self.config.sample_seed)
        position = {row_id: i for i, row_id in enumerate(order)}
        prompts: dict[str, dict[str, list[Prompt]]] = {}
        encoding, budget = self.runner.encoding, self.config.prompt_token_budget
        for batch in corpus.batches(columns=COLUMNS):
            for record in batch:
                if record["id"] in position:
                    prompts[record["id"]] = {
                        COORDINATION: [
                            build_prompt(record, encoding, budget, swapped=bool(o)) for o in self.orders(record)
                        ],
                        FAILURE_MODES: [failure_modes.build_prompt(record, encoding, budget)],
                    }
        request_params = self.runner.request_params
        self.jobs = []
        for row_id in order:
            for model in self.models:
                for task in self.config.tasks:
                    version, schema = TASKS[task].prompt_version, self.runner.schemas[task]
                    for order_index, prompt in enumerate(prompts[row_id][task]):
                        key = request_key(model, version, schema, prompt.messages, request_params)
                        self.jobs.append(Job(row_id, model, order_index, prompt, key, task))
        first = self.config.tasks[0]  # every task renders the same transcript: count a row and model once
        self.counters.truncated_prompts = sum(
            1 for j in self.jobs if j.prompt.truncated and j.order == 0 and j.task == first
        )

    def estimate(self) -> dict[str, Any]:
        """What judging the planned sample would send and cost at most (cached judgements cost nothing)."""
        runner = self.runner
        to_send = [j for j in self.jobs if not runner.cache.has(j.key)]
        tokens = {id(j): runner.estimate_tokens(j.prompt.messages, j.task) for j in to_send}
        prompt_tokens = sum(tokens.values())
        cost = sum(runner.estimate_cost(j.model, tokens[id(j)]) for j in to_send)
        return {
            "rows_sampled": self.design["size"] if self.design else 0,
            "rows_total": self.design["population"] if self.design else 0,
            "requests_planned": len(self.jobs),
            "requests_cached": len(self.jobs) - len(to_send),
            "requests_to_send": len(to_send),
            "prompt_tokens": prompt_tokens,
            "completion_tokens_max": len(to_send) * self.config.max_tokens,
            "cost_usd_max": cost,
            "prices": {m: runner.price_source.get(m, "unknown") for m in self.models},
            "max_calls": self.budget.max_calls,
            "max_cost_usd": self.budget.max_cost_usd,
            "ledger": self.budget.totals(),
        }

    # -- running ---------------------------------------------------------------------------------------------

    def prepare(self, corpus: Any) -> None:
        self.plan(corpus)
        self.budget.start()
        started = time.monotonic()
        self.results = run_sync(self.runner.run(self.jobs))
        self._elapsed = time.monotonic() - started
        self.entries = results.entries_by_row(self.jobs, self.results, self.schema_version)
        self.labels = results.labels_by_row(self.jobs, self.results)

    def apply(self, batch: list[dict[str, Any]]) -> None:
        for record in batch:
            coordination = coordination_of(record["annotations"])
            if FAILURE_MODES in self.config.tasks:
                with_labels(coordination, "llm:", self.labels.get(record["id"], []))
            if COORDINATION not in self.config.tasks:
                continue  # the coordination verdicts of an earlier run, if any, stay
            by_model = self.entries.get(record["id"])
            sampled = by_model is not None
            if by_model is None:
                reason = f"outside the judge's stratified sample (seed {self.config.sample_seed})"
                by_model = {m: results.not_sampled_entry(m, self.schema_version, reason) for m in self.models}
            entries = [by_model[m] for m in self.models]
            coordination["judges"] = entries
            coordination["consensus"] = results.consensus(
                record, entries, sampled, self.design, self.config.success_threshold
            )

    # -- report ----------------------------------------------------------------------------------------------

    def failure_mode_counts(self) -> dict[str, Any]:
        """The failure-mode task in numbers: judgements by status, and per mode how often each value came back."""
        jobs = [j for j in self.jobs if j.task == FAILURE_MODES]
        statuses = Counter(self.results[j.row_id, j.model, j.task, j.order].status for j in jobs)
        values = {m.label: Counter() for m in MAST_MODES}
        for labels in self.labels.values():
            for label in labels:
                if label["name"] in values and label["value"] is not None:
                    values[label["name"]][label["value"]] += 1
        return {
            "taxonomy": MAST_VERSION,
            "judgements": dict(sorted(statuses.items())),
            "failed_conversations_asked_for_attribution": sum(j.prompt.failed for j in jobs),
            "attributions": sum(
                lb["name"] == WHO_WHEN and lb["value"] is not None for v in self.labels.values() for lb in v
            ),
            "attributions_dropped_not_failed": self.counters.attributions_dropped,
            "values": {name: dict(sorted(counts.items())) for name, counts in values.items()},
        }

    def recorded_params(self) -> dict[str, Any]:
        """The parameters as given, as the manifest and the recipe record them: base_url in its public form."""
        given = dict(self.given)
        if given.get("base_url") is not None:
            given["base_url"] = public_url(given["base_url"])
        return given

    def describe(self) -> dict[str, Any]:
        """The manifest's ``annotations.judge``. Its ``params`` replaces the builder's copy of the parameters
        (the manifest entry is ``{"params": ..., **describe()}``), so that base_url is recorded public there too."""
        c = self.counters
        statuses = Counter(e["status"] for by_model in self.entries.values() for e in by_model.values())
        if self.design and self.design["population"] > self.design["size"]:  # per (row, model), like the others
            statuses["not_sampled"] = (self.design["population"] - self.design["size"]) * len(self.models)
        return {
            "params": self.recorded_params(),
            "models": list(self.models),
            "base_url": self.runner.public_url,
            "api_key_env": self.config.api_key_env,
            "prompt_version": PROMPT_VERSION,
            "schema_version": self.schema_version,
            "tasks": {
                task: {
                    "prompt_version": TASKS[task].prompt_version,
                    "prompt_sha256": TASKS[task].template_sha256[:12],
                    "schema_version": TASKS[task].schema_version,
                }
                for task in self.config.tasks
            },
            "structured_output_mode": self.runner.mode,
            "sample": self.design,
            "requests": {
                "sent": self.budget.calls,
                "judgements_fresh": c.fresh,
                "judgements_cached": c.cached,
                "failed": c.failed,
                "over_budget": c.over_budget,
                "retries": c.retries,
                "reasks": c.reasks,
                "mode_probes": c.mode_probes,
            },
            "rows": dict(sorted(statuses.items())),
            "tokens": {"prompt": c.prompt_tokens, "completion": c.completion_tokens},
            "cost_usd": {
                "spent": round(self.budget.spent, 6),
                "estimated_upfront": round(self.budget.estimated, 6),
                "reconciled_with_usage_cost": c.reconciled,
                "over_estimate": self.budget.overruns,
                "prices": {m: self.runner.price_source.get(m, "unknown") for m in self.models},
            },
            "budget": {
                "max_calls": self.budget.max_calls,
                "max_cost_usd": self.budget.max_cost_usd,
                "ledger": self.budget.totals(),
            },
            "wall_seconds": round(self._elapsed, 2),
            "events_dropped_out_of_range": c.events_dropped,
            **({"failure_modes": self.failure_mode_counts()} if FAILURE_MODES in self.config.tasks else {}),
            "prompts_truncated": c.truncated_prompts,
            "failure_reasons": dict(c.failure_reasons.most_common(5)),
            "agreement": {
                "inter_judge": stats.inter_judge(self.entries, self.models, self.config.success_threshold),
                "ground_truth": results.ground_truth(
                    self.entries, self.truth, self.models, self.config.success_threshold
                ),
                "position_consistency": results.position_consistency(
                    self.entries, self.models, self.config.both_orders
                ),
            },
        }
