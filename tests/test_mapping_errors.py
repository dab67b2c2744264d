"""What a user sees when a recipe is wrong: counts of conversations and of the values they came from, a build
that stops when a source gives no record, a loud warning when most are rejected, a dry run that maps the first
records of every source, and one reject per record that lists every field failure. Real builds through the CLI."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import datasets
import pytest
import yaml
from realdata import REAL
from test_mapping import CHAT_MAPPING, EVENTS_MAPPING
from test_mapping_transforms import ORCHESTRATOR_MAPPING

from coord_bench.build_folder import read_manifest
from coord_bench.cli import main
from coord_bench.folder_swap import staging_path
from coord_bench.recipe import RECIPE_SCHEMA, RecipeError, validate_recipe
from coord_bench.report.page import counts_tables
from coord_bench.schema import load_schema, validator
from coord_bench.sources.mapping.options import OPTIONS, ROLES, SECTIONS, TIME_KEYS, TOOL_CALL_FIELDS, TRANSFORM_KEYS

MAPPING = {
    "files": "*.jsonl",
    "records": "conversations",
    "conversation_id": "id",
    "messages": "messages",
    "speaker": "from",
    "text": "text",
    "outcome": {"winner": "verdict?"},
}


def conversation(cid, n_messages=2, verdict="tie", **changes):
    messages = [{"from": f"agent_{i % 2}", "text": f"message {i} of {cid}"} for i in range(n_messages)]
    return {"id": cid, "messages": messages, "verdict": verdict, **changes}


def write_batches(root, batches):
    """A JSONL file of run batches: each line holds a list of conversations (as team runners save them)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "runs.jsonl").write_text("".join(json.dumps({"conversations": batch}) + "\n" for batch in batches))
    return root


def write_recipe(tmp_path, root, mapping=None, extra_sources=()):
    recipe = {
        "name": "mine",
        "sources": [
            {"name": "team", "adapter": "mapping", "location": {"path": str(root)}, "mapping": mapping or MAPPING},
            *extra_sources,
        ],
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def build(recipe, out, *more):
    return main(["build", str(recipe), "--out", str(out), "--no-progress", *more])


def rejects(folder):
    return [json.loads(line) for line in (folder / "rejects.jsonl").read_text().splitlines()]


def test_read_counts_conversations_and_the_manifest_also_says_how_many_top_level_values(tmp_path, capsys):
    batches = [[conversation("c1"), conversation("c2")], [conversation("c3"), conversation("c4", verdict="draw")],
               [conversation("c5"), conversation("c6")]]  # fmt: skip
    out = tmp_path / "out"
    assert build(write_recipe(tmp_path, write_batches(tmp_path / "runs", batches)), out) == 0
    team = read_manifest(out)["sources"]["team"]
    assert (team["read"], team["top_level_values"], team["normalized"], team["rejected"]) == (6, 3, 5, 1)
    assert team["read"] == team["normalized"] + team["rejected"] + team["filtered"]
    assert team["warnings"] == []  # 1 of 6 rejected: no warning
    assert "team: read 6 conversations from 3 top-level values" in capsys.readouterr().out
    assert main(["validate", str(out)]) == 0
    loaded = datasets.load_dataset(str(out), "team", cache_dir=str(tmp_path / "hf"))
    assert sum(len(split) for split in loaded.values()) == 5

    # the flat layout: a top-level value is one event, a conversation the consecutive events of one id
    events = [{"run": run, "who": who, "said": f"{run} {i}"} for run, n in (("r1", 3), ("r2", 2)) for i in range(n)
              for who in [f"a{i % 2}"]]  # fmt: skip
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    flat = {"layout": "flat", "files": "*.jsonl", "conversation_id": "run", "speaker": "who", "text": "said"}
    assert build(write_recipe(tmp_path, tmp_path / "events", flat), out) == 0
    team = read_manifest(out)["sources"]["team"]
    assert (team["read"], team["top_level_values"], team["normalized"]) == (2, 5, 2)


def test_built_in_sources_count_one_record_per_top_level_value(tmp_path):
    code = main(["build", "--out", str(tmp_path / "out"), "--no-progress", "--annotate", "none",
                 "--set", "output.report=false", "--sources", "chatbot_arena",
                 "--source-dir", f"chatbot_arena={REAL / 'chatbot_arena'}"])  # fmt: skip
    assert code == 0
    arena = read_manifest(tmp_path / "out")["sources"]["chatbot_arena"]
    lines = (REAL / "chatbot_arena" / "train.jsonl").read_text().splitlines()
    assert arena["read"] == arena["top_level_values"] == len(lines)


def test_a_source_whose_every_record_is_rejected_stops_the_build_and_keeps_the_previous_one(tmp_path, capsys):
    root = write_batches(tmp_path / "runs", [[conversation("c1"), conversation("c2")], [conversation("c3")]])
    out = tmp_path / "out"
    assert build(write_recipe(tmp_path, root), out) == 0
    before = (out / "build_manifest.json").read_text()
    capsys.readouterr()

    wrong = {**MAPPING, "speaker": "speaker"}  # the messages say 'from'
    assert build(write_recipe(tmp_path, root, wrong), out) == 2
    err = capsys.readouterr().err
    assert err.startswith("coord-bench build: error: source 'team': all 3 of its records were rejected; the first:\n"
                          "  runs.jsonl#0 field 'messages.0.speaker' (missing_field): field path 'speaker' (speaker) "
                          "matches nothing: 'speaker' is not a key of messages.0 (keys: from, text)")  # fmt: skip
    assert "  runs.jsonl#1 field 'messages.0.speaker'" in err and "  runs.jsonl#2 field 'messages.0.speaker'" in err
    assert f"nothing was written to {out}" in err and str(staging_path(out) / "rejects.jsonl") in err
    # the previous build is untouched and still loads; every reject is in the staging folder's rejects.jsonl
    assert (out / "build_manifest.json").read_text() == before
    assert main(["validate", str(out)]) == 0
    found = rejects(staging_path(out))
    assert [r["locator"] for r in found] == ["runs.jsonl#0", "runs.jsonl#1", "runs.jsonl#2"]
    assert all(r["raw"]["id"] in {"c1", "c2", "c3"} for r in found)

    # a first build that fails leaves no folder that looks like a build
    assert build(write_recipe(tmp_path, root, wrong), tmp_path / "new") == 2
    assert not (tmp_path / "new").exists()


def test_a_source_with_good_records_still_builds_beside_one_that_gives_none(tmp_path, capsys):
    """Every source must give a record: a bad one stops the build even when another is fine."""
    good = write_batches(tmp_path / "good", [[conversation("c1")]])
    bad = write_batches(tmp_path / "bad", [[{"id": "x", "messages": "not a list"}]])
    other = {"name": "other", "adapter": "mapping", "location": {"path": str(bad)}, "mapping": MAPPING}
    assert build(write_recipe(tmp_path, good, extra_sources=[other]), tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "source 'other': its only record was rejected:\n  runs.jsonl#0 field 'messages' (wrong_type)" in err
    assert "source 'team'" not in err
    assert build(write_recipe(tmp_path, good), tmp_path / "out") == 0


def test_a_source_with_most_records_rejected_builds_with_a_loud_warning(tmp_path, capsys):
    batches = [[conversation("c1"), conversation("c2", verdict="draw"), conversation("c3", verdict="model_c")]]
    out = tmp_path / "out"
    assert build(write_recipe(tmp_path, write_batches(tmp_path / "runs", batches)), out) == 0
    printed = capsys.readouterr().out
    assert "WARNING: source team: 2 of 3 records (67%) were rejected; the first: runs.jsonl#1 field 'verdict' " in (
        printed
    )
    [warning] = read_manifest(out)["sources"]["team"]["warnings"]
    assert warning.startswith("2 of 3 records (67%) were rejected") and "runs.jsonl#2 field 'verdict'" in warning
    assert 'found "draw"' in warning and 'found "model_c"' in warning
    assert "<b>Warning</b> team: 2 of 3 records (67%)" in counts_tables(read_manifest(out))


def test_one_reject_lists_every_field_failure_of_the_record(tmp_path):
    batch = [conversation("c1", verdict="draw"), conversation("c2")]
    batch[0]["messages"][0] = {"text": "no speaker"}  # speaker missing in message 0 ...
    batch[0]["messages"].append({"from": "agent_0", "text": 7})  # ... a text that is a number in message 2
    batch[1]["messages"] = [{"text": f"line {i}"} for i in range(500)]  # the same path failing in 500 messages
    out = tmp_path / "out"
    assert build(write_recipe(tmp_path, write_batches(tmp_path / "runs", [batch, [conversation("ok")]])), out) == 0
    first, second = rejects(out)
    assert [(f["field"], f["kind"], f["count"]) for f in first["failures"]] == [
        ("messages.0.from", "missing_field", 1),
        ("messages.2.text", "wrong_type", 1),
        ("verdict", "unknown_value", 1),  # ... and the outcome is not a valid value
    ]
    assert (first["field"], first["kind"]) == ("messages.0.from", "missing_field")
    assert first["reason"].startswith("3 field failures: field path 'from' (speaker) matches nothing")
    assert all(f["reason"] in first["reason"] for f in first["failures"])
    [repeated] = second["failures"]
    assert (repeated["field"], repeated["count"]) == ("messages.0.from", 500)
    assert second["reason"].endswith("(the same in 499 more)")
    manifest = read_manifest(out)["sources"]["team"]
    assert manifest["rejects_by_kind"] == {"missing_field": 2}  # one reject per record, by its first failure


def test_a_dry_run_maps_the_first_records_of_every_local_source(tmp_path, capsys):
    arena = tmp_path / "arena"
    arena.mkdir()
    shutil.copy(REAL / "chatbot_arena" / "train.jsonl", arena / "train.jsonl")
    root = write_batches(tmp_path / "runs", [[conversation("c1"), conversation("c2")]])
    builtin = {"name": "chatbot_arena", "location": {"path": str(arena)}}
    embedded = {"name": "multi_character_dialogue"}
    recipe = write_recipe(tmp_path, root, extra_sources=[builtin, embedded])
    assert build(recipe, tmp_path / "out", "--dry-run") == 0
    printed = capsys.readouterr().out
    first_arena = json.loads((arena / "train.jsonl").read_text().splitlines()[0])
    assert f"preview: chatbot_arena:{first_arena['question_id']} maps to 1 turns" in printed
    assert "preview: team:c1 maps to 2 turns, 2 messages, speakers agent_0, agent_1; outcome {\"winner\": \"tie\"}" in (
        printed
    )
    assert "preview: multi_character_dialogue:" in printed  # the embedded sample is local data too
    assert not (tmp_path / "out").exists()

    # a built-in source whose local files are not its layout fails the dry run, as a mapping that maps nothing
    (arena / "train.jsonl").write_text(json.dumps({"question_id": "q", "winner": "model_a"}) + "\n")
    assert build(recipe, tmp_path / "out", "--dry-run") == 2
    err = capsys.readouterr().err
    assert "source 'chatbot_arena': none of its first 1 records maps; record train.jsonl#0 is rejected: missing " in err


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        ({"files": "*.txt"}, "source 'team': cannot read the source (source 'team': no files under"),
        ({"records": "batches"}, "record runs.jsonl#0 is rejected: field path 'batches' (records) matches nothing"),
    ],
)
def test_a_dry_run_of_paths_that_match_nothing_fails(tmp_path, capsys, mapping, expected):
    root = write_batches(tmp_path / "runs", [[conversation("c1")]])
    assert build(write_recipe(tmp_path, root, {**MAPPING, **mapping}), tmp_path / "out", "--dry-run") == 2
    assert expected in capsys.readouterr().err


def mapping_schema():
    return load_schema(RECIPE_SCHEMA)["$defs"]


def test_the_recipe_schema_describes_every_mapping_option_and_nothing_else():
    defs = mapping_schema()
    properties = defs["mapping"]["properties"]
    assert sorted(properties) == sorted(OPTIONS)
    assert all(node.get("description") for node in properties.values())
    for section, fields in SECTIONS.items():
        assert properties[section]["propertyNames"]["enum"] == list(fields)
    assert list(defs["valueSpecKeys"]["properties"]) == list(TRANSFORM_KEYS)
    assert defs["valueSpec"]["propertyNames"]["enum"] == list(TRANSFORM_KEYS)
    assert defs["timestampSpec"]["propertyNames"]["enum"] == [*TRANSFORM_KEYS, *TIME_KEYS]
    assert list(defs["timestampSpec"]["properties"]) == list(TIME_KEYS)
    assert list(properties["tool_call"]["properties"]) == list(TOOL_CALL_FIELDS)
    assert properties["role_map"]["additionalProperties"]["enum"] == list(ROLES)


def readme_mappings():
    """Every mapping section of the README's YAML examples."""
    text = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.S):
        if "mapping:" in block:
            loaded = yaml.safe_load(block if not block.startswith(" ") else "x:\n" + block)
            sources = loaded.get("sources") or [loaded.get("x") or loaded]
            found += [source["mapping"] for source in sources if "mapping" in source]
    return found


README_MAPPINGS = readme_mappings()
EXAMPLES = sorted((Path(__file__).parent.parent / "builder_scripts" / "examples").glob("*.yaml"))
EXAMPLE_MAPPINGS = [yaml.safe_load(path.read_text())["sources"][0]["mapping"] for path in EXAMPLES]
RECIPE_MAPPINGS = [CHAT_MAPPING, EVENTS_MAPPING, ORCHESTRATOR_MAPPING, MAPPING]


@pytest.mark.parametrize("mapping", RECIPE_MAPPINGS + README_MAPPINGS + EXAMPLE_MAPPINGS)
def test_the_recipes_of_the_readme_the_examples_and_the_tests_are_valid_under_the_schema(mapping):
    mapping = yaml.safe_load(mapping) if isinstance(mapping, str) else mapping
    recipe = {"name": "x", "sources": [{"name": "mine", "adapter": "mapping", "mapping": mapping}]}
    assert list(validator(RECIPE_SCHEMA).iter_errors(recipe)) == []
    validate_recipe(recipe)  # options.py agrees


BASE = {"messages": "m", "speaker": "s", "text": "t"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"speakr": "s"}, "mapping: unknown option 'speakr' (did you mean 'speaker'?)"),
        ({"layout": "sideways"}, "mapping.layout: expected 'grouped' or 'flat', found 'sideways'"),
        ({"text": 5}, "mapping.text: expected a field path like 'a.b.0.c' or a list of them, found 5"),
        ({"speaker": {"path": "s", "regx": "x"}}, "mapping.speaker: unknown key(s) 'regx'; keys are: path, const"),
        ({"speaker": {"path": "s", "const": "x"}}, "mapping.speaker: give exactly one of path, const, join"),
        ({"outcome": {"winer": "w"}}, "mapping.outcome: unknown field 'winer'; fields are: decision_success"),
        ({"role_map": {"bot": "robot"}}, "mapping.role_map.bot: expected one of user, assistant, agent, character"),
        ({"files": []}, "mapping.files: expected a glob or a list of globs, found []"),
        ({"license": ""}, "mapping.license: expected non-empty text, found ''"),
        ({"model": {"const": "m", "at_least": "high"}}, "mapping.model.at_least: expected a number, found 'high'"),
        ({"duplicate_ids": "renumber"}, "mapping.duplicate_ids: expected 'reject' (a repeated conversation id"),
        ({"histories": ["a", "b"], "messages": None, "role": "r"}, "mapping.histories: expected a field path"),
        ({"format": "csv"}, "mapping.format: expected 'json' (JSON, JSONL, Parquet by file name) or 'text'"),
        ({"tool_call": {"fn": "f"}, "tool_calls": "calls"}, "mapping.tool_call: unknown field 'fn'; fields are"),
        ({"timestamp": {"path": "t", "time_zone": 5}}, "mapping.timestamp.time_zone"),
        ({"text": {"path": "t", "time_format": "%Y"}}, "mapping.text: unknown key(s) 'time_format'"),
    ],
)
def test_an_invalid_mapping_is_refused_by_both_layers_and_reported_once(tmp_path, change, message):
    """The schema and options.py agree on what is invalid; the build says it once, in options.py's words."""
    mapping = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    recipe = {"name": "x", "sources": [{"name": "mine", "adapter": "mapping", "mapping": mapping}]}
    assert list(validator(RECIPE_SCHEMA).iter_errors(recipe)), "the schema lets it through"
    with pytest.raises(RecipeError) as refused:
        validate_recipe(recipe)
    lines = str(refused.value).splitlines()
    assert lines[0] == "recipe is invalid:" and lines[1] == "  sources[0].mapping: invalid mapping options:"
    assert [line.strip() for line in lines[2:]] == [next(line.strip() for line in lines if message in line)]



def test_an_id_made_of_a_long_question_is_abbreviated_in_a_duplicate_reject(tmp_path):
    question = "Which of the following statements about the migration of monarch butterflies is true? " * 2
    root = tmp_path / "debates"
    root.mkdir()
    said = [{"agent": "a1", "text": "B."}, {"agent": "a2", "text": "B, agreed."}]
    for name in ("run1.json", "run2.json"):  # the same question asked in two runs: the same id
        (root / name).write_text(json.dumps({question: [said, "B"], f"{name} other": [said, "C"]}))
    mapping = {"files": "*.json", "records": ".", "conversation_id": "key", "messages": "value.0",
               "speaker": "agent", "text": "text"}  # fmt: skip
    out = tmp_path / "out"
    assert build(write_recipe(tmp_path, root, mapping), out) == 0
    [duplicate] = [r for r in rejects(out) if r["kind"] == "duplicate"]
    assert question not in duplicate["reason"]
    assert f"(same id team:{question[: 60 - 3 - len('team:')]}...)" in duplicate["reason"]
