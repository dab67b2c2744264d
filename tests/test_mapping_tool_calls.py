"""Tool calls: OpenAI transcripts (grouped) and a flat agent event trace, both example recipes built on their
fixtures, loaded with ``datasets`` and checked row by row; tool tokens counted apart from agent output."""

from __future__ import annotations

import json

import pytest
from mapping_examples import FIXTURES, build_example, example_recipe, loaded_rows, manifest_counts, said
from test_mapping import build, records, stopped

from coord_bench.mappers.tokens import TokensMapper
from coord_bench.sources import check_mapping


def fixture_lines(*parts: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES.joinpath(*parts)).read_text(encoding="utf-8").splitlines()]


def openai_mapping() -> dict:
    """The example's mapping for transcripts written in a test: {id, messages} per line, no task or outcome."""
    mapping = example_recipe("tool_calls")["sources"][0]["mapping"]
    mapping = {k: v for k, v in mapping.items() if k not in ("task", "outcome", "group_by")}
    return mapping | {"files": "*.jsonl", "conversation_id": "id", "messages": "messages"}


def messages(row: dict) -> list[dict]:
    return [m for turn in row["turns"] for m in turn["messages"]]


def assert_tool_tokens_apart(row: dict) -> None:
    """Tool results count as tool tokens, never as agent output; the three shares add up to the total."""
    roles = {a["agent_id"]: a["role"] for a in row["agents"]}
    usage = row["annotations"]["token_usage"]
    share = {"user": 0, "tool": 0, "output": 0}
    for m in messages(row):
        share[roles[m["agent_id"]] if roles[m["agent_id"]] in ("user", "tool") else "output"] += m["n_tokens"]
    assert (usage["input_tokens"], usage["tool_tokens"], usage["output_tokens"]) == (
        share["user"], share["tool"], share["output"])  # fmt: skip
    assert usage["total_tokens"] == sum(share.values())
    assert sum(t["tool_tokens"] for t in usage["per_turn"]) == usage["tool_tokens"]


def test_tool_calling_runs_map_calls_results_tools_trials_and_rewards(tmp_path):
    out = build_example(tmp_path, "tool_calls")
    assert manifest_counts(out, "travel_desk") == (4, 4, 0)
    rows = loaded_rows(out, "travel_desk", tmp_path)
    assert set(rows) == {"0#0", "1#0", "1#1", "2#0"}  # task id and trial joined
    assert rows["1#0"]["split_group"] == rows["1#1"]["split_group"] != rows["0#0"]["split_group"]
    weather = rows["0#0"]
    assert said(weather) == [("user", "message"), ("planner", "message"), ("planner", "tool_call"),
                             ("planner", "tool_call"), ("get_weather", "tool_result"),
                             ("get_local_time", "tool_result"), ("writer", "message")]  # fmt: skip
    # the planner's message, with its content and its two parallel calls, is one turn
    assert [len(t["messages"]) for t in weather["turns"]] == [1, 3, 1, 1, 1]
    [source] = [r for r in json.loads(next(FIXTURES.glob("tool_calls/results/*.json")).read_text()) if
                (r["task_id"], r["trial"]) == (0, 0)]  # fmt: skip
    calls = [m["tool_call"] for m in messages(weather)]
    assert calls[2] == {"call_id": "call_wx1", "name": "get_weather",
                        "arguments": source["traj"][2]["tool_calls"][0]["function"]["arguments"]}  # fmt: skip
    assert json.loads(calls[2]["arguments"]) == {"city": "Lisbon", "unit": "celsius"}
    assert messages(weather)[2]["text"] == 'get_weather({"city": "Lisbon", "unit": "celsius"})'
    assert calls[4] == {"call_id": "call_wx1", "name": "get_weather", "arguments": None}  # the call it answers
    assert calls[5] == {"call_id": "call_tm1", "name": "get_local_time", "arguments": None}
    assert calls[0] is None and calls[1] is None and calls[6] is None
    assert messages(weather)[4]["text"] == source["traj"][3]["content"]
    assert [(a["agent_id"], a["role"]) for a in weather["agents"]] == [
        ("user", "user"), ("planner", "assistant"), ("get_weather", "tool"), ("get_local_time", "tool"),
        ("writer", "assistant")]  # fmt: skip
    # content null, or empty beside calls: no message of its own
    assert said(rows["1#0"]) == [("user", "message"), ("planner", "tool_call"), ("search_trains", "tool_result"),
                                 ("planner", "tool_call"), ("search_trains", "tool_result"),
                                 ("writer", "message")]  # fmt: skip
    assert said(rows["1#1"]) == [("user", "message"), ("planner", "tool_call"), ("search_trains", "tool_result"),
                                 ("planner", "message"), ("planner", "tool_call"), ("book_train", "tool_result"),
                                 ("writer", "message")]  # fmt: skip
    hello = rows["2#0"]
    assert said(hello) == [("user", "message"), ("writer", "message")]
    assert all(m["tool_call"] is None for m in messages(hello))
    assert [rows[i]["outcome"]["decision_success"] for i in sorted(rows)] == [True, False, True, True]
    assert rows["1#1"]["task"]["instruction"] == "Book me the cheapest train from Porto to Lisbon tomorrow."
    # what no path maps stays in extras, the calls' "type" too
    extras = json.loads(weather["extras"])
    assert extras["traj"][2] == {"tool_calls": [{"type": "function"}, {"type": "function"}]}
    assert extras["info"] == {"task": {"user_id": "ana_5521"}, "source": "user", "user_cost": 0.0021}
    assert extras["skipped_messages"] == 1
    for row in rows.values():
        assert_tool_tokens_apart(row)
    assert weather["annotations"]["token_usage"]["tool_tokens"] > 0
    card = (out / "README.md").read_text(encoding="utf-8")  # the column table documents each new field once
    for column in ("turns[].messages[].tool_call.arguments", "annotations.token_usage.tool_tokens"):
        assert card.count(f"| `{column}` |") == 1


def test_a_flat_agent_trace_maps_runs_steps_tools_and_outcomes(tmp_path):
    out = build_example(tmp_path, "event_log")
    assert manifest_counts(out, "research_team") == (4, 4, 0)  # four runs over two daily files
    rows = loaded_rows(out, "research_team", tmp_path)
    assert set(rows) == {"run-5f1c", "run-77aa", "run-9b02", "run-c4d9"}
    rivers = rows["run-5f1c"]
    assert rivers["source_locator"] == "traces/2025-03-04.jsonl#0" and rows["run-9b02"]["source_locator"] == (
        "traces/2025-03-05.jsonl#0")  # fmt: skip
    # turns are the graph's steps: two parallel calls in one, their two results in the next
    assert [[(m["agent_id"], m["kind"]) for m in t["messages"]] for t in rivers["turns"]] == [
        [("user", "message")],
        [("researcher", "tool_call"), ("researcher", "tool_call")],
        [("wiki_lookup", "tool_result"), ("wiki_lookup", "tool_result")],
        [("researcher", "message")],
        [("critic", "message")],
    ]
    assert [m["tool_call"]["call_id"] for m in messages(rivers)[1:5]] == ["call_r1", "call_r2", "call_r1", "call_r2"]
    assert [m["tool_call"]["name"] for m in messages(rivers)[1:5]] == ["wiki_lookup"] * 4
    assert [(a["agent_id"], a["role"], a["model"]) for a in rivers["agents"]] == [
        ("user", "user", None), ("researcher", "assistant", "gpt-4o-2024-08-06"), ("wiki_lookup", "tool", None),
        ("critic", "assistant", "gpt-4o-mini-2024-07-18")]  # fmt: skip
    assert rivers["task"]["input"] == "Which is longer, the Tagus or the Douro?"  # from the skipped run_started
    assert (rivers["timestamp"], rivers["duration_seconds"]) == (1741082400.15, pytest.approx(5.45))
    assert rivers["protocol"]["interaction"] == "multi_agent_graph"
    assert json.loads(rivers["extras"]) == {"skipped_messages": 2,
                                            "unmapped_event_keys": ["graph", "latency_ms", "seq", "usage"]}  # fmt: skip
    math = rows["run-77aa"]
    assert said(math) == [("user", "message"), ("researcher", "message"), ("researcher", "tool_call"),
                          ("python", "tool_result"), ("critic", "message")]  # fmt: skip
    failed, cut = rows["run-9b02"], rows["run-c4d9"]
    assert said(failed) == [("user", "message"), ("researcher", "tool_call"), ("wiki_lookup", "tool_result")]
    assert said(cut) == [("user", "message"), ("researcher", "message")]
    outcome = {i: (r["outcome"]["decision_success"], r["outcome"]["final_answer"]) for i, r in rows.items()}
    assert outcome == {"run-5f1c": (True, "the Tagus"), "run-77aa": (True, "391"), "run-9b02": (False, None),
                       "run-c4d9": (None, None)}  # fmt: skip
    assert json.loads(failed["extras"])["unmapped_event_keys"] == ["error", "graph", "is_error", "seq"]
    for row in rows.values():
        assert_tool_tokens_apart(row)


def test_a_result_of_a_call_the_log_lacks_keeps_its_id_without_a_name(tmp_path):
    """A truncated log: the result is kept, its call unknown."""
    root = tmp_path / "chats"
    root.mkdir()
    line = {"id": "c1", "messages": [{"role": "tool", "tool_call_id": "call_gone", "content": "42"},
                                     {"role": "assistant", "content": "It is 42."}]}  # fmt: skip
    (root / "c.jsonl").write_text(json.dumps(line) + "\n")
    out, _ = build(tmp_path, root, openai_mapping())
    row = records(out)["c1"]
    assert said(row) == [("tool", "tool_result"), ("assistant", "message")]
    assert messages(row)[0]["tool_call"] == {"call_id": "call_gone", "name": None, "arguments": None}


@pytest.mark.parametrize(
    ("message", "field", "reason"),
    [
        ({"role": "assistant", "content": None, "tool_calls": {"id": "x"}}, "messages.0.tool_calls",
         "expected a list of calls, found dict"),
        ({"role": "assistant", "content": None, "tool_calls": [{"id": "x", "function": {"arguments": "{}"}}]},
         "messages.0.tool_calls.0.function.name", "'name' is not a key of messages.0.tool_calls.0.function"),
        ({"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": 3}}]},
         "messages.0.tool_calls.0.function.arguments", "expected JSON text or an object, found int 3"),
        ({"role": "assistant", "content": None}, "messages.0.content", "expected text, found null"),
    ],
)  # fmt: skip
def test_a_bad_call_rejects_the_conversation_naming_the_field(tmp_path, message, field, reason):
    root = tmp_path / "chats"
    root.mkdir()
    (root / "c.jsonl").write_text(json.dumps({"id": "c1", "messages": [message]}) + "\n")
    [reject], _ = stopped(tmp_path, root, openai_mapping())  # its only conversation: the build stops
    assert reject["field"] == field and reason in reject["reason"]
    assert [f["field"] for f in reject["failures"]] == [field]  # a bad call is not also a missing text


BASE = {"messages": "m", "speaker": "s", "text": "t"}


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({**BASE, "tool_call": {"name": "fn"}}, "mapping.tool_call: needs mapping.tool_calls (the list of calls"),
        ({**BASE, "tool_calls": "calls", "tool_call": {"fn": "name"}},
         "mapping.tool_call: unknown field 'fn'; fields are: call_id, name, arguments"),
        ({**BASE, "tool_calls": "calls", "tool_call": "name"}, "mapping.tool_call: expected {call_id, name, arguments"),
        ({**BASE, "tool_calls": "calls", "tool_call": {"name": "a..b"}},
         "mapping.tool_call.name: 'a..b' is not a field path"),
        ({**BASE, "tool_call_id": ["a", 3]}, "mapping.tool_call_id: expected a field path"),
    ],
)  # fmt: skip
def test_invalid_tool_options_are_refused_naming_the_key(mapping, message):
    with pytest.raises(ValueError) as info:
        check_mapping(mapping)
    assert message in str(info.value)


def test_calls_laid_out_otherwise_are_read_through_tool_call_paths(tmp_path):
    """An Anthropic-like layout: calls as {id, name, input} with the arguments as an object."""
    root = tmp_path / "chats"
    root.mkdir()
    line = {"id": "c1", "messages": [
        {"role": "assistant", "content": "Checking.", "calls": [{"id": "tu_1", "name": "lookup", "input": {"q": "x"}}]},
        {"role": "tool", "answers": "tu_1", "content": "found x"}]}  # fmt: skip
    (root / "c.jsonl").write_text(json.dumps(line) + "\n")
    mapping = {"files": "*.jsonl", "conversation_id": "id", "messages": "messages", "speaker": "role",
               "text": "content", "tool_calls": "calls", "tool_call_id": "answers",
               "tool_call": {"call_id": "id", "name": "name", "arguments": "input"}}  # fmt: skip
    out, _ = build(tmp_path, root, mapping)
    row = records(out)["c1"]
    assert said(row) == [("assistant", "message"), ("assistant", "tool_call"), ("tool", "tool_result")]
    assert messages(row)[1]["tool_call"] == {"call_id": "tu_1", "name": "lookup", "arguments": '{"q": "x"}'}
    assert messages(row)[2]["tool_call"]["name"] == "lookup"
    # no role option: the speaker of a result is a tool, every other speaker an agent
    assert [(a["agent_id"], a["role"]) for a in row["agents"]] == [("assistant", "agent"), ("tool", "tool")]


def test_a_result_an_agent_reports_counts_as_tool_tokens_not_as_its_output(tmp_path):
    """AutoGen-style: the assistant runs the tool itself, so the result's speaker is an agent, not a tool."""
    root = tmp_path / "chats"
    root.mkdir()
    calls = [{"id": "c_1", "type": "function", "function": {"name": "run_sql", "arguments": '{"q": "select 1"}'}}]
    line = {"id": "c1", "messages": [
        {"role": "user", "content": "How many rows?"},
        {"role": "assistant", "name": "analyst", "content": None, "tool_calls": calls},
        {"role": "assistant", "name": "analyst", "tool_call_id": "c_1", "content": "count\n-----\n12345 rows in t"},
        {"role": "assistant", "name": "reviewer", "content": "There are 12345 rows."}]}  # fmt: skip
    (root / "c.jsonl").write_text(json.dumps(line) + "\n")
    out, _ = build(tmp_path, root, openai_mapping())
    row = records(out)["c1"]
    assert said(row) == [("user", "message"), ("analyst", "tool_call"), ("analyst", "tool_result"),
                         ("reviewer", "message")]  # fmt: skip
    assert {a["agent_id"]: a["role"] for a in row["agents"]}["analyst"] == "assistant"
    TokensMapper().apply([row])
    call, result, answer = (m["n_tokens"] for m in messages(row)[1:])
    usage = row["annotations"]["token_usage"]
    assert (usage["tool_tokens"], usage["output_tokens"]) == (result, call + answer)
    # the Gini compares what each agent wrote: the analyst's call, not the table it read back
    assert usage["coordination_overhead"] == pytest.approx(abs(call - answer) / (call + answer))
