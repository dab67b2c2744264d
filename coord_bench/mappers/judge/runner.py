"""The concurrent run of judge requests: cache first, then budget, retries, re-asks and mode probing.

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
import copy
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

from coord_bench.mappers.judge.budget import (
    LEDGER_FILE,
    Budget,
    BudgetRaiseRefused,
    Price,
    estimate_prompt_tokens,
    ledger_key,
)
from coord_bench.mappers.judge.cache import JudgeCache
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
from coord_bench.mappers.judge.config import JudgeConfig, JudgeConfigError
from coord_bench.mappers.judge.prompt import Prompt, reask_messages
from coord_bench.mappers.judge.tasks import COORDINATION, TASKS
from coord_bench.schema import validator

TRANSPORT_FAILURE = "transport"


@dataclass
class Job:
    row_id: str
    model: str
    order: int  # 0: as stored; 1: A and B swapped
    prompt: Prompt
    key: str
    task: str = COORDINATION


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
    attributions_dropped: int = 0
    truncated_prompts: int = 0
    failure_reasons: Counter = field(default_factory=Counter)


def run_sync(coro: Any) -> Any:
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


def read_reply(text: str | None, prompt: Prompt) -> tuple[dict[str, Any] | None, str | None]:
    """(the reply's JSON object as the model wrote it, error): parsed and checked against the output schema
    of the prompt's task."""
    if not text or not text.strip():
        return None, "the reply is empty"
    body = text.strip()
    fenced = re.match(r"^```(?:json)?\s*(.*?)\s*```$", body, re.DOTALL)
    if fenced:
        body = fenced.group(1)
    if not body.startswith("{") and "{" in body:
        body = body[body.index("{") : body.rindex("}") + 1]
    try:
        output = json.loads(body)
    except ValueError as err:
        return None, f"not JSON ({err})"
    errors = sorted(validator(TASKS[prompt.task].schema_file).iter_errors(output), key=lambda e: list(e.absolute_path))
    if errors:
        where = lambda e: "/".join(map(str, e.absolute_path)) or "<reply>"  # noqa: E731
        return None, "; ".join(f"{where(e)}: {e.message[:120]}" for e in errors[:3])
    return output, None


def parse_output(text: str | None, prompt: Prompt) -> tuple[dict[str, Any] | None, str | None, int]:
    """(output, error, items dropped): the reply read (``read_reply``) and checked against its conversation by
    its task (out-of-range events dropped, a swapped preference turned back, an attribution checked)."""
    raw, error = read_reply(text, prompt)
    if raw is None:
        return None, error, 0
    return TASKS[prompt.task].check(copy.deepcopy(raw), prompt)


class JudgeRunner:
    """Sends the planned requests of one run and keeps what they cost; one per JudgeMapper."""

    def __init__(self, config: JudgeConfig, progress: bool, check_key: bool, folder: Path | None, raise_cap: bool):
        self.config = config
        self.progress = progress
        self.public_url = public_url(config.base_url)  # the only form of base_url ever recorded
        self._key = os.environ.get(config.api_key_env) or None
        if check_key and self._key is None and not is_loopback(config.base_url):
            raise JudgeConfigError(
                f"the judge needs an API key for {self.public_url}: set the environment variable "
                f"${config.api_key_env} (or annotations.judge.api_key_env), or point base_url at a local server"
            )
        plain_http = urlsplit(config.base_url.strip()).scheme == "http"
        if self._key is not None and plain_http and not is_loopback(config.base_url):
            raise JudgeConfigError(
                f"refusing to send the API key from ${config.api_key_env} over plain http to {self.public_url}: "
                "use an https:// base_url (plain http is allowed only to a loopback server: 127.0.0.1, localhost, ::1)"
            )
        self.schemas = {name: task.schema for name, task in TASKS.items()}
        self.request_params = {"temperature": config.temperature, "max_tokens": config.max_tokens}
        cache_path = default_cache_path(config.cache_dir)
        self.cache = JudgeCache(cache_path)
        try:
            self.budget = Budget(
                config.max_calls,
                config.max_cost_usd,
                path=None if folder is None else cache_path.parent / LEDGER_FILE,
                key="memory" if folder is None else ledger_key(folder, list(config.models)),
                raise_cap=raise_cap,
            )
        except BudgetRaiseRefused as err:
            raise JudgeConfigError(str(err)) from None
        self.counters = Counters()
        self.prices: dict[str, Price] = {}
        self.price_source: dict[str, str] = {}
        self.mode: str | None = config.mode if config.mode != "auto" else known_mode(config.base_url)
        self.mode_fixed = config.mode != "auto"
        self.mode_resolved = self.mode is not None
        if not self.mode_resolved:
            remembered = self.cache.server_mode(self.public_url.rstrip("/"))
            self.mode, self.mode_resolved = (remembered, True) if remembered else ("json_schema", False)
        self.abort_reason: str | None = None
        self._consecutive_failures = 0
        self._pause_until = 0.0
        self._encoding = None
        self._estimates: dict[str, int] = {}
        self._schema_tokens: dict[str, int] = {}

    @property
    def encoding(self) -> Any:
        if self._encoding is None:
            from coord_bench.mappers.tokens import load_encoding

            self._encoding = load_encoding()[0]
        return self._encoding

    def estimate_tokens(self, messages: list[dict[str, str]], task: str = COORDINATION) -> int:
        key = hashlib.sha256(json.dumps([task, messages], sort_keys=True).encode()).hexdigest()
        if key not in self._estimates:  # retries resend the same messages: count them once
            if task not in self._schema_tokens:
                self._schema_tokens[task] = len(self.encoding.encode_ordinary(json.dumps(self.schemas[task])))
            self._estimates[key] = estimate_prompt_tokens(self.encoding, messages, self._schema_tokens[task])
        return self._estimates[key]

    def estimate_cost(self, model: str, prompt_tokens: int) -> float:
        price = self.prices.get(model, Price(0.0, 0.0))
        return price.cost(prompt_tokens, self.config.max_tokens)

    def resolve_prices_sync(self) -> None:
        """Prices for a dry run (asks the server's model list when the recipe gives none; costs no call)."""
        import httpx

        async def go() -> None:
            async with httpx.AsyncClient(timeout=30) as http:
                await self._resolve_prices(ChatClient(self.config.base_url, self._key, 30, http))

        run_sync(go())

    async def _resolve_prices(self, client: ChatClient) -> None:
        given = self.config.prices or {}
        for model in self.config.models:
            if model in given:
                entry = given[model]
                self.prices[model] = Price(float(entry["prompt"]) / 1e6, float(entry["completion"]) / 1e6)
                self.price_source[model] = "recipe"
        missing = [m for m in self.config.models if m not in self.prices]
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
            if is_loopback(self.config.base_url):
                self.prices[model] = Price(0.0, 0.0)
                self.price_source[model] = "local server: free"
            else:
                raise JudgeConfigError(
                    f"no price for judge model {model!r}: the server's model list has none; give "
                    f"annotations.judge.prices: {{{model}: {{prompt: USD_PER_1M, completion: USD_PER_1M}}}}"
                )

    async def run(self, jobs: list[Job]) -> dict[tuple[str, str, str, int], Result]:
        """Every job's result, keyed by (row id, model, task, order)."""
        import httpx

        p = self.config
        results: dict[tuple[str, str, str, int], Result] = {}
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        tls = ssl.create_default_context()  # one TLS context for all clients (each costs ~20 ms to load)
        async with contextlib.AsyncExitStack() as stack:
            https = [
                await stack.enter_async_context(httpx.AsyncClient(limits=limits, timeout=p.timeout_s, verify=tls))
                for _ in range(p.concurrency)
            ]  # one client (one connection) per request in flight: see ChatClient
            client = ChatClient(p.base_url, self._key, p.timeout_s, https)
            await self._resolve_prices(client)
            semaphore = asyncio.Semaphore(p.concurrency)
            self._mode_lock = asyncio.Lock()
            with tqdm(
                total=len(jobs), desc=f"judge ({', '.join(self.config.models)})", unit="req", disable=not self.progress
            ) as bar:

                async def one(job: Job) -> None:
                    try:
                        result = await self._judge(job, client, semaphore)
                    except Exception as err:  # a bug must not lose the build: record it on the row
                        result = Result("failed", f"internal error: {type(err).__name__}: {client.redact(str(err))}")
                    results[job.row_id, job.model, job.task, job.order] = result
                    self._count(result)
                    bar.update()
                    bar.set_postfix_str(
                        f"calls={self.budget.calls} cached={self.counters.cached} failed={self.counters.failed} "
                        f"cost=${self.budget.spent:.4f}",
                        refresh=False,
                    )

                await asyncio.gather(*(one(job) for job in jobs))
        return results

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
        p = self.config
        return min(p.max_backoff_s, p.backoff_base_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.5)

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
            if self._consecutive_failures >= self.config.max_consecutive_failures and not self.abort_reason:
                self.abort_reason = (
                    f"not attempted: {self._consecutive_failures} conversations in a row failed (last: {result.reason})"
                )
        elif result.status == "ok":
            self._consecutive_failures = 0
        return result

    async def _attempts(self, job: Job, client: ChatClient) -> Result:
        p = self.config
        messages = job.prompt.messages
        calls, cost, retries, reasks = 0, 0.0, 0, 0
        last_error: str | None = None
        while True:
            if self.abort_reason:
                return Result("failed", self.abort_reason, calls=calls, cost_usd=cost, kind="aborted")
            await self._wait_pause()
            prompt_tokens = self.estimate_tokens(messages, job.task)
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
                    reply = await client.send(mode, job.model, messages, self.schemas[job.task], self.request_params)
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
                    if retries > p.max_retries:
                        return self._failed(f"{err.reason} (after {retries} tries)", calls, cost, mode)
                    delay = err.retry_after if err.retry_after is not None else self._backoff(retries)
                    delay = min(delay, p.max_backoff_s)
                    self._pause_until = max(self._pause_until, time.monotonic() + delay)
                    continue
                except JudgeError as err:
                    cost += self.budget.settle(reservation, None if err.billed else 0.0, "failed")
                    last_error = err.reason
                    if not err.transient:
                        return Result("failed", err.reason, calls=calls, cost_usd=cost, mode=mode, kind="client")
                    retries += 1
                    self.counters.retries += 1
                    if retries > p.max_retries:
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
            raw, error = read_reply(reply.text, job.prompt)
            output, dropped = None, 0
            if raw is not None:
                output, error, dropped = TASKS[job.task].check(copy.deepcopy(raw), job.prompt)
            if output is not None:
                if job.task == COORDINATION:
                    self.counters.events_dropped += dropped
                else:
                    self.counters.attributions_dropped += dropped
                self.cache.put(
                    job.key,
                    job.model,
                    TASKS[job.task].prompt_version,
                    raw,  # what the model said: the check runs again on a cache hit
                    cost,
                    reply.prompt_tokens,
                    reply.completion_tokens,
                    mode,
                    calls,
                )
                return Result("ok", output=output, calls=calls, cost_usd=cost, mode=mode)
            if reply.finish_reason == "length":
                error += f" (the reply hit max_tokens={p.max_tokens})"
            reasks += 1
            last_error = f"invalid output: {error}"
            if reasks > p.max_reasks:
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
