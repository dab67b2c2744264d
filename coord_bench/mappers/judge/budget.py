"""Hard spending caps that concurrency, other processes and crashes cannot overshoot: a ledger on disk.

The caps belong to a build folder, not to a process. Every HTTP request (first try, retry, re-ask, mode
probe) first *reserves* one call and its estimated cost in a SQLite ledger (``judge_budget.sqlite`` beside the
judge cache), in a ``BEGIN IMMEDIATE`` transaction that is committed (fsync'ed) before the request is sent. A
reservation is refused when ``calls + 1 > max_calls`` or ``committed + estimate > max_cost_usd``, where
``calls`` and ``committed`` sum every request of the ledger, of this run and of every earlier run. After the
response the reservation is *settled* with its outcome (``answered``: a reply came back; ``failed``: an error
reply, a timeout, a broken connection) and its actual cost: OpenRouter's ``usage.cost`` when present, else the
priced ``usage`` tokens, else (a timeout or a broken response, which the server may still bill) the estimate.
A reservation a killed process never settled stays in the ledger as *lost*: its outcome is unknown and a
provider may have billed it, so it counts as spent, at its estimate. A rerun with the same caps therefore
spends only the remainder; the judge cache makes everything answered free anyway.

Ledger key: sha256 of the build folder's resolved path and the judge's sorted models; not the base URL, so
pointing the same judge at another endpoint (a proxy, a new port) spends from the same budget.
The ledger's caps are a ceiling: a run may ask for less, but asking for more (a raise) needs ``raise_cap``
(``--raise-budget``), on purpose. Without a folder (the Python API on records in memory) the ledger lives in
memory and holds for that one run.

The estimate is an upper bound: prompt tokens are counted with tiktoken (cl100k_base) and inflated by 25%
plus 8 tokens a message (other tokenizers count differently), and the completion is priced at ``max_tokens``,
which the server may not exceed. Prices come from the recipe (``prices: {model: {prompt, completion}}`` in USD
per million tokens) or from the server's model list (OpenRouter's ``pricing``); a loopback server is free.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROMPT_MARGIN = 1.25
TOKENS_PER_MESSAGE = 8
LEDGER_FILE = "judge_budget.sqlite"
KEYED_BY = "the build folder's resolved path and the judge's sorted models"
EPSILON = 1e-12


class BudgetRaiseRefused(ValueError):
    """A run asks for more than the ledger's caps without saying it means to raise them."""


@dataclass(frozen=True)
class Price:
    """USD per token."""

    prompt: float
    completion: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return self.prompt * prompt_tokens + self.completion * completion_tokens


def estimate_prompt_tokens(encoding: Any, messages: list[dict[str, str]], schema_tokens: int = 0) -> int:
    """Upper estimate of the prompt tokens a server counts for these messages (plus a schema it is sent,
    counted once by the caller)."""
    counted = sum(len(encoding.encode_ordinary(m.get("content") or "")) for m in messages) + schema_tokens
    return math.ceil(counted * PROMPT_MARGIN) + TOKENS_PER_MESSAGE * len(messages)


def ledger_key(folder: Path, models: list[str]) -> str:
    identity = {"folder": str(Path(folder).resolve()), "models": sorted(models)}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


@dataclass
class Reservation:
    id: int
    estimate: float
    settled: bool = False


class Budget:
    """At most ``max_calls`` requests and ``max_cost_usd`` dollars per ledger, whatever the concurrency.

    ``path`` None: an in-memory ledger for this run only. The attributes ``calls``, ``spent``, ``reserved`` and
    ``estimated`` count this run; ``totals()`` counts the whole ledger."""

    def __init__(
        self,
        max_calls: int,
        max_cost_usd: float,
        path: Path | None = None,
        key: str = "memory",
        raise_cap: bool = False,
    ):
        self.asked = (int(max_calls), float(max_cost_usd))
        self.key, self.path, self.raise_cap = key, path, raise_cap
        self.run = uuid.uuid4().hex
        self.calls = 0  # requests this run reserved (sent or about to be)
        self.spent = 0.0  # settled cost of this run
        self.reserved = 0.0  # estimates of this run's requests in flight
        self.estimated = 0.0  # sum of the estimates of every request this run sent
        self.overruns = 0  # settled costs above their estimate (a mispriced model)
        self.refusal: str | None = None  # why the last reservation was refused
        self.refused_on: str | None = None  # "calls" or "cost"
        self._lock = threading.Lock()
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path or ":memory:", timeout=60, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a reservation is on disk before its request leaves
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS ledgers (key TEXT PRIMARY KEY, max_calls INTEGER NOT NULL, "
            "max_cost_usd REAL NOT NULL, created REAL NOT NULL, updated REAL NOT NULL)"
        )
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS requests (id INTEGER PRIMARY KEY, ledger TEXT NOT NULL, run TEXT NOT NULL, "
            "estimate REAL NOT NULL, reserved REAL NOT NULL, outcome TEXT, cost_usd REAL, settled REAL)"
        )
        self.db.execute("CREATE INDEX IF NOT EXISTS requests_by_ledger ON requests (ledger)")
        self.max_calls, self.max_cost_usd = self._caps()

    def _caps(self) -> tuple[int, float]:
        """This run's caps: what it asks for, within the ledger's ceiling unless it raises it on purpose."""
        asked_calls, asked_cost = self.asked
        row = self.db.execute("SELECT max_calls, max_cost_usd FROM ledgers WHERE key = ?", (self.key,)).fetchone()
        if row is None or self.raise_cap:
            return asked_calls, asked_cost
        ceiling_calls, ceiling_cost = row
        if asked_calls > ceiling_calls or asked_cost > ceiling_cost + EPSILON:
            raise BudgetRaiseRefused(
                f"this build's judge budget is max_calls {ceiling_calls}, max_cost_usd {ceiling_cost:g} (the ledger "
                f"{self.path}); this run asks for max_calls {asked_calls}, max_cost_usd {asked_cost:g}. "
                "Raising a build's judge budget must be on purpose: pass --raise-budget"
            )
        return asked_calls, asked_cost

    def start(self) -> None:
        """Record the caps as the ledger's ceiling (first run, or a raise); called before the first request."""
        now = time.time()
        with self._transaction():
            row = self.db.execute("SELECT max_calls, max_cost_usd FROM ledgers WHERE key = ?", (self.key,)).fetchone()
            calls, cost = self.max_calls, self.max_cost_usd
            if row is None:
                self.db.execute("INSERT INTO ledgers VALUES (?, ?, ?, ?, ?)", (self.key, calls, cost, now, now))
            elif self.raise_cap and (calls > row[0] or cost > row[1] + EPSILON):
                self.db.execute(
                    "UPDATE ledgers SET max_calls = ?, max_cost_usd = ?, updated = ? WHERE key = ?",
                    (max(calls, row[0]), max(cost, row[1]), now, self.key),
                )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """A write transaction under this process's lock; BEGIN IMMEDIATE also excludes other processes."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def _committed(self) -> tuple[int, float]:
        """(requests, dollars) the whole ledger has committed: settled costs, plus estimates never settled."""
        calls, committed = self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(CASE WHEN outcome IS NULL THEN estimate ELSE cost_usd END), 0) "
            "FROM requests WHERE ledger = ?",
            (self.key,),
        ).fetchone()
        return calls, committed

    def reserve(self, estimate: float) -> Reservation | None:
        with self._transaction():  # check and insert as one, whoever else reserves on this ledger
            calls, committed = self._committed()
            if calls + 1 > self.max_calls:
                self.refused_on = "calls"
                self.refusal = f"the judge budget is spent: max_calls {self.max_calls} reached"
                return None
            if committed + estimate > self.max_cost_usd + EPSILON:
                self.refused_on = "cost"
                self.refusal = (
                    f"the judge budget is spent: max_cost_usd {self.max_cost_usd:g} would be exceeded (committed "
                    f"${committed:.4f}, of which in flight ${self.reserved:.4f}; this request up to ${estimate:.4f})"
                )
                return None
            cursor = self.db.execute(
                "INSERT INTO requests (ledger, run, estimate, reserved) VALUES (?, ?, ?, ?)",
                (self.key, self.run, estimate, time.time()),
            )
            reservation = Reservation(cursor.lastrowid, estimate)
        # committed: only now may the caller send the request
        with self._lock:
            self.calls += 1
            self.reserved += estimate
            self.estimated += estimate
        return reservation

    def settle(self, reservation: Reservation, cost: float | None, outcome: str = "answered") -> float:
        """Record the outcome and replace the estimate by the actual cost (None: charge the estimate); returns
        what was charged."""
        charged = reservation.estimate if cost is None else float(cost)
        with self._transaction():
            if reservation.settled:
                return 0.0
            self.db.execute(
                "UPDATE requests SET outcome = ?, cost_usd = ?, settled = ? WHERE id = ? AND outcome IS NULL",
                (outcome, charged, time.time(), reservation.id),
            )
            reservation.settled = True
            self.reserved -= reservation.estimate
            self.spent += charged
            if charged > reservation.estimate + EPSILON:
                self.overruns += 1
        return charged

    def totals(self) -> dict[str, Any]:
        """The whole ledger: every run's requests by outcome, and what remains of the caps."""
        with self._lock:
            row = self.db.execute(
                "SELECT COUNT(*), COUNT(DISTINCT run), COALESCE(SUM(outcome = 'answered'), 0), "
                "COALESCE(SUM(outcome = 'failed'), 0), COALESCE(SUM(outcome IS NULL AND run != ?), 0), "
                "COALESCE(SUM(outcome IS NULL AND run = ?), 0), "
                "COALESCE(SUM(CASE WHEN outcome IS NULL THEN estimate ELSE cost_usd END), 0) "
                "FROM requests WHERE ledger = ?",
                (self.run, self.run, self.key),
            ).fetchone()
        sent, runs, answered, failed, lost, in_flight, spent = row
        return {
            "key": self.key,
            "keyed_by": KEYED_BY if self.path is not None else "this run only (no build folder)",
            "max_calls": self.max_calls,
            "max_cost_usd": self.max_cost_usd,
            "runs": runs,  # that sent at least one request
            "calls_sent": sent,
            "answered": answered,
            "failed": failed,
            "lost_in_crash": lost,
            "in_flight": in_flight,
            "calls_remaining": max(self.max_calls - sent, 0),
            "spent_usd": round(spent, 6),
            "usd_remaining": round(max(self.max_cost_usd - spent, 0.0), 6),
        }

    def close(self) -> None:
        self.db.close()
