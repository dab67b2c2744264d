"""The judge's call and cost caps in one process: the run's reservations hold under concurrency (fast fake
server) and `Budget` never overshoots across threads. The on-disk ledger that holds across processes, kills
and reruns is tested in test_judge_budget.py."""

from __future__ import annotations

import threading
import time

import pytest
from judge_helpers import entry, params, run_judge
from llm_server import FakeChatServer

from coord_bench.mappers.judge.budget import Budget


def test_call_cap_holds_under_concurrency(small_records, tmp_path):
    server = FakeChatServer(latency=0.2).start()
    try:
        p = params(tmp_path, server.base_url, models=["fake-judge"], concurrency=3, max_calls=4)
        mapper, out = run_judge(p, small_records)
        statuses = [entry(r)["status"] for r in out]
        assert statuses.count("ok") == 4 and statuses.count("over_budget") == 2
        assert server.received == 4 == mapper.budget.calls and server.peak_in_flight <= 3
        reason = next(entry(r)["reason"] for r in out if entry(r)["status"] == "over_budget")
        assert "max_calls 4 reached" in reason
    finally:
        server.stop()


def test_cost_cap_holds_and_is_reconciled_with_usage_cost(small_records, tmp_path):
    pricing = {"prompt": "0.000001", "completion": "0.000002"}  # USD per token, as OpenRouter lists them
    server = FakeChatServer(latency=0.05, pricing=pricing, cost=0.0005).start()
    try:
        p = params(tmp_path, server.base_url, models=["fake-judge"], concurrency=4, max_calls=100, max_cost_usd=0.003)
        mapper, out = run_judge(p, small_records)
        spent = mapper.budget.spent
        assert spent <= 0.003 and spent == pytest.approx(0.0005 * server.received)
        assert mapper.budget.estimated > spent  # the up-front estimate is an upper bound
        assert mapper.counters.reconciled == server.received == mapper.budget.calls
        statuses = [entry(r)["status"] for r in out]
        assert "over_budget" in statuses and statuses.count("ok") == server.received
        assert all(entry(r)["cost_usd"] == pytest.approx(0.0005) for r in out if entry(r)["status"] == "ok")
        assert mapper.describe()["cost_usd"]["prices"] == {"fake-judge": "server model list"}
    finally:
        server.stop()


def test_budget_reservations_never_overshoot_across_threads():
    budget = Budget(max_calls=50, max_cost_usd=1.0)
    granted = []

    def worker():
        for _ in range(40):
            reservation = budget.reserve(0.03)
            if reservation is not None:
                granted.append(reservation)
                time.sleep(0.001)
                budget.settle(reservation, 0.02)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(granted) == budget.calls <= 50 and budget.spent <= 1.0 + 1e-9 and budget.reserved == pytest.approx(0)
