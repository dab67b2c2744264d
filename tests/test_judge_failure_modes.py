"""The judge's failure-mode task (coord_bench/mappers/judge/failure_modes.py) and the provenance of judge labels.

Against the real llama.cpp server (SmolLM2-135M) on the real records: a MAST run validates against the
record schema and its own output schema, stays within the call cap and is served from the cache on a rerun.
Against fast fake servers: both tasks spend from one budget (in a process, and across a SIGKILL and rerun of
`label`), an attribution naming no agent or turn of the conversation is re-asked, then recorded as a failure,
and the swap-consistency confidence of both-orders judging. The tiny model proves the plumbing, never the
quality of its labels. 127.0.0.1 only; every wait bounded."""

from __future__ import annotations

import copy
import json
import sqlite3

import pytest
from judge_helpers import (
    assert_adds_up,
    cached,
    entry,
    kill_when,
    label_args,
    ledger_of,
    params,
    records_of,
    run_judge,
    start_label,
)
from llm_server import FakeChatServer, FaultProxy, by_task, failure_modes_judgement, is_failure_modes, judgement

from coord_bench.cli import main
from coord_bench.labels import LABEL_SCHEMA_VERSION, MAST_MODES, MAST_VALUES, MAST_VERSION, make_label
from coord_bench.mappers.judge import JudgeConfig, JudgeConfigError, JudgeMapper
from coord_bench.mappers.judge import failure_modes as fm
from coord_bench.mappers.judge.client import grammar_schema, strict_schema
from coord_bench.mappers.judge.prompt import TEMPLATE_SHA256
from coord_bench.mappers.judge.tasks import FAILURE_MODES, TASKS
from coord_bench.schema import validator

MAST_NAMES = [m.label for m in MAST_MODES]


def llm_labels(record):
    return [lb for lb in record["annotations"]["coordination"]["labels"] if lb["provenance"].startswith("llm:")]


def failed_debate(records):
    """A real DEBATE record whose final answer is wrong (the outcome set so, whatever the sample holds)."""
    record = copy.deepcopy(next(r for r in records if r["source"] == "debate"))
    record["outcome"]["answer_correct"] = False
    return record


def test_a_failure_mode_run_on_real_conversations_is_valid_budgeted_and_cached(llama, real_build, tmp_path):
    rows = records_of(real_build)
    # a real arena and a real dialogue conversation, short: the 14 modes make a long prompt and answer for a
    # tiny model on a shared CPU (minutes a request under load); attribution is tested on the fake server below
    records = [next(r for r in rows if r["source"] == s) for s in ("chatbot_arena", "multi_character_dialogue")]
    proxy = FaultProxy(llama.base_url, upstream_timeout=1200).start()
    try:
        p = params(tmp_path, proxy.base_url, tasks=["failure_modes"], max_tokens=300, max_calls=2, max_reasks=0,
                   prompt_token_budget=60, timeout_s=1200, max_retries=0, concurrency=1)  # fmt: skip
        mapper, out = run_judge(p, records)  # every record validates against the record schema
        assert proxy.received == mapper.budget.calls == 2
        counts = mapper.describe()["failure_modes"]
        assert sum(counts["judgements"].values()) == len(records) and counts["judgements"].get("ok", 0) >= 1
        assert counts["failed_conversations_asked_for_attribution"] == sum(bool(fm.failure_of(r)) for r in records)
        provenance = f"llm:smollm2@{fm.TEMPLATE_SHA256[:12]}"
        ok_rows = {}
        for record in out:
            labels = llm_labels(record)
            assert [lb["name"] for lb in labels][:14] == MAST_NAMES
            assert all(lb["provenance"] == provenance and lb["label_schema_version"] == LABEL_SCHEMA_VERSION
                       for lb in labels)  # fmt: skip
            assert record["annotations"]["coordination"]["judges"] == []  # the coordination task did not run
            if labels[0]["value"] is None:  # failed or over budget: every label null, with the reason
                assert all(lb["value"] is None and lb["reason"].split(":")[0] in ("failed", "over_budget")
                           for lb in labels)  # fmt: skip
                continue
            ok_rows[record["id"]] = labels
            assert all(lb["value"] in MAST_VALUES for lb in labels[:14])
            for blame in labels[14:]:
                assert blame["name"] == "who_when" and fm.failure_of(record)
                assert blame["value"] == blame["agent_id"] in {a["agent_id"] for a in record["agents"]}
                assert blame["turn_index"] in {t["index"] for t in record["turns"]}
        outputs = [json.loads(row[0]) for row in sqlite3.connect(tmp_path / "judge_cache" / "judge_cache.sqlite")
                   .execute("SELECT output FROM judgements WHERE prompt_version = 'fm-v1'")]  # fmt: skip
        assert len(outputs) == len(ok_rows)
        for output in outputs:  # what came back and was kept validates against the task's output schema
            assert list(validator("judge_failure_modes.schema.json").iter_errors(output)) == []
        sent = proxy.received
        again, out2 = run_judge(p, records)  # same cache: the ok judgements cost nothing
        assert again.counters.cached == len(ok_rows) and proxy.received - sent == again.budget.calls
        assert {r["id"]: llm_labels(r) for r in out2 if r["id"] in ok_rows} == ok_rows
    finally:
        proxy.stop()


def test_both_tasks_spend_from_one_budget_and_over_budget_labels_say_so(small_records, tmp_path):
    server = FakeChatServer(responder=by_task).start()
    try:
        p = params(tmp_path, server.base_url, models=["fake-judge"], tasks=["coordination", "failure_modes"],
                   max_calls=7, concurrency=1)  # fmt: skip
        assert JudgeMapper({k: v for k, v in p.items() if k != "sample_size"}, progress=False).sample_size() == 3
        mapper, out = run_judge(p, small_records)  # 6 rows: 12 requests planned, 7 allowed
        assert server.received == 7 == mapper.budget.calls
        fm_requests = sum(is_failure_modes(r) for r in server.requests)
        assert 0 < fm_requests < 7  # the two tasks interleave, row by row
        statuses = [entry(r)["status"] for r in out]
        assert statuses.count("ok") == 7 - fm_requests
        nulls = [r for r in out if llm_labels(r)[0]["value"] is None]
        assert len(nulls) == 6 - fm_requests
        reasons = {lb["reason"] for r in nulls for lb in llm_labels(r)}
        assert reasons == {"over_budget: the judge budget is spent: max_calls 7 reached"}
        described = mapper.describe()
        assert described["tasks"]["failure_modes"]["prompt_version"] == "fm-v1"
        assert described["failure_modes"]["judgements"] == {"ok": fm_requests, "over_budget": 6 - fm_requests}
    finally:
        server.stop()


def test_an_attribution_to_no_agent_of_the_conversation_is_reasked_then_recorded(real_build, tmp_path):
    record = failed_debate(records_of(real_build))

    def stranger_first(request):  # the re-ask (a third message) gets a valid answer
        return failure_modes_judgement(request, agent=None if len(request["messages"]) > 2 else "Nobody")

    server = FakeChatServer(responder=stranger_first).start()
    try:
        p = params(tmp_path, server.base_url, models=["fake-judge"], tasks=["failure_modes"], max_reasks=1)
        mapper, [out] = run_judge(p, [record])
        assert server.received == 2 and mapper.counters.reasks == 1
        reask = server.requests[1]["messages"][-1]["content"]
        assert "attribution/agent: 'Nobody' is not an agent of this conversation" in reask
        [blame] = [lb for lb in llm_labels(out) if lb["name"] == "who_when"]
        first = record["agents"][0]
        assert blame["agent_id"] == first["agent_id"] == blame["value"] and blame["turn_index"] == 0
    finally:
        server.stop()
    server = FakeChatServer(responder=lambda request: failure_modes_judgement(request, turn=999)).start()
    try:
        p = params(tmp_path / "2", server.base_url, models=["fake-judge"], tasks=["failure_modes"], max_reasks=1)
        mapper, [out] = run_judge(p, [record])
        assert server.received == 2  # asked once, re-asked once, then recorded on the row
        labels = llm_labels(out)
        assert [lb["name"] for lb in labels] == [*MAST_NAMES, "who_when"] and all(lb["value"] is None for lb in labels)
        assert "attribution/turn_index: 999 is not a turn of this conversation (turns 0 to" in labels[0]["reason"]
    finally:
        server.stop()


def test_an_attribution_of_a_conversation_that_did_not_fail_is_dropped_and_counted(small_records, tmp_path):
    record = next(r for r in small_records if r["source"] == "chatbot_arena" and r["outcome"]["winner"] == "model_a")
    record = copy.deepcopy(record)
    server = FakeChatServer(responder=lambda request: {**failure_modes_judgement(request),
                                                       "attribution": {"agent": "A", "turn_index": 0,
                                                                       "reason": "x"}}).start()  # fmt: skip
    try:
        p = params(tmp_path, server.base_url, models=["fake-judge"], tasks=["failure_modes"])
        mapper, [out] = run_judge(p, [record])
        assert fm.failure_of(record) is None and "FAILED" not in server.requests[0]["messages"][1]["content"]
        assert [lb["name"] for lb in llm_labels(out)] == MAST_NAMES  # no who_when
        assert mapper.describe()["failure_modes"]["attributions_dropped_not_failed"] == 1
    finally:
        server.stop()


def test_judge_labels_replace_earlier_judge_labels_and_keep_the_rules_and_humans(small_records, tmp_path):
    records = copy.deepcopy(small_records[:2])
    kept = [make_label("mast:1.3", "no", "rule:coord_bench.rules@rules-v2"), make_label("success", "true", "human:a")]
    for record in records:
        record["annotations"]["coordination"] = {"rules": None, "judges": [], "consensus": None, "labels": list(kept)}
    server = FakeChatServer(responder=by_task).start()
    try:
        p = params(tmp_path, server.base_url, models=["fake-judge"], tasks=["failure_modes"])
        _, out = run_judge(p, records)
        _, again = run_judge(p, out)  # a second run over its own output: no label twice
        for record in again:
            labels = record["annotations"]["coordination"]["labels"]
            assert labels[:2] == kept and [lb["name"] for lb in labels[2:]] == MAST_NAMES
    finally:
        server.stop()


@pytest.mark.parametrize(("said", "consistent", "confidence"), [("A", False, 0.5), ("tie", True, 1.0)])
def test_judge_entries_carry_provenance_and_the_swap_consistency_confidence(
    small_records, tmp_path, said, consistent, confidence
):
    server = FakeChatServer(responder=lambda request: judgement(preferred=said)).start()
    try:
        p = params(tmp_path, server.base_url, models=["fake-judge"], both_orders=True)
        _, out = run_judge(p, small_records)
        for record in out:
            judge = entry(record)
            assert judge["provenance"] == f"llm:fake-judge@{TEMPLATE_SHA256[:12]}"
            assert judge["label_schema_version"] == LABEL_SCHEMA_VERSION
            if record["protocol"]["interaction"] == "pairwise_comparison":
                assert judge["position_consistent"] is consistent and judge["confidence"] == confidence
                assert judge["preferred"] == "tie" if not consistent else judge["preferred"] == said
            else:
                assert judge["position_consistent"] is None and judge["confidence"] is None
    finally:
        server.stop()


def test_a_killed_label_of_both_tasks_reruns_within_its_cap(real_build, tmp_path):
    """`label` with both tasks behind a slow proxy is SIGKILLed with requests in flight; the rerun finishes
    and the server never sees more than the folder's cap, whichever task the requests were for."""
    folder = tmp_path / "build"
    import shutil

    shutil.copytree(real_build, folder)
    server = FakeChatServer(responder=by_task, models=("smollm2",)).start()
    proxy = FaultProxy(server.base_url, latency=0.5).start()
    cache = tmp_path / "cache"
    args = label_args(folder, cache, proxy.base_url, "--set", "tasks=[coordination, failure_modes]", calls=10,
                      sample=9)  # fmt: skip
    try:
        log = tmp_path / "killed.log"
        kill_when(start_label(args, log), lambda: cached(cache) >= 2, log)
        assert main(args) == 0
        assert server.received <= 10 and ledger_of(folder)["calls_sent"] == 10
        assert_adds_up(ledger_of(folder))
        rows = records_of(folder)
        judged = [r for r in rows if r["annotations"]["coordination"]["consensus"]["sampled"]]
        assert len(judged) == 9
        fm_ok = [r for r in rows if llm_labels(r) and llm_labels(r)[0]["value"] is not None]
        coord_ok = [r for r in rows if entry(r)["status"] == "ok"]
        assert fm_ok and coord_ok and len(fm_ok) + len(coord_ok) <= 10
        manifest = json.loads((folder / "build_manifest.json").read_text())
        assert manifest["recipe"]["annotations"]["judge"]["tasks"] == ["coordination", "failure_modes"]
        card = (folder / "README.md").read_text()
        assert "### Failure modes (MAST)" in card and "arXiv:2503.13657" in card
        assert all(f"| `{m.label}` | {m.category} | {m.name} |" in card for m in MAST_MODES)
    finally:
        proxy.stop()
        server.stop()


def test_unknown_tasks_are_refused_by_name():
    with pytest.raises(JudgeConfigError, match=r"annotations.judge.tasks: expected a list of coordination, failure_"):
        JudgeConfig.from_params({"tasks": ["coordination", "mast"]})
    assert JudgeConfig.from_params({"tasks": "failure_modes", "both_orders": True}).requests_per_row == 1
    both = JudgeConfig.from_params({"tasks": ["coordination", "failure_modes"], "both_orders": True})
    assert both.requests_per_row == 3


def test_the_failure_mode_schema_pins_the_taxonomy_and_reaches_servers_with_its_union():
    schema = TASKS[FAILURE_MODES].schema
    assert schema["x-taxonomy-version"] == MAST_VERSION  # the schema file and coord_bench/labels.py agree
    assert schema["properties"]["modes"]["required"] == [m.id for m in MAST_MODES]
    assert all(v["enum"] == list(MAST_VALUES) for v in schema["properties"]["modes"]["properties"].values())
    strict = strict_schema(schema)  # OpenAI / OpenRouter strict mode: every object closed, the null kept
    null, blame = strict["properties"]["attribution"]["anyOf"]
    assert null == {"type": "null"} and blame["additionalProperties"] is False and "maxLength" not in str(blame)
    grammar = grammar_schema(schema)  # llama.cpp: enums untyped, no x- keys
    assert not [k for k in grammar if k.startswith("x-")]
    assert "type" not in grammar["properties"]["modes"]["properties"]["1.1"]
