"""``JudgeMapper``: LLM-judge labels for a seeded stratified sample of the corpus, within a hard budget.

``prepare(corpus)`` draws the sample (``sampling.py``), renders each sampled conversation (``prompt.py``)
and judges it with every model in ``models`` (twice, A/B swapped, for pairwise conversations with
``both_orders``), concurrently up to ``concurrency`` requests, through the cache (``cache.py``) and the
budget (``budget.py``). ``apply(batch)`` writes ``annotations.coordination.judges`` (one entry per model,
with its provenance) and ``annotations.coordination.consensus`` into every record; rows outside the sample
get status ``not_sampled``, sampled rows the budget could not reach ``over_budget``.

Budget: with ``folder`` (a build) the caps are that folder's, kept in a ledger on disk across runs, crashes and
processes (see ``budget.py``); a rerun spends only what earlier runs left.

Per request: a per-request timeout; a 429 pauses every worker for its Retry-After (else exponential
backoff); 5xx, timeouts, broken connections and unreadable bodies are retried up to ``max_retries`` times
with exponential backoff and jitter (``backoff_base_s * 2^(k-1) * U(0.5, 1.5)``, capped at
``max_backoff_s``); an answer that fails the output schema is re-asked at most ``max_reasks`` times. What
still fails is recorded on its row (status ``failed`` and the reason) and never stops the build; after
``max_consecutive_failures`` conversations in a row fail on transport or server errors the rest are not
attempted (reason says so), so a dead server costs little.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import random
import re
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tqdm.auto import tqdm

from coord_bench.mappers.judge import agreement as stats
from coord_bench.mappers.judge.budget import (
    LEDGER_FILE,
    Budget,
    BudgetRaiseRefused,
    Price,
    estimate_prompt_tokens,
    ledger_key,
)
from coord_bench.mappers.judge.cache import JudgeCache, request_key
from coord_bench.mappers.judge.client import (
    MODES,
    ChatClient,
    JudgeError,
    ModeRejected,
    RateLimited,
    is_loopback,
    known_mode,
    public_url,
)
from coord_bench.mappers.judge.prompt import (
    PROMPT_VERSION,
    Prompt,
    build_prompt,
    output_schema,
    output_schema_version,
    reask_messages,
)
from coord_bench.mappers.judge.sampling import sample_weight, stratified_sample, stratum_of
from coord_bench.mappers.layer import Layer, LayerContext
from coord_bench.schema import validator

DEFAULTS: dict[str, Any] = {
    "base_url": "https://openrouter.ai/api/v1",
    "api_key_env": "OPENROUTER_API_KEY",
    "models": ["openai/gpt-4o-mini"],
    "prompt_version": PROMPT_VERSION,
    "mode": "auto",
    "max_calls": 100,
    "max_cost_usd": 1.0,
    "concurrency": 4,
    "sample_seed": 0,
    "sample_size": None,  # default: as many rows as max_calls allows (max_calls // calls per row)
    "both_orders": False,
    "timeout_s": 60.0,
    "max_retries": 4,
    "max_reasks": 2,
    "max_tokens": 400,
    "temperature": 0.0,
    "prompt_token_budget": 3000,
    "backoff_base_s": 1.0,
    "max_backoff_s": 60.0,
    "max_consecutive_failures": 10,
    "success_threshold": 5,
    "prices": None,  # {model: {prompt: USD per 1M tokens, completion: USD per 1M tokens}}
    "cache_dir": None,  # folder of judge_cache.sqlite; default $COORD_BENCH_CACHE (or ~/.cache/coord_bench)/judge
}
RUN_OPTIONS = ("enabled", "raise_budget")  # how to run, not what to judge: never recorded in the manifest
COLUMNS = ["id", "source", "source_config", "protocol", "outcome", "task", "agents", "turns"]
TRANSPORT_FAILURE = "transport"


class JudgeConfigError(ValueError):
    """The judge cannot start (no key, no price, bad parameter); raised before any request is sent."""


@dataclass
class Job:
    row_id: str
    model: str
    order: int  # 0: as stored; 1: A and B swapped
    prompt: Prompt
    key: str


@dataclass
class Result:
    status: str  # ok, failed, over_budget
    reason: str | None = None
    output: dict[str, Any] | None = None
    cached: bool = False
    calls: int = 0
    cost_usd: float = 0.0
    mode: str | None = None
    kind: str | None = None  # why it failed: transport, output, client, budget


@dataclass
class Counters:
    fresh: int = 0
    cached: int = 0
    failed: int = 0
    over_budget: int = 0
    retries: int = 0
    reasks: int = 0
    mode_probes: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reconciled: int = 0  # requests whose cost came from the server's usage.cost
    events_dropped: int = 0
    truncated_prompts: int = 0
    failure_reasons: Counter = field(default_factory=Counter)


def _run_sync(coro: Any) -> Any:
    """asyncio.run, also from inside a running event loop (e.g. a notebook): then in a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as err:  # re-raised in the caller's thread
            box["error"] = err

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def default_cache_path(cache_dir: str | None) -> Path:
    from coord_bench.resources import default_cache_dir

    return (Path(cache_dir) if cache_dir else default_cache_dir() / "judge") / "judge_cache.sqlite"


def parse_output(text: str | None, prompt: Prompt) -> tuple[dict[str, Any] | None, str | None, int]:
    """(output, error, events dropped): the reply parsed and checked against the output schema."""
    if not text or not text.strip():
        return None, "the reply is empty", 0
    body = text.strip()
    fenced = re.match(r"^```(?:json)?\s*(.*?)\s*```$", body, re.DOTALL)
    if fenced:
        body = fenced.group(1)
    if not body.startswith("{") and "{" in body:
        body = body[body.index("{") : body.rindex("}") + 1]
    try:
        output = json.loads(body)
    except ValueError as err:
        return None, f"not JSON ({err})", 0
    errors = sorted(validator("judge_output.schema.json").iter_errors(output), key=lambda e: list(e.absolute_path))
    if errors:
        where = lambda e: "/".join(map(str, e.absolute_path)) or "<reply>"  # noqa: E731
        return None, "; ".join(f"{where(e)}: {e.message[:120]}" for e in errors[:3]), 0
    events = [e for e in output["events"] if e["turn_index"] in prompt.turn_indexes]
    dropped = len(output["events"]) - len(events)
    output["events"] = events
    if not prompt.pairwise:
        output["preferred"] = None
    elif prompt.swapped and output["preferred"] in ("A", "B"):
        output["preferred"] = {"A": "B", "B": "A"}[output["preferred"]]  # back to the stored order
    return output, None, dropped


class JudgeMapper(Layer):
    """Fills ``annotations.coordination.judges`` and ``.consensus``; see the module docstring.

    Its config stays the checked dict of ``DEFAULTS`` for now (no typed dataclass yet)."""

    name = "judge"
    reads = tuple(COLUMNS)
    writes = ("annotations",)

    @classmethod
    def from_params(cls, params: dict[str, Any], context: LayerContext) -> JudgeMapper:
        return cls(params, progress=context.progress, folder=context.budget_folder or context.out_dir)

    def __init__(
        self, params: dict[str, Any], progress: bool = True, check_key: bool = True, folder: Path | None = None
    ):
        """``folder``: the build folder whose budget ledger this run spends from (None: a budget for this run
        only). ``params["raise_budget"]``: allow caps above the ledger's."""
        unknown = sorted(set(params) - set(DEFAULTS) - set(RUN_OPTIONS))
        if unknown:
            raise JudgeConfigError(f"annotations.judge: unknown parameter(s) {', '.join(unknown)}")
        self.params = {**DEFAULTS, **{k: v for k, v in params.items() if k not in RUN_OPTIONS and v is not None}}
        self.given = {k: v for k, v in params.items() if k not in RUN_OPTIONS}  # as given, for the manifest
        p = self.params
        self.public_url = public_url(p["base_url"])  # the only form of base_url ever recorded
        if p["prompt_version"] != PROMPT_VERSION:
            raise JudgeConfigError(
                f"annotations.judge.prompt_version: this coord_bench has prompt {PROMPT_VERSION}, "
                f"not {p['prompt_version']!r}"
            )
        if p["mode"] not in ("auto", *MODES):
            raise JudgeConfigError(
                f"annotations.judge.mode: expected auto or one of {', '.join(MODES)}, got {p['mode']!r}"
            )
        if not p["models"]:
            raise JudgeConfigError("annotations.judge.models: name at least one judge model")
        self.models: list[str] = list(dict.fromkeys(p["models"]))
        self.progress = progress
        self._key = os.environ.get(p["api_key_env"]) or None
        if check_key and self._key is None and not is_loopback(p["base_url"]):
            raise JudgeConfigError(
                f"the judge needs an API key for {self.public_url}: set the environment variable "
                f"${p['api_key_env']} (or annotations.judge.api_key_env), or point base_url at a local server"
            )
        plain_http = urlsplit(p["base_url"].strip()).scheme == "http"
        if self._key is not None and plain_http and not is_loopback(p["base_url"]):
            raise JudgeConfigError(
                f"refusing to send the API key from ${p['api_key_env']} over plain http to {self.public_url}: "
                "use an https:// base_url (plain http is allowed only to a loopback server: 127.0.0.1, localhost, ::1)"
            )
        self.schema = output_schema()
        self.schema_version = output_schema_version()
        self.request_params = {"temperature": p["temperature"], "max_tokens": p["max_tokens"]}
        cache_path = default_cache_path(p["cache_dir"])
        self.cache = JudgeCache(cache_path)
        try:
            self.budget = Budget(
                p["max_calls"],
                p["max_cost_usd"],
                path=None if folder is None else cache_path.parent / LEDGER_FILE,
                key="memory" if folder is None else ledger_key(folder, self.models),
                raise_cap=bool(params.get("raise_budget")),
            )
        except BudgetRaiseRefused as err:
            raise JudgeConfigError(str(err)) from None
        self.counters = Counters()
        self.design: dict[str, Any] | None = None
        self.jobs: list[Job] = []
        self.results: dict[tuple[str, str, int], Result] = {}
        self.entries: dict[str, dict[str, dict[str, Any]]] = {}  # row id -> model -> judge entry
        self.truth: dict[str, dict[str, Any]] = {}  # row id -> native outcome, for ground-truth agreement
        self.prices: dict[str, Price] = {}
        self.price_source: dict[str, str] = {}
        self.mode: str | None = p["mode"] if p["mode"] != "auto" else known_mode(p["base_url"])
        self.mode_fixed = p["mode"] != "auto"
        self.mode_resolved = self.mode is not None
        if not self.mode_resolved:
            remembered = self.cache.server_mode(self.public_url.rstrip("/"))
            self.mode, self.mode_resolved = (remembered, True) if remembered else ("json_schema", False)
        self.abort_reason: str | None = None
        self._consecutive_failures = 0
        self._pause_until = 0.0
        self._encoding = None
        self._estimates: dict[str, int] = {}
        self._schema_tokens: int | None = None
        self._started = self._elapsed = 0.0

    # -- preparation -------------------------------------------------------------------------------------------

    @property
    def encoding(self) -> Any:
        if self._encoding is None:
            from coord_bench.mappers.tokens import load_encoding

            self._encoding = load_encoding()[0]
        return self._encoding

    def orders(self, record: dict[str, Any]) -> list[int]:
        pairwise = record["protocol"]["interaction"] == "pairwise_comparison"
        return [0, 1] if self.params["both_orders"] and pairwise else [0]

    def sample_size(self) -> int:
        if self.params["sample_size"] is not None:
            return int(self.params["sample_size"])
        per_row = len(self.models) * (2 if self.params["both_orders"] else 1)
        return int(self.params["max_calls"]) // per_row

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
        order, self.design = stratified_sample(rows, self.sample_size(), int(self.params["sample_seed"]))
        position = {row_id: i for i, row_id in enumerate(order)}
        prompts: dict[str, list[Prompt]] = {}
        for batch in corpus.batches(columns=COLUMNS):
            for record in batch:
                if record["id"] in position:
                    prompts[record["id"]] = [
                        build_prompt(record, self.encoding, int(self.params["prompt_token_budget"]), swapped=bool(o))
                        for o in self.orders(record)
                    ]
        self.jobs = []
        for row_id in order:
            for model in self.models:
                for order_index, prompt in enumerate(prompts[row_id]):
                    key = request_key(model, PROMPT_VERSION, self.schema, prompt.messages, self.request_params)
                    self.jobs.append(Job(row_id, model, order_index, prompt, key))
        self.counters.truncated_prompts = sum(1 for j in self.jobs if j.prompt.truncated and j.order == 0)

    def estimate_tokens(self, messages: list[dict[str, str]]) -> int:
        key = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
        if key not in self._estimates:  # retries resend the same messages: count them once
            if self._schema_tokens is None:
                self._schema_tokens = len(self.encoding.encode_ordinary(json.dumps(self.schema)))
            self._estimates[key] = estimate_prompt_tokens(self.encoding, messages, self._schema_tokens)
        return self._estimates[key]

    def estimate_cost(self, model: str, prompt_tokens: int) -> float:
        price = self.prices.get(model, Price(0.0, 0.0))
        return price.cost(prompt_tokens, int(self.params["max_tokens"]))

    def estimate(self) -> dict[str, Any]:
        """What judging the planned sample would send and cost at most (cached judgements cost nothing)."""
        to_send = [j for j in self.jobs if not self.cache.has(j.key)]
        prompt_tokens = sum(self.estimate_tokens(j.prompt.messages) for j in to_send)
        cost = sum(self.estimate_cost(j.model, self.estimate_tokens(j.prompt.messages)) for j in to_send)
        return {
            "rows_sampled": self.design["size"] if self.design else 0,
            "rows_total": self.design["population"] if self.design else 0,
            "requests_planned": len(self.jobs),
            "requests_cached": len(self.jobs) - len(to_send),
            "requests_to_send": len(to_send),
            "prompt_tokens": prompt_tokens,
            "completion_tokens_max": len(to_send) * int(self.params["max_tokens"]),
            "cost_usd_max": cost,
            "prices": {m: self.price_source.get(m, "unknown") for m in self.models},
            "max_calls": self.budget.max_calls,
            "max_cost_usd": self.budget.max_cost_usd,
            "ledger": self.budget.totals(),
        }

    # -- running ---------------------------------------------------------------------------------------------

    def prepare(self, corpus: Any) -> None:
        self.plan(corpus)
        self.budget.start()
        self._started = time.monotonic()
        _run_sync(self._run())
        self._elapsed = time.monotonic() - self._started
        self._combine()

    def resolve_prices_sync(self) -> None:
        """Prices for a dry run (asks the server's model list when the recipe gives none; costs no call)."""
        import httpx

        async def go() -> None:
            async with httpx.AsyncClient(timeout=30) as http:
                await self._resolve_prices(ChatClient(self.params["base_url"], self._key, 30, http))

        _run_sync(go())

    async def _resolve_prices(self, client: ChatClient) -> None:
        given = self.params["prices"] or {}
        for model in self.models:
            if model in given:
                entry = given[model]
                self.prices[model] = Price(float(entry["prompt"]) / 1e6, float(entry["completion"]) / 1e6)
                self.price_source[model] = "recipe"
        missing = [m for m in self.models if m not in self.prices]
        if not missing:
            return
        listing = {item.get("id"): item for item in await client.list_models() if isinstance(item, dict)}
        for model in missing:
            pricing = (listing.get(model) or {}).get("pricing") or {}
            try:
                self.prices[model] = Price(float(pricing["prompt"]), float(pricing["completion"]))
                self.price_source[model] = "server model list"
                continue
            except (KeyError, TypeError, ValueError):
                pass
            if is_loopback(self.params["base_url"]):
                self.prices[model] = Price(0.0, 0.0)
                self.price_source[model] = "local server: free"
            else:
                raise JudgeConfigError(
                    f"no price for judge model {model!r}: the server's model list has none; give "
                    f"annotations.judge.prices: {{{model}: {{prompt: USD_PER_1M, completion: USD_PER_1M}}}}"
                )

    async def _run(self) -> None:
        import httpx

        p = self.params
        todo = [j for j in self.jobs]
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        tls = ssl.create_default_context()  # one TLS context for all clients (each costs ~20 ms to load)
        async with contextlib.AsyncExitStack() as stack:
            https = [
                await stack.enter_async_context(
                    httpx.AsyncClient(limits=limits, timeout=float(p["timeout_s"]), verify=tls)
                )
                for _ in range(int(p["concurrency"]))
            ]  # one client (one connection) per request in flight: see ChatClient
            client = ChatClient(p["base_url"], self._key, float(p["timeout_s"]), https)
            await self._resolve_prices(client)
            semaphore = asyncio.Semaphore(int(p["concurrency"]))
            self._mode_lock = asyncio.Lock()
            with tqdm(
                total=len(todo), desc=f"judge ({', '.join(self.models)})", unit="req", disable=not self.progress
            ) as bar:

                async def one(job: Job) -> None:
                    try:
                        result = await self._judge(job, client, semaphore)
                    except Exception as err:  # a bug must not lose the build: record it on the row
                        result = Result("failed", f"internal error: {type(err).__name__}: {client.redact(str(err))}")
                    self.results[job.row_id, job.model, job.order] = result
                    self._count(result)
                    bar.update()
                    bar.set_postfix_str(
                        f"calls={self.budget.calls} cached={self.counters.cached} failed={self.counters.failed} "
                        f"cost=${self.budget.spent:.4f}",
                        refresh=False,
                    )

                await asyncio.gather(*(one(job) for job in todo))

    def _count(self, result: Result) -> None:
        c = self.counters
        if result.status == "ok":
            if result.cached:
                c.cached += 1
            else:
                c.fresh += 1
        elif result.status == "failed":
            c.failed += 1
            c.failure_reasons[(result.reason or "")[:80]] += 1
        else:
            c.over_budget += 1

    def _backoff(self, attempt: int) -> float:
        p = self.params
        return min(float(p["max_backoff_s"]), float(p["backoff_base_s"]) * 2 ** (attempt - 1)) * random.uniform(
            0.5, 1.5
        )

    async def _wait_pause(self) -> None:
        delay = self._pause_until - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _judge(self, job: Job, client: ChatClient, semaphore: asyncio.Semaphore) -> Result:
        hit = self.cache.get(job.key)
        if hit is not None:
            output, _, _ = parse_output(json.dumps(hit["output"]), job.prompt)
            if output is not None:
                return Result("ok", output=output, cached=True, cost_usd=hit["cost_usd"] or 0.0, mode=hit["mode"])
        async with semaphore:
            result = await self._attempts(job, client)
        if result.status == "failed" and result.kind in (TRANSPORT_FAILURE, "client"):
            self._consecutive_failures += 1
            if self._consecutive_failures >= int(self.params["max_consecutive_failures"]) and not self.abort_reason:
                self.abort_reason = (
                    f"not attempted: {self._consecutive_failures} conversations in a row failed (last: {result.reason})"
                )
        elif result.status == "ok":
            self._consecutive_failures = 0
        return result

    async def _attempts(self, job: Job, client: ChatClient) -> Result:
        p = self.params
        messages = job.prompt.messages
        calls, cost, retries, reasks = 0, 0.0, 0, 0
        last_error: str | None = None
        while True:
            if self.abort_reason:
                return Result("failed", self.abort_reason, calls=calls, cost_usd=cost, kind="aborted")
            await self._wait_pause()
            prompt_tokens = self.estimate_tokens(messages)
            estimate = self.estimate_cost(job.model, prompt_tokens)
            reservation = self.budget.reserve(estimate)
            while reservation is None and self.budget.refused_on == "cost" and self.budget.reserved > 1e-12:
                await asyncio.sleep(0.02)  # requests in flight usually settle below their estimate: wait for them
                reservation = self.budget.reserve(estimate)
            if reservation is None:
                reason = self.budget.refusal + (f"; last error: {last_error}" if last_error else "")
                return Result("over_budget", reason, calls=calls, cost_usd=cost, kind="budget")
            calls += 1
            probing = False
            if not self.mode_resolved:
                await self._mode_lock.acquire()
                probing = not self.mode_resolved
                if not probing:
                    self._mode_lock.release()
            mode = self.mode
            try:
                try:
                    reply = await client.send(mode, job.model, messages, self.schema, self.request_params)
                except ModeRejected as err:
                    self.budget.settle(reservation, 0.0, "failed")
                    self.counters.mode_probes += 1
                    if self.mode_fixed or mode == MODES[-1]:
                        return Result("failed", err.reason, calls=calls, cost_usd=cost, mode=mode, kind="client")
                    if self.mode == mode:
                        self.mode = MODES[MODES.index(mode) + 1]
                    continue
                except RateLimited as err:
                    self.budget.settle(reservation, 0.0, "failed")
                    retries += 1
                    self.counters.retries += 1
                    last_error = err.reason
                    if retries > int(p["max_retries"]):
                        return self._failed(f"{err.reason} (after {retries} tries)", calls, cost, mode)
                    delay = err.retry_after if err.retry_after is not None else self._backoff(retries)
                    delay = min(delay, float(p["max_backoff_s"]))
                    self._pause_until = max(self._pause_until, time.monotonic() + delay)
                    continue
                except JudgeError as err:
                    cost += self.budget.settle(reservation, None if err.billed else 0.0, "failed")
                    last_error = err.reason
                    if not err.transient:
                        return Result("failed", err.reason, calls=calls, cost_usd=cost, mode=mode, kind="client")
                    retries += 1
                    self.counters.retries += 1
                    if retries > int(p["max_retries"]):
                        return self._failed(f"{err.reason} (after {retries} tries)", calls, cost, mode)
                    await asyncio.sleep(self._backoff(retries))
                    continue
                if probing or not self.mode_resolved:
                    self.mode_resolved = True
                    self.cache.set_server_mode(self.public_url.rstrip("/"), mode)
            finally:
                if probing:
                    self._mode_lock.release()
            charged = self._actual_cost(job.model, reply)
            cost += self.budget.settle(reservation, charged)
            self.counters.prompt_tokens += reply.prompt_tokens or 0
            self.counters.completion_tokens += reply.completion_tokens or 0
            output, error, dropped = parse_output(reply.text, job.prompt)
            if output is not None:
                self.counters.events_dropped += dropped
                stored = dict(output)
                if job.prompt.swapped and stored["preferred"] in ("A", "B"):  # cache what the model said
                    stored["preferred"] = {"A": "B", "B": "A"}[stored["preferred"]]
                self.cache.put(
                    job.key,
                    job.model,
                    PROMPT_VERSION,
                    stored,
                    cost,
                    reply.prompt_tokens,
                    reply.completion_tokens,
                    mode,
                    calls,
                )
                return Result("ok", output=output, calls=calls, cost_usd=cost, mode=mode)
            if reply.finish_reason == "length":
                error += f" (the reply hit max_tokens={p['max_tokens']})"
            reasks += 1
            last_error = f"invalid output: {error}"
            if reasks > int(p["max_reasks"]):
                return Result(
                    "failed",
                    f"invalid output after {reasks - 1} re-asks: {error}",
                    calls=calls,
                    cost_usd=cost,
                    mode=mode,
                    kind="output",
                )
            self.counters.reasks += 1
            messages = reask_messages(job.prompt, reply.text, error)

    def _failed(self, reason: str, calls: int, cost: float, mode: str | None) -> Result:
        return Result("failed", reason, calls=calls, cost_usd=cost, mode=mode, kind=TRANSPORT_FAILURE)

    def _actual_cost(self, model: str, reply: Any) -> float | None:
        if reply.cost_usd is not None:
            self.counters.reconciled += 1
            return reply.cost_usd
        if reply.prompt_tokens is not None and reply.completion_tokens is not None and model in self.prices:
            return self.prices[model].cost(reply.prompt_tokens, reply.completion_tokens)
        return None

    # -- results ---------------------------------------------------------------------------------------------

    def _entry(self, model: str, results: list[Result]) -> dict[str, Any]:
        base = {
            **self._blank(model),
            "output_mode": next((r.mode for r in results if r.mode), None),
            "calls": sum(r.calls for r in results),
            "cost_usd": sum(r.cost_usd for r in results),
        }
        ok = [r for r in results if r.status == "ok"]
        if not ok:
            worst = next((r for r in results if r.status == "failed"), results[0])
            return {**base, "status": worst.status, "reason": worst.reason}
        first = ok[0].output
        levels = [r.output["agreement_level"] for r in ok]
        entry = {
            **base,
            "status": "ok",
            "reason": None,
            "success_score": sum(r.output["success_score"] for r in ok) / len(ok),
            "agreement_level": levels[0] if len(set(levels)) == 1 else stats.majority_level(levels),
            "efficiency_score": sum(r.output["efficiency_score"] for r in ok) / len(ok),
            "preferred": first["preferred"],
            "events": first["events"],
            "rationale": first["rationale"],
            "cached": all(r.cached for r in ok),
        }
        if len(ok) == 2:
            consistent = ok[0].output["preferred"] == ok[1].output["preferred"]
            entry["position_consistent"] = consistent
            entry["preferred"] = first["preferred"] if consistent else "tie"
        elif len(results) == 2:
            other = next(r for r in results if r.status != "ok")
            entry["reason"] = f"judged in one order only; the other: {other.status}: {other.reason}"
        return entry

    def _combine(self) -> None:
        grouped: dict[tuple[str, str], list[Result]] = {}
        for job in self.jobs:
            grouped.setdefault((job.row_id, job.model), []).append(self.results[job.row_id, job.model, job.order])
        self.entries = {}
        for (row_id, model), results in grouped.items():
            self.entries.setdefault(row_id, {})[model] = self._entry(model, results)

    def consensus(self, record: dict[str, Any], entries: list[dict[str, Any]], sampled: bool) -> dict[str, Any]:
        ok = [e for e in entries if e["status"] == "ok"]
        stratum = stratum_of(record)
        score = stats.median([e["success_score"] for e in ok])
        return {
            "sampled": sampled,
            "stratum": stratum,
            "sample_weight": sample_weight(self.design, stratum) if self.design and sampled else None,
            "n_judges": len(ok),
            "success_score": score,
            "success": None if score is None else score >= float(self.params["success_threshold"]),
            "agreement_level": stats.majority_level([e["agreement_level"] for e in ok]),
            "efficiency_score": stats.median([e["efficiency_score"] for e in ok]),
            "preferred": stats.majority_preference([e["preferred"] for e in ok if e["preferred"] is not None]),
        }

    def apply(self, batch: list[dict[str, Any]]) -> None:
        for record in batch:
            by_model = self.entries.get(record["id"])
            sampled = by_model is not None
            if by_model is None:
                reason = f"outside the judge's stratified sample (seed {self.params['sample_seed']})"
                by_model = {m: self._not_sampled(m, reason) for m in self.models}
            entries = [by_model[m] for m in self.models]
            annotations = record["annotations"]
            coordination = annotations.get("coordination") or {"rules": None, "judges": [], "consensus": None}
            coordination["judges"] = entries
            coordination["consensus"] = self.consensus(record, entries, sampled)
            annotations["coordination"] = coordination

    def _blank(self, model: str) -> dict[str, Any]:
        """A judge entry with no verdict yet: provenance set, every label null."""
        return {
            "model": model,
            "prompt_version": PROMPT_VERSION,
            "schema_version": self.schema_version,
            "status": None,
            "reason": None,
            "success_score": None,
            "agreement_level": None,
            "efficiency_score": None,
            "preferred": None,
            "events": [],
            "rationale": None,
            "position_consistent": None,
            "output_mode": None,
            "calls": None,
            "cached": None,
            "cost_usd": None,
        }

    def _not_sampled(self, model: str, reason: str) -> dict[str, Any]:
        return {**self._blank(model), "status": "not_sampled", "reason": reason}

    # -- report ----------------------------------------------------------------------------------------------

    def ground_truth(self) -> dict[str, Any]:
        threshold = float(self.params["success_threshold"])
        out: dict[str, Any] = {}
        for label, judge_of in [("consensus", None), *[(m, m) for m in self.models]]:
            arena_truth, arena_pred, pref_hits, pref_n, debate_truth, debate_pred = [], [], 0, 0, [], []
            for row_id, by_model in self.entries.items():
                ok = [e for m, e in by_model.items() if e["status"] == "ok" and (judge_of is None or m == judge_of)]
                if not ok:
                    continue
                score = stats.median([e["success_score"] for e in ok])
                preferred = stats.majority_preference([e["preferred"] for e in ok if e["preferred"] is not None])
                truth = self.truth.get(row_id, {})
                if truth.get("kind") == "pairwise_comparison" and truth.get("winner"):
                    arena_truth.append(truth["winner"] in ("model_a", "model_b"))
                    arena_pred.append(score >= threshold)
                    if preferred is not None:
                        pref_n += 1
                        expected = {"model_a": "A", "model_b": "B"}.get(truth["winner"], "tie")
                        pref_hits += preferred == expected
                elif truth.get("answer_correct") is not None:
                    debate_truth.append(truth["answer_correct"])
                    debate_pred.append(score >= threshold)
            out[label] = {
                "arena_success_vs_decisive_winner": stats.binary_agreement(arena_truth, arena_pred),
                "arena_preferred_vs_winner": {"n": pref_n, "accuracy": pref_hits / pref_n if pref_n else None},
                "debate_success_vs_answer_correct": stats.binary_agreement(debate_truth, debate_pred),
            }
        return out

    def position_consistency(self) -> dict[str, Any]:
        if not self.params["both_orders"]:
            return {"note": "both_orders is off: each conversation was judged in one order"}
        out = {}
        for model in self.models:
            flags = [
                by_model[model]["position_consistent"]
                for by_model in self.entries.values()
                if by_model.get(model, {}).get("position_consistent") is not None
            ]
            out[model] = {
                "pairs": len(flags),
                "consistent": sum(flags),
                "rate": sum(flags) / len(flags) if flags else None,
            }
        return out

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
            "models": self.models,
            "base_url": self.public_url,
            "api_key_env": self.params["api_key_env"],
            "prompt_version": PROMPT_VERSION,
            "schema_version": self.schema_version,
            "structured_output_mode": self.mode,
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
                "prices": {m: self.price_source.get(m, "unknown") for m in self.models},
            },
            "budget": {
                "max_calls": self.budget.max_calls,
                "max_cost_usd": self.budget.max_cost_usd,
                "ledger": self.budget.totals(),
            },
            "wall_seconds": round(self._elapsed, 2),
            "events_dropped_out_of_range": c.events_dropped,
            "prompts_truncated": c.truncated_prompts,
            "failure_reasons": dict(c.failure_reasons.most_common(5)),
            "agreement": {
                "inter_judge": stats.inter_judge(self.entries, self.models, float(self.params["success_threshold"])),
                "ground_truth": self.ground_truth(),
                "position_consistency": self.position_consistency(),
            },
        }
