"""Value transforms in mapping recipes: constants, joined ids, regex groups, value maps, thresholds, speakers by
position; each built through the real pipeline, validated, loaded with ``datasets`` and checked row by row."""

from __future__ import annotations

import json

import datasets
import pytest
import yaml
from test_mapping import assert_accounted, build, records, rejects, stopped

from coord_bench.card import write_card
from coord_bench.cli import main
from coord_bench.sources import check_mapping

# An orchestrator-style team log (the shape of web-agent team runs): one run per line, its speaker field holding
# the speaker and the addressee or the kind of message, a numeric reward, and the trial number beside the task.
ORCHESTRATOR_MAPPING = r"""
files: "*.jsonl"
conversation_id: {join: [task_id, trial], sep: "#"}
messages: messages
speaker: {path: source, regex: '^(?P<speaker>[^(]+?)\s*(?:\((?:-> (?P<addressee>[^)]+)|(?P<kind>[^)]+))\))?$'}
kind: {path: source, regex: '\((?P<kind>thought|plan)\)', default: message}
text: content
model: {const: gpt-4o-2024-08-06}
role: {path: source, regex: '^(?P<role>\w+)', map: {user: user}, default: agent}
task: {input: question}
outcome: {decision_success: {path: reward, at_least: 1.0}}
license: mit
"""


def run(task_id, trial, reward, messages):
    return {"task_id": task_id, "trial": trial, "question": f"question {task_id}", "reward": reward,
            "messages": [{"source": s, "content": c} for s, c in messages]}  # fmt: skip


def orchestrator_runs():
    first = [
        ("user", "Find the opening hours of the museum."),
        ("Orchestrator (thought)", "The web surfer should search for it."),
        ("Orchestrator (-> WebSurfer)", "Search for the museum's opening hours."),
        ("WebSurfer", "It opens at 9 am."),
        ("Orchestrator (plan)", "Answer and stop."),
    ]
    second = [("user", "Sum 2 and 3."), ("Orchestrator (-> Coder)", "Compute 2 + 3."), ("Coder", "5")]
    return [run("t1", 0, 1.0, first), run("t1", 1, 0.0, first[:3]), run("t2", 0, 0.0, second)]


def write_runs(root, runs):
    root.mkdir(parents=True)
    (root / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in runs))
    return root


def test_an_orchestrator_log_maps_speakers_kinds_ids_models_and_a_numeric_reward(tmp_path):
    out, manifest = build(tmp_path, write_runs(tmp_path / "runs", orchestrator_runs()), ORCHESTRATOR_MAPPING)
    assert_accounted(manifest, read=3, normalized=3)
    assert main(["validate", str(out)]) == 0
    rows = records(out)
    assert set(rows) == {"t1#0", "t1#1", "t2#0"}  # two fields joined into one id: trials no longer collide
    first = rows["t1#0"]
    said = [(m["agent_id"], m["kind"]) for t in first["turns"] for m in t["messages"]]
    assert said == [("user", "message"), ("Orchestrator", "thought"), ("Orchestrator", "message"),
                    ("WebSurfer", "message"), ("Orchestrator", "plan")]  # fmt: skip
    agents = {a["agent_id"]: a for a in first["agents"]}
    assert {a["role"] for a in agents.values()} == {"user", "agent"} and agents["user"]["role"] == "user"
    assert {a["model"] for a in agents.values()} == {"gpt-4o-2024-08-06"}  # a constant for the source
    assert [rows[i]["outcome"]["decision_success"] for i in ("t1#0", "t1#1", "t2#0")] == [True, False, False]
    write_card(out, manifest)  # what the CLI's build writes after run_build: the configs load_dataset reads
    loaded = datasets.load_dataset(str(out), "my_logs", cache_dir=str(tmp_path / "hf"))
    assert sorted(i for split in loaded.values() for i in split["source_id"]) == ["t1#0", "t1#1", "t2#0"]


def test_a_value_the_map_lacks_rejects_the_record_naming_the_field_and_the_keys(tmp_path):
    runs = orchestrator_runs()
    runs[2]["messages"][0]["source"] = "system"  # role 'system': not in the map, and no default below
    mapping = yaml.safe_load(ORCHESTRATOR_MAPPING)
    mapping["role"] = {"path": "source", "regex": r"^(?P<role>\w+)", "map": {"user": "user", "Orchestrator": "agent",
                       "WebSurfer": "agent", "Coder": "agent"}}  # fmt: skip
    out, manifest = build(tmp_path, write_runs(tmp_path / "runs", runs), mapping)
    assert_accounted(manifest, read=3, normalized=2)
    [reject] = rejects(out)
    assert reject["field"] == "messages.0.source"
    assert '"system" is not in the map (keys: user, Orchestrator, WebSurfer, Coder)' in reject["reason"]


def test_speakers_given_only_by_position_alternate_through_the_list(tmp_path):
    root = tmp_path / "debates"
    root.mkdir()
    lines = [{"id": "d1", "said": [{"text": "I say A."}, {"text": "I say B."}, {"text": "A, then."}]}]
    (root / "d.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    mapping = {"files": "*.jsonl", "conversation_id": "id", "messages": "said", "text": "text",
               "speaker": {"by_position": ["proponent", "opponent"]}}  # fmt: skip
    out, _ = build(tmp_path, root, mapping)
    row = records(out)["d1"]
    assert [m["agent_id"] for t in row["turns"] for m in t["messages"]] == ["proponent", "opponent", "proponent"]
    assert [a["agent_id"] for a in row["agents"]] == ["proponent", "opponent"]


def test_a_regex_that_does_not_match_rejects_the_record_with_the_pattern(tmp_path):
    runs = orchestrator_runs()[:1]
    mapping = {**yaml.safe_load(ORCHESTRATOR_MAPPING), "speaker": {"path": "source", "regex": "^Agent-(\\d+)$"}}
    [reject], _ = stopped(tmp_path, write_runs(tmp_path / "runs", runs), mapping)
    assert reject["field"] == "messages.0.source" and '"user"' in reject["reason"]
    assert "does not match the regex '^Agent-(\\\\d+)$'" in reject["reason"]


BASE = {"messages": "m", "text": "t"}


@pytest.mark.parametrize(
    ("speaker", "message"),
    [
        ({"path": "s", "regx": "x"}, "mapping.speaker: unknown key(s) 'regx'; keys are: path, const, join"),
        ({"path": "s", "const": "x"}, "mapping.speaker: give exactly one of path, const, join, by_position"),
        ({"regex": "x"}, "give exactly one of path, const, join, by_position (found none)"),
        ({"path": "s", "regex": "(x"}, "mapping.speaker.regex: not a regular expression"),
        ({"path": "s", "regex": "(?P<who>x)", "group": "speaker"}, "mapping.speaker.group: 'speaker' is not a group"),
        ({"path": "s", "group": 1}, "mapping.speaker.group: needs a regex"),
        ({"path": "s", "default": "x"}, "mapping.speaker.default: needs a regex or a map"),
        ({"path": "s", "map": []}, "mapping.speaker.map: expected {found value: value}"),
        ({"path": "s", "at_least": "1"}, "mapping.speaker.at_least: expected a number"),
        ({"join": ["a"]}, "mapping.speaker.join: expected a list of two or more field paths"),
        ({"by_position": []}, "mapping.speaker.by_position: expected a list of speaker names"),
    ],
)
def test_invalid_value_specs_are_refused_naming_the_key(speaker, message):
    with pytest.raises(ValueError) as info:
        check_mapping({**BASE, "speaker": speaker})
    assert message in str(info.value)


def test_only_the_speaker_can_be_given_by_position():
    with pytest.raises(ValueError, match="mapping.text.by_position: only the speaker"):
        check_mapping({"messages": "m", "speaker": "s", "text": {"by_position": ["a"]}})


def test_long_keys_are_cut_in_messages(tmp_path):
    root = tmp_path / "qa"
    root.mkdir()
    question = "What is the capital of a country whose name is long enough to fill a line? " * 3
    (root / "qa.jsonl").write_text(json.dumps({"id": "q1", question: [], "messages": []}) + "\n")
    [reject], _ = stopped(tmp_path, root, {"files": "*.jsonl", "conversation_id": "id", "messages": "turns",
                                           "speaker": "s", "text": "t"})  # fmt: skip
    assert "'turns' is not a key of the record (keys: id, What is the capital of a country whos..., messages)" in (
        reject["reason"]
    )


def test_a_collection_keyed_by_question_text_maps_each_value_to_a_conversation(tmp_path):
    """Research code often saves {question: [contexts, answer]}: the records are the values, the key the id."""
    root = tmp_path / "debates"
    root.mkdir()
    said = [{"agent": "a1", "text": "It is 4."}, {"agent": "a2", "text": "4, agreed."}]
    collection = {"What is 2+2?": [said, "4"], "Is 3.5 > 3?": [said[:1], "yes"]}
    (root / "out.json").write_text(json.dumps(collection))
    mapping = {"files": "*.json", "records": ".", "conversation_id": "key", "messages": "value.0",
               "speaker": "agent", "text": "text", "task": {"input": "key"},
               "outcome": {"final_answer": "value.1"}}  # fmt: skip
    out, manifest = build(tmp_path, root, mapping)
    assert_accounted(manifest, read=2, normalized=2)
    rows = records(out)
    assert set(rows) == {"What is 2+2?", "Is 3.5 > 3?"}  # keys with dots are fine as values
    assert rows["What is 2+2?"]["task"]["input"] == "What is 2+2?"
    assert rows["What is 2+2?"]["outcome"]["final_answer"] == "4" and rows["Is 3.5 > 3?"]["n_messages"] == 1


def test_a_dot_inside_a_key_is_escaped_in_the_path(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    line = {"id": "r1", "meta": {"v1.2": "the task"}, "messages": [{"s": "a", "t": "hi"}]}
    (root / "r.jsonl").write_text(json.dumps(line) + "\n")
    mapping = {"files": "*.jsonl", "conversation_id": "id", "messages": "messages", "speaker": "s", "text": "t",
               "task": {"input": "meta.v1\\.2"}}  # fmt: skip
    out, _ = build(tmp_path, root, mapping)
    assert records(out)["r1"]["task"]["input"] == "the task"


def test_a_duplicate_id_suggests_joining_the_trial_and_grouping_by_task(tmp_path):
    runs = orchestrator_runs()
    mapping = {**yaml.safe_load(ORCHESTRATOR_MAPPING), "conversation_id": "task_id"}  # t1 has two trials
    out, manifest = build(tmp_path, write_runs(tmp_path / "runs", runs), mapping)
    assert_accounted(manifest, read=3, normalized=2)
    [reject] = rejects(out)
    assert reject["reason"].startswith("duplicate of runs.jsonl#0 (same id my_logs:t1); if these are runs (trials)")
    assert "conversation_id: {join: [task_id, trial]}" in reject["reason"] and "group_by: task_id" in reject["reason"]

    grouped = {**mapping, "conversation_id": {"join": ["task_id", "trial"]}, "group_by": "task_id"}
    out, manifest = build(tmp_path / "grouped", write_runs(tmp_path / "runs2", runs), grouped)
    rows = records(out)
    assert len(rows) == 3 and rows["t1:0"]["split_group"] == rows["t1:1"]["split_group"] != rows["t2:0"]["split_group"]


def test_a_dry_run_previews_the_first_mapped_conversation_or_the_first_failure(tmp_path, capsys):
    root = write_runs(tmp_path / "runs", orchestrator_runs())
    recipe = {"name": "team", "sources": [{"name": "team_logs", "adapter": "mapping", "location": {"path": str(root)},
                                           "mapping": yaml.safe_load(ORCHESTRATOR_MAPPING)}]}  # fmt: skip
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["build", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert ("preview: team_logs:t1#0 maps to 5 turns, 5 messages, speakers user, Orchestrator, WebSurfer; "
            'outcome {"decision_success": true}') in out  # fmt: skip
    assert "dry run: nothing was downloaded, built or spent" in out

    recipe["sources"][0]["mapping"]["text"] = "body"  # wrong: the messages hold 'content'
    path.write_text(yaml.safe_dump(recipe))
    assert main(["build", str(path), "--dry-run"]) == 2  # a recipe that maps nothing fails the dry run
    printed = capsys.readouterr()
    assert "record runs.jsonl#0 is rejected: field path 'body' (text) matches nothing" in printed.out
    assert printed.err.startswith("coord-bench build: error: the dry run found a source that maps nothing:\n"
                                  "  source 'team_logs': none of its first 3 records maps; record runs.jsonl#0")
