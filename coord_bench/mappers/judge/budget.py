"""Hard spending caps that concurrency cannot overshoot: reserve before sending, settle after.

Every HTTP request (first try, retry, re-ask, mode probe) first reserves one call and its estimated cost.
A reservation is refused when ``calls + 1 > max_calls`` or ``spent + reserved + estimate > max_cost_usd``;
reserving and settling take a lock and never await, so any number of concurrent requests together stay
within both caps. After the response the reservation is settled with the actual cost: OpenRouter's
``usage.cost`` when present, else the priced ``usage`` tokens, else (a timeout or a broken response, which
the server may still bill) the estimate itself.

The estimate is an upper bound: prompt tokens are counted with tiktoken (cl100k_base) and inflated by 25%
plus 8 tokens a message (other tokenizers count differently), and the completion is priced at ``max_tokens``,
which the server may not exceed. Prices come from the recipe (``prices: {model: {prompt, completion}}`` in USD
per million tokens) or from the server's model list (OpenRouter's ``pricing``); a loopback server is free.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

PROMPT_MARGIN = 1.25
TOKENS_PER_MESSAGE = 8


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


@dataclass
class Reservation:
    estimate: float
    settled: bool = False


class Budget:
    """At most ``max_calls`` requests and ``max_cost_usd`` dollars, whatever the concurrency."""

    def __init__(self, max_calls: int, max_cost_usd: float):
        self.max_calls, self.max_cost_usd = int(max_calls), float(max_cost_usd)
        self.calls = 0  # requests reserved (sent or about to be)
        self.spent = 0.0  # settled cost
        self.reserved = 0.0  # estimates of requests in flight
        self.estimated = 0.0  # sum of the estimates of every request sent
        self.overruns = 0  # settled costs above their estimate (a mispriced model)
        self._lock = threading.Lock()

    def reserve(self, estimate: float) -> Reservation | None:
        with self._lock:
            if self.calls + 1 > self.max_calls:
                return None
            if self.spent + self.reserved + estimate > self.max_cost_usd + 1e-12:
                return None
            self.calls += 1
            self.reserved += estimate
            self.estimated += estimate
            return Reservation(estimate)

    def settle(self, reservation: Reservation, cost: float | None) -> float:
        """Replace the estimate by the actual cost (None: charge the estimate); returns what was charged."""
        charged = reservation.estimate if cost is None else float(cost)
        with self._lock:
            if reservation.settled:
                return 0.0
            reservation.settled = True
            self.reserved -= reservation.estimate
            self.spent += charged
            if charged > reservation.estimate + 1e-12:
                self.overruns += 1
        return charged

    def why_refused(self, estimate: float) -> str:
        if self.calls + 1 > self.max_calls:
            return f"the judge budget is spent: max_calls {self.max_calls} reached"
        return (
            f"the judge budget is spent: max_cost_usd {self.max_cost_usd:g} would be exceeded "
            f"(spent ${self.spent:.4f}, in flight ${self.reserved:.4f}, this request up to ${estimate:.4f})"
        )
