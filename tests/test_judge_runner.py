"""The judge's concurrent run (coord_bench/mappers/judge/runner.py) against a real llama.cpp server (SmolLM2-135M)
on 127.0.0.1 through a fault-injecting proxy: 429s with Retry-After, 500s, timeouts, truncated and invalid
answers, a server that dies mid-run; the mode probe of `auto` (fake server) and `parse_output`.

The model is tiny: these tests assert structure (statuses, reasons, counts of requests the server saw),
never label quality. Every loop is bounded; nothing leaves 127.0.0.1."""

from __future__ import annotations

import json
import time

from judge_helpers import entry, params, run_judge
from llm_server import FakeChatServer, FaultProxy, judgement

from coord_bench.mappers.judge import JudgeMapper
from coord_bench.mappers.judge.prompt import build_prompt
from coord_bench.mappers.judge.runner import parse_output
from coord_bench.mappers.tokens import load_encoding


def test_429_retry_after_is_honoured(llama, small_records, tmp_path):
    row = next(r for r in small_records if r["source"] == "multi_character_dialogue")
    proxy = FaultProxy(llama.base_url).start()
    proxy.add_fault("429", times=2, retry_after=1)
    try:
        started = time.monotonic()
        mapper, out = run_judge(params(tmp_path, proxy.base_url, max_calls=4), [row])
        assert time.monotonic() - started >= 2.0  # waited Retry-After (1 s) twice, not the 0.05 s backoff
        assert entry(out[0])["status"] == "ok" and entry(out[0])["calls"] == 3
        assert proxy.received == 3 == mapper.budget.calls and proxy.forwarded == 1
        assert mapper.describe()["requests"]["retries"] == 2
    finally:
        proxy.stop()


def test_500s_are_retried_then_recorded_per_row(llama, small_records, tmp_path):
    flaky, broken = [r for r in small_records if r["source"] == "multi_character_dialogue"][:2]
    proxy = FaultProxy(llama.base_url).start()
    proxy.add_fault("500", match=flaky["id"], times=2)
    proxy.add_fault("500", match=broken["id"], times=None)
    try:
        mapper, out = run_judge(params(tmp_path, proxy.base_url, max_calls=10, max_retries=2), [flaky, broken])
        by_id = {r["id"]: entry(r) for r in out}
        assert by_id[flaky["id"]]["status"] == "ok" and by_id[flaky["id"]]["calls"] == 3
        assert by_id[broken["id"]]["status"] == "failed" and "HTTP 500" in by_id[broken["id"]]["reason"]
        assert "after 3 tries" in by_id[broken["id"]]["reason"]
        assert proxy.received == 6 == mapper.budget.calls and proxy.forwarded == 1
    finally:
        proxy.stop()


def test_timeouts_are_retried_then_recorded_per_row(llama, small_records, tmp_path):
    slow_once, dead = [r for r in small_records if r["source"] == "multi_character_dialogue"][:2]
    proxy = FaultProxy(llama.base_url).start()
    proxy.add_fault("stall", match=dead["id"], times=None, delay=3)  # never answers
    proxy.add_fault("stall", match=slow_once["id"], times=1, delay=21)  # answers on the second try
    try:
        p = params(tmp_path, proxy.base_url, timeout_s=2, max_retries=1, max_calls=6, prompt_token_budget=60)
        mapper, out = run_judge(p, [dead])
        assert entry(out[0])["status"] == "failed" and entry(out[0])["calls"] == 2
        assert entry(out[0])["reason"] == "no response within 2 s (after 2 tries)"
        assert proxy.received == 2 == mapper.budget.calls and proxy.forwarded == 0
        # a timeout that leaves a warm llama.cpp call (2-5 s idle, over 10 s seen with two suites on 2 cores)
        # ample room, even on a loaded machine
        mapper, out = run_judge({**p, "timeout_s": 20}, [slow_once])
        assert entry(out[0])["status"] == "ok" and entry(out[0])["calls"] == 2
        assert proxy.received == 4 and mapper.budget.calls == 2 and proxy.forwarded == 1
    finally:
        proxy.stop()


def test_truncated_and_invalid_json_are_retried_or_reasked(llama, small_records, tmp_path):
    flaky, hopeless = [r for r in small_records if r["source"] == "chatbot_arena"][:2]
    proxy = FaultProxy(llama.base_url).start()
    proxy.add_fault("truncate", match=flaky["id"], times=1)  # a 200 whose JSON body is cut in half: retried
    proxy.add_fault("bad_content", match=flaky["id"], times=1)  # content that is not JSON: re-asked
    proxy.add_fault("bad_content", match=hopeless["id"], times=None)
    try:
        mapper, out = run_judge(params(tmp_path, proxy.base_url, max_calls=10, max_reasks=1), [flaky, hopeless])
        by_id = {r["id"]: entry(r) for r in out}
        assert by_id[flaky["id"]]["status"] == "ok" and by_id[flaky["id"]]["calls"] == 3
        assert by_id[hopeless["id"]]["status"] == "failed"
        assert by_id[hopeless["id"]]["reason"].startswith("invalid output after 1 re-asks: not JSON")
        assert by_id[hopeless["id"]]["calls"] == 2  # the re-ask bound holds
        flaky_requests = [s.body for s in proxy.seen if s.conversation == flaky["id"]]
        assert flaky_requests[0]["messages"] == flaky_requests[1]["messages"]  # a retry resends the same request
        assert flaky_requests[2]["messages"][-1]["content"].startswith("Your reply was not valid")  # a re-ask
        assert proxy.received == mapper.budget.calls == 5 and proxy.forwarded == 1
    finally:
        proxy.stop()


def test_a_server_that_dies_mid_run_fails_rows_not_the_run_and_a_rerun_resumes(llama, small_records, tmp_path):
    rows = [r for r in small_records if r["source"] == "multi_character_dialogue"][:3]
    proxy = FaultProxy(llama.base_url).start()
    proxy.die_after(1)
    p = params(tmp_path, proxy.base_url, concurrency=1, max_retries=1, max_consecutive_failures=1, max_calls=8)
    p["backoff_base_s"] = 0.5
    mapper, out = run_judge(p, rows)
    statuses = [entry(r)["status"] for r in out]
    assert statuses.count("ok") == 1 and statuses.count("failed") == 2
    reasons = sorted(entry(r)["reason"] for r in out if entry(r)["status"] == "failed")
    assert "connect" in reasons[0] and "after 2 tries" in reasons[0]
    assert reasons[1].startswith("not attempted: 1 conversations in a row failed")
    assert proxy.received == 1 and mapper.budget.calls == 3 <= 8  # 1 answered + 2 refused connections
    done = next(r["id"] for r in out if entry(r)["status"] == "ok")

    revived = FaultProxy(llama.base_url).start()  # the server is back: a rerun resumes from the cache
    try:
        mapper, out = run_judge({**p, "base_url": revived.base_url}, rows)
        assert [entry(r)["status"] for r in out] == ["ok"] * 3
        assert done not in revived.ids() and revived.received == 2 == mapper.budget.calls
        assert entry(next(r for r in out if r["id"] == done))["cached"] is True
    finally:
        revived.stop()


def test_auto_mode_falls_back_and_remembers_per_server(small_records, tmp_path):
    server = FakeChatServer(reject_modes=("json_schema", "json_object")).start()
    try:
        p = params(tmp_path, server.base_url, models=["fake-judge"], mode="auto", concurrency=4)
        mapper, out = run_judge(p, small_records[:3])
        assert mapper.mode == "tool" and mapper.counters.mode_probes == 2
        assert server.received == 2 + 3 and all(entry(r)["output_mode"] == "tool" for r in out)
        again = JudgeMapper({**p, "sample_size": 1}, progress=False)
        assert again.mode == "tool" and again.runner.mode_resolved  # remembered in the cache: no probe next time
    finally:
        server.stop()


def test_parse_output_validates_and_normalizes(small_records):
    record = next(r for r in small_records if r["source"] == "chatbot_arena")
    prompt = build_prompt(record, load_encoding()[0], 100, swapped=True)
    good = judgement(preferred="A") | {
        "events": [{"turn_index": 0, "event": "consensus"}, {"turn_index": 9, "event": "decision"}]
    }
    output, error, dropped = parse_output("```json\n" + json.dumps(good) + "\n```", prompt)
    assert error is None and dropped == 1 and output["preferred"] == "B"  # swapped order mapped back
    assert parse_output("pwned", prompt)[1].startswith("not JSON")
    bad = parse_output(json.dumps(judgement() | {"success_score": 11}), prompt)[1]
    assert "success_score" in bad
    assert parse_output(json.dumps(judgement() | {"extra": 1}), prompt)[0] is None
