"""Speakers from structure in mapping recipes: per-agent histories, round-by-agent matrices and repeated ids.

Each shape's example recipe (builder_scripts/examples/) is built from the command line against its fixture
(tests/fixtures/mapping/<shape>/, written in the layout the tools produce), validated, loaded with
``datasets`` and checked row by row."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
import yaml
from test_mapping import assert_accounted, build, records, rejects, stopped

from coord_bench.cli import main
from coord_bench.sources import check_mapping

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures" / "mapping"


def example_mapping(shape):
    recipe = yaml.safe_load((REPO / "builder_scripts" / "examples" / f"{shape}.yaml").read_text())
    return recipe["sources"][0]["mapping"]


def build_example(shape, tmp_path, monkeypatch):
    """The example recipe built as its comment says (from the repository root); (rows by source id, manifest)."""
    out = tmp_path / "out"
    monkeypatch.chdir(REPO)
    recipe = f"builder_scripts/examples/{shape}.yaml"
    assert main(["build", recipe, "--no-progress", "--set", f"output.dir={out}"]) == 0
    assert main(["validate", str(out)]) == 0
    loaded = datasets.load_dataset(str(out), "all", cache_dir=str(tmp_path / "hf"))
    rows = [row for split in loaded.values() for row in split]
    manifest = json.loads((out / "build_manifest.json").read_text())
    return {row["source_id"]: row for row in rows}, manifest


def said(row):
    """Per turn: (speaker, kind, visible_message_ids) of each message, in message-id order."""
    ids = [m["message_id"] for t in row["turns"] for m in t["messages"]]
    assert ids == list(range(len(ids)))
    return [[(m["agent_id"], m["kind"], m["visible_message_ids"]) for m in t["messages"]] for t in row["turns"]]


def texts(row):
    return [m["text"] for t in row["turns"] for m in t["messages"]]


# -- per-agent histories


def test_debate_histories_merge_into_one_conversation_said_once(tmp_path, monkeypatch):
    rows, manifest = build_example("histories", tmp_path, monkeypatch)
    source = manifest["sources"]["debates"]
    assert (source["read"], source["normalized"], source["rejected"]) == (2, 2, 0)
    by_topic = {row["task"]["input"]: row for row in rows.values()}
    first, second = by_topic["Is 0.999... equal to 1?"], by_topic["Should a tomato be called a fruit?"]
    host, aff, neg, mod = "debate_host", "Affirmative side", "Negative side", "Moderator"
    # round 1: the topic, the affirmative's answer, the negative's prompt (quoting it) and answer, the
    # moderator's prompt and verdict; round 2: each debater answers the other's words as received
    assert said(first) == [
        [(host, "prompt", None), (aff, "message", [0]), (host, "prompt", None), (neg, "message", [2]),
         (host, "prompt", None), (mod, "message", [4])],
        [(aff, "message", [0, 1, 3]), (neg, "message", [2, 3, 6]), (host, "prompt", None), (mod, "message", [4, 5, 8])],
    ]  # fmt: skip
    memories = json.loads((FIXTURES / "histories" / "1-config.json").read_text())["players"]
    own = {(name, m["content"]) for name, memory in memories.items() for m in memory if m["role"] == "assistant"}
    assert {(m["agent_id"], m["text"]) for t in first["turns"] for m in t["messages"] if m["kind"] == "message"} == own
    assert len(set(texts(first))) == len(texts(first)) == 10  # 15 memory entries, 3 system prompts, 2 copies
    # the topic went to both debaters (one prompt), the affirmative answer to the negative as it was said
    assert said(second) == [
        [(host, "prompt", None), (aff, "message", [0]), (neg, "message", [0, 1]), (host, "prompt", None),
         (mod, "message", [3])],
    ]  # fmt: skip
    system = json.loads((FIXTURES / "histories" / "2-config.json").read_text())["system_prompt"]
    for row in (first, second):
        agents = {a["agent_id"]: a for a in row["agents"]}
        assert list(agents) == [host, aff, neg, mod]
        assert {name: agents[name]["description"] for name in system} == system and agents[host]["description"] is None
        assert (agents[host]["role"], agents[aff]["role"]) == ("user", "agent")
        extras = json.loads(row["extras"])  # every history entry is mapped: only unmapped top-level fields stay
        assert set(extras) == {"Reason", "Supported Side", "skipped_messages"} and extras["skipped_messages"] == 3
    assert (first["outcome"]["decision_success"], first["outcome"]["final_answer"]) == (True, "Yes, 0.999... = 1")
    assert (second["outcome"]["decision_success"], second["outcome"]["final_answer"]) == (False, None)
    assert json.loads(first["extras"])["Supported Side"] == "Affirmative"  # unmapped fields are kept


def histories_root(tmp_path, players, name="h.jsonl"):
    root = tmp_path / "histories"
    root.mkdir()
    (root / name).write_text(json.dumps({"id": "h1", "players": players}) + "\n")
    return root


HISTORY_MAPPING = {"files": "*.jsonl", "conversation_id": "id", "histories": "players", "role": "role",
                   "text": "content"}  # fmt: skip


def test_a_round_index_orders_the_histories_and_makes_the_turns(tmp_path):
    def m(role, content, round_):
        return {"role": role, "content": content, "round": round_}

    players = {  # bob joined in round 1, after alice's first answer; the host prompt is nobody's
        "alice": [m("user", "Start.", 0), m("assistant", "a0", 0), m("assistant", "a1", 1)],
        "bob": [m("user", "Join in.", 1), m("assistant", "b1", 1)],
    }
    root = histories_root(tmp_path, players)
    descriptions = {"const": {"alice": "Opens.", "judge": "Scores at the end."}}  # one roster for the source
    out, _ = build(tmp_path, root, {**HISTORY_MAPPING, "turn_index": "round", "descriptions": descriptions})
    assert main(["validate", str(out)]) == 0
    row = records(out)["h1"]
    agents = {a["agent_id"]: a["description"] for a in row["agents"]}
    assert agents == {"moderator": None, "alice": "Opens.", "bob": None, "judge": "Scores at the end."}
    assert texts(row) == ["Start.", "a0", "a1", "Join in.", "b1"]
    host = ("moderator", "message", None)  # who said a prompt no agent said, when speaker is not mapped
    alice, bob = (("alice", "message", [0]), ("alice", "message", [0, 1])), ("bob", "message", [3])
    assert said(row) == [[host, alice[0]], [alice[1], host, bob]]

    out, _ = build(tmp_path / "by_count", root, HISTORY_MAPPING)  # without it: rounds by answers said before
    assert [[m["text"] for m in t["messages"]] for t in records(out)["h1"]["turns"]] == [
        ["Start.", "a0", "Join in.", "b1"],
        ["a1"],
    ]


def test_answers_given_at_once_and_exchanged_after_do_not_contradict_each_other(tmp_path):
    def m(role, content):
        return {"role": role, "content": content}

    players = {  # both answered the question, then each was shown the other's answer, then both answered again
        "alice": [m("user", "Q?"), m("assistant", "a1"), m("user", "b1"), m("assistant", "a2")],
        "bob": [m("user", "Q?"), m("assistant", "b1"), m("user", "a1"), m("assistant", "b2")],
    }
    out, manifest = build(tmp_path, histories_root(tmp_path, players), {**HISTORY_MAPPING, "speaker": {"const": "q"}})
    assert_accounted(manifest, read=1, normalized=1)
    row = records(out)["h1"]
    assert texts(row) == ["Q?", "a1", "b1", "a2", "b2"]
    assert said(row) == [[("q", "message", None), ("alice", "message", [0]), ("bob", "message", [0])],
                         [("alice", "message", [0, 1, 2]), ("bob", "message", [0, 1, 2])]]  # fmt: skip


def test_histories_that_disagree_on_the_order_are_rejected_naming_the_field(tmp_path):
    players = {  # alice saw b1 before her first answer; bob saw alice's second answer before saying b1
        "alice": [{"role": "user", "content": "b1"}, {"role": "assistant", "content": "a1"},
                  {"role": "assistant", "content": "a2"}],
        "bob": [{"role": "user", "content": "a2"}, {"role": "assistant", "content": "b1"}],
    }  # fmt: skip
    [reject], _ = stopped(tmp_path, histories_root(tmp_path, players), HISTORY_MAPPING)
    assert (reject["field"], reject["kind"]) == ("players", "inconsistent")
    assert reject["reason"].startswith("the histories at players in record h.jsonl#0 disagree on the order")


@pytest.mark.parametrize(
    ("players", "descriptions", "message"),
    [
        ([{"role": "user", "content": "hi"}], None, "field 'players' (histories) in record h.jsonl#0: expected an "
         'object {agent name: [its messages]}, found list [{"role": "user", "content": "hi"}]'),
        ({"alice": ["hi"]}, None, "field 'players.alice.0' (histories) in record h.jsonl#0: expected an object"),
        ({"alice": [{"role": "assistant", "content": "hi"}]}, ["a"], "field 'descriptions' (descriptions) in record "
         "h.jsonl#0: expected an object {agent id: description}, found list"),
    ],
)  # fmt: skip
def test_histories_of_the_wrong_shape_are_rejected_naming_the_field(tmp_path, players, descriptions, message):
    root = tmp_path / "histories"
    root.mkdir()
    (root / "h.jsonl").write_text(json.dumps({"id": "h1", "players": players, "descriptions": descriptions}) + "\n")
    [reject], _ = stopped(tmp_path, root, {**HISTORY_MAPPING, "descriptions": "descriptions"})
    assert reject["reason"].startswith(message)


# -- round-by-agent matrices


def test_a_debate_matrix_keyed_by_question_maps_rounds_speakers_and_what_each_saw(tmp_path, monkeypatch):
    rows, manifest = build_example("matrix", tmp_path, monkeypatch)
    source = manifest["sources"]["gsm_debate"]
    assert (source["read"], source["normalized"], source["rejected"]) == (2, 2, 0)
    collection = json.loads((FIXTURES / "matrix" / "gsm_3_2.json").read_text())
    assert set(rows) == set(collection)  # the question is the id, and the task input
    a, b, c = "solver_a", "solver_b", "solver_c"
    for question, (contexts, reference) in collection.items():
        row = rows[question]
        assert row["task"]["input"] == question and row["task"]["instruction"] == contexts[0][0]["content"]
        assert row["task"]["references"] == [reference.rsplit("#### ", 1)[1]]
        # round 1 saw none of the others' answers; in round 2 each saw the other two agents' round-1 answers
        assert said(row) == [
            [(a, "message", []), (b, "message", []), (c, "message", [])],
            [(a, "message", [1, 2]), (b, "message", [0, 2]), (c, "message", [0, 1])],
        ]
        answers = [[m["content"] for m in contexts[i] if m["role"] == "assistant"] for i in range(3)]
        assert texts(row) == [answers[i][r] for r in range(2) for i in range(3)]
        assert [x["agent_id"] for x in row["agents"]] == [a, b, c]
        assert (row["protocol"]["paradigm"], row["protocol"]["rounds"]) == ("debate", 2)
        assert json.loads(row["extras"]) == {}  # the prompts are the visible ids and the instruction
    eggs, water = (
        rows["A box holds 3 rows of 6 eggs. How many eggs are in 2 boxes?"],
        rows["Tom has 2.5 liters of water and drinks 0.5 liters. How many liters are left?"],
    )
    assert (eggs["outcome"]["final_answer"], eggs["outcome"]["answer_correct"]) == ("36", True)
    assert (water["outcome"]["final_answer"], water["outcome"]["answer_correct"]) == ("3", False)


def matrix_root(tmp_path, rows):
    root = tmp_path / "matrix"
    root.mkdir(parents=True)
    (root / "m.json").write_text(json.dumps({"q1": [rows, "4"]}))
    return root


MATRIX_MAPPING = {"files": "*.json", "records": ".", "conversation_id": "key", "matrix": "value.0", "role": "role",
                  "text": "content"}  # fmt: skip


def test_matrix_rows_without_names_are_agent_positions_and_may_hold_fewer_rounds(tmp_path):
    def chat(*answers):
        out = []
        for answer in answers:
            out += [{"role": "user", "content": "prompt"}, {"role": "assistant", "content": answer}]
        return out

    out, _ = build(tmp_path, matrix_root(tmp_path, [chat("x0", "x1"), chat("y0"), chat("z0", "z1")]), MATRIX_MAPPING)
    row = records(out)["q1"]
    assert texts(row) == ["x0", "y0", "z0", "x1", "z1"]  # the second agent stopped after round 1
    assert said(row) == [[("agent_0", "message", []), ("agent_1", "message", []), ("agent_2", "message", [])],
                         [("agent_0", "message", [1, 2]), ("agent_2", "message", [0, 1])]]  # fmt: skip

    # an answer given with no prompt since the agent's last one saw nothing new
    rows = [[*chat("x0"), {"role": "assistant", "content": "x1"}], chat("y0", "y1")]
    out, _ = build(tmp_path / "no_prompt", matrix_root(tmp_path / "no_prompt", rows), MATRIX_MAPPING)
    assert [m["visible_message_ids"] for t in records(out)["q1"]["turns"] for m in t["messages"]] == [[], [], [], [0]]


def test_a_matrix_with_more_rows_than_names_is_rejected_naming_the_key(tmp_path):
    rows = [[{"role": "assistant", "content": str(i)}] for i in range(3)]
    mapping = {**MATRIX_MAPPING, "speaker": {"by_position": ["a", "b"]}}
    [reject], _ = stopped(tmp_path, matrix_root(tmp_path, rows), mapping)
    assert reject["reason"].startswith(
        "mapping.speaker.by_position names 2 agents, but value.0 in record m.json#0 holds 3 (one list per agent)"
    )


def test_a_matrix_that_is_not_a_list_of_lists_is_rejected(tmp_path):
    [reject], _ = stopped(tmp_path, matrix_root(tmp_path, [{"role": "assistant", "content": "x"}]), MATRIX_MAPPING)
    assert reject["reason"].startswith(
        "field 'value.0' (matrix) in record m.json#0: expected a list holding one list of messages per agent"
    )


# -- repeated ids across trials


def test_repeated_ids_become_numbered_conversations_of_one_split_group(tmp_path, monkeypatch):
    rows, manifest = build_example("trials", tmp_path, monkeypatch)
    source = manifest["sources"]["runs"]
    assert (source["read"], source["normalized"], source["rejected"]) == (4, 4, 0)
    assert sorted(rows) == ["t1", "t1#2", "t1#3", "t2"]  # in file order: the 1st, 2nd and 4th line are t1
    assert [m["text"] for m in rows["t1#3"]["turns"][0]["messages"]] == ["Search the disk."]
    assert [rows[i]["outcome"]["decision_success"] for i in ("t1", "t1#2", "t1#3", "t2")] == [True, False, True, True]
    assert rows["t1"]["split_group"] == rows["t1#2"]["split_group"] == rows["t1#3"]["split_group"]
    assert rows["t1"]["split_group"] != rows["t2"]["split_group"]
    assert {rows[i]["split"] for i in ("t1", "t1#2", "t1#3")} == {rows["t1"]["split"]}

    # without a task input the group is still the id as the log wrote it, not the numbered one
    mapping = {k: v for k, v in example_mapping("trials").items() if k != "task"}
    out, _ = build(tmp_path / "no_task", FIXTURES / "trials", mapping)
    untasked = records(out)
    assert untasked["t1"]["split_group"] == untasked["t1#2"]["split_group"] == untasked["t1#3"]["split_group"]

    # the default is unchanged: a repeat is rejected, and the reject names the key that keeps it
    mapping = {k: v for k, v in example_mapping("trials").items() if k != "duplicate_ids"}
    out, manifest = build(tmp_path / "default", FIXTURES / "trials", mapping)
    assert_accounted(manifest, read=4, normalized=2)
    reasons = [r["reason"] for r in rejects(out)]
    assert len(reasons) == 2 and all(r.startswith("duplicate of runs.jsonl#0 (same id my_logs:t1)") for r in reasons)
    assert all("set duplicate_ids: number (a repeat becomes '<id>#2'" in r for r in reasons)


# -- invalid uses of the new keys


H = {"histories": "players", "role": "role", "text": "content"}
M = {"matrix": "contexts", "role": "role", "text": "content"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({**H, "messages": "m"}, "mapping.histories: give one of messages, histories, matrix, not messages and "
         "histories"),
        ({**H, **M}, "mapping.matrix: give one of messages, histories, matrix, not histories and matrix"),
        ({**H, "role": None}, "mapping.role: required with mapping.histories (a message whose role is "
         "mapping.own_role"),
        ({**M, "role": None}, "mapping.role: required with mapping.matrix"),
        ({**H, "turns": "t"}, "mapping.turns: not used with mapping.histories"),
        ({**H, "histories": "players?"}, "mapping.histories: 'players?' cannot be optional"),
        ({**H, "histories": ["a", "b"]}, "mapping.histories: expected a field path like 'a.b.0.c', found"),
        ({**H, "speaker": {"by_position": ["a"]}}, "mapping.speaker.by_position: not used with mapping.histories"),
        ({**M, "speaker": "name"}, "mapping.speaker: with mapping.matrix the speakers are the rows; give "
         "{by_position: [names]}"),
        ({**M, "turn_index": "round"}, "mapping.turn_index: not used with mapping.matrix (the rounds are the turns)"),
        ({**M, "own_role": ""}, "mapping.own_role: expected non-empty text, found ''"),
        ({"messages": "m", "speaker": "s", "text": "t", "own_role": "bot"}, "mapping.own_role: only used with "
         "mapping.histories or mapping.matrix"),
        ({"messages": "m", "speaker": "s", "text": "t", "duplicate_ids": "renumber"}, "mapping.duplicate_ids: "
         "expected 'reject' (a repeated conversation id is rejected) or 'number'"),
        ({**H, "layout": "flat", "conversation_id": "id"}, "mapping.histories: not used in the flat layout"),
        ({"messages": "m", "text": "t"}, "mapping.speaker: required"),
    ],
)  # fmt: skip
def test_invalid_structure_options_are_refused_naming_the_key(options, message):
    options = {k: v for k, v in options.items() if v is not None}
    with pytest.raises(ValueError) as info:
        check_mapping(options)
    assert message in str(info.value)


def test_valid_structure_options_pass():
    check_mapping({**H, "speaker": {"const": "host"}, "descriptions": "system_prompt", "own_role": "bot"})
    check_mapping({**M, "speaker": {"by_position": ["a", "b"]}, "duplicate_ids": "number"})
