"""The mapping adapter: foreign multi-agent logs mapped by field paths, built through the real pipeline."""

import datetime as dt
import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from coord_bench.build import BuildPlan, run_build
from coord_bench.cli import main
from coord_bench.folder_swap import staging_path
from coord_bench.plan import BuildError
from coord_bench.sources import ADAPTERS, BUILTIN_SOURCES, SourceSpec, check_mapping

# The two recipes' mapping sections, as a README would show them.
CHAT_MAPPING = """
files: "*.json"
records: conversations          # the file is {"conversations": [...]}
conversation_id: id
messages: messages
speaker: [name, role]           # user messages have no name: their role is the speaker
role: role
role_map: {assistant: agent}
text: content
model: model?                   # only some messages name their model
skip: {role: system}
task: {input: task.prompt, references: task.reference}
outcome: {decision_success: outcome.solved, final_answer: outcome.answer}
interaction: multi_agent_chat
license: cc-by-4.0
"""

EVENTS_MAPPING = """
layout: flat                    # one event per line, consecutive events of a run form a conversation
files: "**/*.jsonl.gz"
conversation_id: run
turn_index: step                # events with the same step form one turn
speaker: agent
text: body
kind: kind
timestamp: t
skip: {kind: result}            # the closing result event is not a message ...
outcome: {decision_success: "success?"}  # ... but carries the outcome (absent in unfinished runs)
license: mit
"""


def chat_conversations():
    def conversation(cid, prompt, reference, answer, solved):
        return {
            "id": cid,
            "task": {"prompt": prompt, "reference": reference},
            "messages": [
                {"role": "system", "content": "You are a team of three."},
                {"role": "user", "content": prompt},
                {"role": "assistant", "name": "planner", "content": "Plan: compute it step by step.", "model": "m-1"},
                {"role": "assistant", "name": "coder", "content": f"print({answer})"},
                {"role": "assistant", "name": "critic", "content": f"Checked: {answer}.", "model": "m-2"},
            ],
            "outcome": {"solved": solved, "answer": answer} if solved is not None else None,
            "meta": {"cost_usd": 0.01},
        }

    return [
        conversation("c1", "What is 6*7?", "42", "42", True),
        conversation("c2", "What is 40+2?", "42", "41", False),
        conversation("c3", "Name a prime above 10.", "11", None, None),
    ]


def event(run, step, agent, body, t, kind="say", **more):
    return {"run": run, "step": step, "agent": agent, "kind": kind, "body": body, "t": t, "tokens": 7, **more}


def event_log():
    return [
        event("r1", 0, "alice", "I take the left half.", "2025-01-01T10:00:00Z"),
        event("r1", 0, "bob", "I take the right half.", "2025-01-01T10:00:05Z"),
        event("r1", 1, "alice", "Left half done.", "2025-01-01T10:01:00Z"),
        event("r1", 2, "bob", "Right half done, merging.", "2025-01-01T10:02:30Z"),
        event("r1", 3, "system", None, "2025-01-01T10:02:31Z", kind="result", success=True),
        event("r2", 0, "carol", "Who starts?", 1735725600),
        event("r2", 1, "alice", "You do.", 1735725660.5),
        event("r2", 2, "system", None, 1735725661, kind="result", success=False),
        event("r3", 5, "bob", "Still working.", "2025-01-02T08:00:00+01:00"),
    ]


def as_datetime(t):
    if isinstance(t, str):
        return dt.datetime.fromisoformat(t.replace("Z", "+00:00"))
    return dt.datetime.fromtimestamp(t, tz=dt.timezone.utc)


def write_chat(root):
    root.mkdir(parents=True)
    (root / "team_runs.json").write_text(json.dumps({"version": 2, "conversations": chat_conversations()}))
    return root


def write_events(root, events, name="logs/day1.jsonl.gz"):
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(e) + "\n" for e in events)
    return root


def build(tmp_path, root, mapping, name="my_logs"):
    mapping = yaml.safe_load(mapping) if isinstance(mapping, str) else mapping
    spec = SourceSpec(name=name, adapter="mapping", root=root, dataset="local", options={"mapping": mapping})
    out = tmp_path / "out"
    manifest = run_build(BuildPlan(sources=[spec], out_dir=out))
    return out, manifest


def stopped(tmp_path, root, mapping):
    """A build whose one source gives no record: it stops; (its rejects, from the staging folder, the error)."""
    with pytest.raises(BuildError) as stop:
        build(tmp_path, root, mapping)
    out = tmp_path / "out"
    return rejects(staging_path(out)), str(stop.value)


def records(out, config="all"):
    rows = [r for path in sorted((out / config).glob("*.parquet")) for r in pq.read_table(path).to_pylist()]
    return {r["source_id"]: r for r in rows}


def rejects(out):
    return [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]


def assert_accounted(manifest, read, normalized):
    source = manifest["sources"]["my_logs"]
    assert (source["read"], source["normalized"]) == (read, normalized)
    assert source["read"] == source["normalized"] + source["rejected"] + source["filtered"]


def test_openai_chat_transcripts_with_named_assistants(tmp_path):
    out, manifest = build(tmp_path, write_chat(tmp_path / "chat"), CHAT_MAPPING)
    assert main(["validate", str(out)]) == 0
    assert_accounted(manifest, read=3, normalized=3)
    assert manifest["sources"]["my_logs"]["adapter"] == "mapping"
    rows = records(out)
    assert set(rows) == {"c1", "c2", "c3"}
    c1 = rows["c1"]
    assert c1["id"] == "my_logs:c1" and c1["source_locator"] == "team_runs.json#0"
    assert [(a["agent_id"], a["role"], a["model"]) for a in c1["agents"]] == [
        ("user", "user", None),
        ("planner", "agent", "m-1"),
        ("coder", "agent", None),
        ("critic", "agent", "m-2"),
    ]
    # no turn key: each message is its own turn; the system message is skipped and counted
    assert c1["n_turns"] == 4 and c1["n_messages"] == 4
    assert [t["messages"][0]["agent_id"] for t in c1["turns"]] == ["user", "planner", "coder", "critic"]
    assert [m["message_id"] for t in c1["turns"] for m in t["messages"]] == [0, 1, 2, 3]
    assert c1["turns"][1]["messages"][0]["text"] == "Plan: compute it step by step."
    assert c1["task"]["input"] == "What is 6*7?" and c1["task"]["references"] == ["42"]
    assert c1["protocol"]["interaction"] == "multi_agent_chat"
    assert c1["provenance"]["source_license"] == "cc-by-4.0"
    outcome = {k: c1["outcome"][k] for k in ("decision_success", "final_answer", "answer_correct", "winner")}
    assert outcome == {"decision_success": True, "final_answer": "42", "answer_correct": True, "winner": None}
    assert (rows["c2"]["outcome"]["final_answer"], rows["c2"]["outcome"]["answer_correct"]) == ("41", False)
    assert rows["c3"]["outcome"]["decision_success"] is None and rows["c3"]["outcome"]["answer_correct"] is None
    # unmapped fields are kept, with their nesting; fully mapped messages become null
    extras = json.loads(c1["extras"])
    assert extras == {"meta": {"cost_usd": 0.01}, "skipped_messages": 1}


def test_flat_gzipped_event_log_with_a_turn_counter(tmp_path):
    out, manifest = build(tmp_path, write_events(tmp_path / "events", event_log()), EVENTS_MAPPING)
    assert main(["validate", str(out)]) == 0
    assert_accounted(manifest, read=3, normalized=3)
    rows = records(out)
    r1, r2, r3 = rows["r1"], rows["r2"], rows["r3"]
    assert r1["source_locator"] == "logs/day1.jsonl.gz#0" and r2["source_locator"] == "logs/day1.jsonl.gz#5"
    # step 0 holds two messages; the result event is skipped
    assert [[(m["agent_id"], m["text"]) for m in t["messages"]] for t in r1["turns"]] == [
        [("alice", "I take the left half."), ("bob", "I take the right half.")],
        [("alice", "Left half done.")],
        [("bob", "Right half done, merging.")],
    ]
    assert (r1["n_turns"], r1["n_messages"], r1["n_agents"]) == (3, 4, 2)
    assert [a["agent_id"] for a in r1["agents"]] == ["alice", "bob"]
    assert {a["role"] for a in r1["agents"]} == {"agent"}
    assert r1["turns"][0]["messages"][0]["kind"] == "say"
    # ISO-8601 and Unix seconds both become Unix seconds
    assert [m["timestamp"] for t in r1["turns"] for m in t["messages"]] == [
        1735725600.0,
        1735725605.0,
        1735725660.0,
        1735725750.0,
    ]
    assert r1["timestamp"] == 1735725600.0 and r1["duration_seconds"] == 150.0
    assert r2["timestamp"] == 1735725600.0 and r2["duration_seconds"] == 60.5
    assert r3["timestamp"] == 1735801200.0 and r3["duration_seconds"] is None  # +01:00 taken into account
    assert [r["outcome"]["decision_success"] for r in (r1, r2, r3)] == [True, False, None]
    assert json.loads(r1["extras"]) == {"skipped_messages": 1, "unmapped_event_keys": ["tokens"]}
    assert r1["provenance"]["source_license"] == "mit"


def test_grouped_turns_and_a_turn_index_in_grouped_messages(tmp_path):
    root = tmp_path / "rounds"
    root.mkdir()
    nested = {
        "session": {"id": "s1", "user": "u7"},
        "rounds": [
            {"n": 1, "said": [{"who": "a", "msg": "hi"}, {"who": "b", "msg": "hello"}]},
            {"n": 2, "said": [{"who": "a", "msg": "bye"}]},
        ],
    }
    (root / "nested.jsonl").write_text(json.dumps(nested) + "\n")
    mapping = {"conversation_id": "session.id", "turns": "rounds", "messages": "said", "speaker": "who", "text": "msg"}
    out, manifest = build(tmp_path, root, mapping)
    [row] = records(out).values()
    assert [[m["text"] for m in t["messages"]] for t in row["turns"]] == [["hi", "hello"], ["bye"]]
    assert json.loads(row["extras"]) == {"session": {"user": "u7"}, "rounds": [{"n": 1}, {"n": 2}]}
    found, _ = stopped(tmp_path, root, {**mapping, "conversation_id": "session.idd"})
    assert found[0]["reason"].startswith(
        "field path 'session.idd' (conversation_id) matches nothing: 'idd' is not a key of session "
        "(keys: id, user) in record nested.jsonl#0"
    )

    # the same conversation as one message list with a round number, out of order
    (root / "nested.jsonl").unlink()
    flat_list = {"id": "s2", "said": [{"r": 2, "who": "a", "msg": "bye"}, {"r": 1, "who": "a", "msg": "hi"}]}
    flat_list["said"].append({"r": 1, "who": "b", "msg": "hello"})
    (root / "listed.json").write_text(json.dumps([flat_list]))
    mapping = {"conversation_id": "id", "messages": "said", "turn_index": "r", "speaker": "who", "text": "msg"}
    out, manifest = build(tmp_path, root, mapping)
    [row] = records(out).values()
    assert [[m["text"] for m in t["messages"]] for t in row["turns"]] == [["hi", "hello"], ["bye"]]
    assert assert_accounted(manifest, read=1, normalized=1) is None


def test_a_path_that_matches_nothing_names_the_path_the_key_and_the_first_record(tmp_path):
    root = write_chat(tmp_path / "chat")
    mapping = yaml.safe_load(CHAT_MAPPING)
    mapping["conversation_id"] = "idd"
    found, error = stopped(tmp_path, root, mapping)
    assert [r["kind"] for r in found] == ["missing_field"] * 3
    assert "source 'my_logs': all 3 of its records were rejected; the first:\n  team_runs.json#0 field 'idd'" in error
    first = found[0]
    assert first["locator"] == "team_runs.json#0" and first["field"] == "idd"
    assert first["reason"].startswith(
        "field path 'idd' (conversation_id) matches nothing: 'idd' is not a key of the record "
        "(keys: id, task, messages, outcome, meta) in record team_runs.json#0"
    )

    mapping = yaml.safe_load(CHAT_MAPPING)
    mapping["task"]["input"] = "task.promt"
    found, _ = stopped(tmp_path, root, mapping)
    assert "'promt' is not a key of task (keys: prompt, reference) in record team_runs.json#0" in found[0]["reason"]

    mapping = yaml.safe_load(CHAT_MAPPING)
    mapping["text"] = "contents"
    first = stopped(tmp_path, root, mapping)[0][0]
    assert first["field"] == "messages.1.contents"
    assert "'contents' is not a key of messages.1 (keys: role, content)" in first["reason"]

    mapping = yaml.safe_load(EVENTS_MAPPING)
    mapping["outcome"] = {"decision_success": "succes"}  # no '?': every run needs it
    found, _ = stopped(tmp_path, write_events(tmp_path / "events", event_log()), mapping)
    assert [r["kind"] for r in found] == ["missing_field"] * 3
    reason = found[0]["reason"]
    assert "field path 'succes' (outcome.decision_success) matches nothing: 'succes' is not a key of the event" in (
        reason
    )
    assert "any of the 5 events of conversation 'r1'; in its first, record logs/day1.jsonl.gz#0" in reason


def test_an_interleaved_conversation_is_rejected_whole_with_file_and_event_index(tmp_path):
    events = event_log()
    r1, r2, r3 = events[:5], events[5:8], events[8:]
    root = write_events(tmp_path / "events", r1[:2] + r2 + r1[2:] + r3)
    out, manifest = build(tmp_path, root, EVENTS_MAPPING)
    assert_accounted(manifest, read=4, normalized=2)
    assert set(records(out)) == {"r2", "r3"}
    found = rejects(out)
    assert [(r["locator"], r["kind"]) for r in found] == [
        ("logs/day1.jsonl.gz#0", "interleaved"),
        ("logs/day1.jsonl.gz#5", "interleaved"),
    ]
    assert found[0]["reason"].startswith(
        "conversation 'r1' is not contiguous in logs/day1.jsonl.gz: it reappears at event #5 after "
        "conversation 'r2' started (its parts start at events #0, #5)."
    )
    assert "sort the file by conversation id" in found[0]["reason"]
    assert main(["validate", str(out)]) == 0


def test_a_broken_event_line_is_rejected_alone_and_its_conversation_goes_on(tmp_path):
    lines = [json.dumps(e) for e in event_log()]
    lines.insert(2, '{"run": "r1", "step": 1, "agent": ')
    path = tmp_path / "events" / "day.jsonl"
    path.parent.mkdir()
    path.write_text("\n".join(lines) + "\n")
    mapping = {**yaml.safe_load(EVENTS_MAPPING), "files": "*.jsonl"}
    out, manifest = build(tmp_path, path.parent, mapping)
    assert_accounted(manifest, read=4, normalized=3)
    [reject] = rejects(out)
    assert (reject["locator"], reject["kind"]) == ("day.jsonl#2", "unreadable")
    assert records(out)["r1"]["n_messages"] == 4


def test_parquet_event_log_builds_like_the_jsonl(tmp_path):
    jsonl_out, _ = build(tmp_path / "a", write_events(tmp_path / "events", event_log()), EVENTS_MAPPING)
    # a Parquet timestamp column; `success` is a column of every row, null where the JSONL lacks it
    rows = [{**e, "t": as_datetime(e["t"]), "success": e.get("success")} for e in event_log()]
    root = tmp_path / "pq"
    root.mkdir()
    pq.write_table(pa.Table.from_pylist(rows), root / "events.parquet")
    assert pa.types.is_timestamp(pq.read_schema(root / "events.parquet").field("t").type)
    mapping = {**yaml.safe_load(EVENTS_MAPPING), "files": "*.parquet"}
    out, manifest = build(tmp_path / "b", root, mapping)
    assert main(["validate", str(out)]) == 0
    assert_accounted(manifest, read=3, normalized=3)
    got, expected = records(out), records(jsonl_out)
    assert set(got) == {"r1", "r2", "r3"}
    for run in got:
        assert got[run]["turns"] == expected[run]["turns"]
        assert got[run]["outcome"] == expected[run]["outcome"]
    assert got["r1"]["source_locator"] == "events.parquet#0"


def test_a_recipe_with_a_mapping_source_builds_from_the_command_line(tmp_path):
    recipe = {
        "name": "my_team",
        "sources": [
            {
                "name": "my_logs",
                "adapter": "mapping",
                "location": {"path": str(write_chat(tmp_path / "chat"))},
                "mapping": yaml.safe_load(CHAT_MAPPING),
            }
        ],
        "output": {"dir": str(tmp_path / "out")},
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["build", str(tmp_path / "recipe.yaml"), "--no-progress"]) == 0
    assert main(["validate", str(tmp_path / "out")]) == 0
    assert set(records(tmp_path / "out", "my_logs")) == {"c1", "c2", "c3"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (None, "the mapping adapter needs a 'mapping' section"),
        ({"layout": "tree", "speaker": "a", "text": "b"}, "mapping.layout: expected 'grouped' or 'flat', found 'tree'"),
        ({"layout": "flat", "speaker": "a", "text": "b"}, "mapping.conversation_id: required in the flat layout"),
        ({"speaker": "a", "text": "b"}, "mapping.messages: required in the grouped layout"),
        ({"messages": "m", "text": "b"}, "mapping.speaker: required"),
        ({"messages": "m", "speaker": "a"}, "mapping.text: required"),
        ({"messages": "m", "speker": "a", "text": "b"}, "unknown option 'speker' (did you mean 'speaker'?)"),
        ({"messages": "m", "speaker": "a", "text": "b?"}, "mapping.text: 'b?' cannot be optional"),
        ({"messages": "m..x", "speaker": "a", "text": "b"}, "mapping.messages: 'm..x' is not a field path"),
        ({"messages": "m", "turns": "t", "turn_index": "i", "speaker": "a", "text": "b"}, "give one of them"),
        ({"messages": "m", "speaker": "a", "text": "b", "role_map": {"bot": "robot"}}, "role_map.bot: expected one of"),
        ({"messages": "m", "speaker": "a", "text": "b", "outcome": {"winer": "w"}}, "unknown field 'winer'"),
        ({"messages": "m", "speaker": "a", "text": "b", "files": "/abs/*.json"}, "must be relative"),
    ],
)
def test_check_mapping_refuses_invalid_options(options, message):
    with pytest.raises(ValueError) as info:
        check_mapping(options)
    assert message in str(info.value)


def test_invalid_options_stop_the_build_before_anything_is_read(tmp_path):
    with pytest.raises(ValueError) as info:
        build(tmp_path, write_chat(tmp_path / "chat"), {"layout": "flat", "speaker": "name", "text": "content"})
    assert str(info.value).startswith("source 'my_logs': invalid mapping options:")
    assert not (tmp_path / "out").exists()
    assert ADAPTERS["mapping"].license.startswith("unknown") and "mapping" not in BUILTIN_SOURCES
    with pytest.raises(FileNotFoundError, match=r"no files under .* match mapping.files \(\*\.parquet\)"):
        build(tmp_path, tmp_path / "chat", {**yaml.safe_load(CHAT_MAPPING), "files": "*.parquet"})
