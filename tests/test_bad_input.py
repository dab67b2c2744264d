"""Bad input ends in a reject with a specific reason or a clear error, never a crash; counts add up."""

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from realdata import REAL

from coord_bench.cli import main
from coord_bench.folder_swap import staging_path
from coord_bench.locate import EMBEDDED_DIR


def build(tmp_path, *args):
    """Build the base columns only, no report: these tests are about reading and normalizing."""
    out = tmp_path / "out"
    code = main(["build", "--out", str(out), "--no-progress", "--annotate", "none", "--set", "output.report=false",
                 *args])
    return code, out


def rejects_of(out):
    return [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]


def stopped_rejects(out):
    """The rejects of a build that stopped because a source gave no record: complete, in the staging folder."""
    return rejects_of(staging_path(out))


def manifest_of(out):
    return json.loads((out / "build_manifest.json").read_text())


def assert_counts_add_up(manifest):
    for name, source in manifest["sources"].items():
        assert source["read"] == source["normalized"] + source["rejected"], name
        assert sum(source["splits"].values()) == source["normalized"], name


def test_truncated_debate_file_keeps_good_rows_and_rejects_the_rest(tmp_path):
    src = tmp_path / "debate" / "data" / "simple_nopersona_debate_majority_consensus"
    src.mkdir(parents=True)
    original = (
        EMBEDDED_DIR
        / "debate/data/simple_nopersona_debate_majority_consensus/simple_nopersona_debate_majority_consensus.json"
    )
    rows = json.loads(original.read_text())
    text = json.dumps(rows)
    cut = text.index(json.dumps(rows[2])[:50]) + 200  # inside the third row
    (src / "simple_nopersona_debate_majority_consensus.json").write_text(text[:cut])
    code, out = build(tmp_path, "--sources", "debate", "--source-dir", f"debate={tmp_path / 'debate'}")
    assert code == 0
    manifest = manifest_of(out)
    assert manifest["sources"]["debate"]["read"] == 3
    assert manifest["sources"]["debate"]["normalized"] == 2
    [reject] = rejects_of(out)
    assert reject["kind"] == "unreadable" and reject["locator"].endswith(".json#2")
    assert "element 2 of the JSON array is truncated or invalid" in reject["reason"]
    assert_counts_add_up(manifest)


def write_arena(folder, rows):
    folder.mkdir(parents=True)
    with open(folder / "train.jsonl", "w") as handle:
        for row in rows:
            handle.write((row if isinstance(row, str) else json.dumps(row)) + "\n")


def arena_row(**changes):
    row = json.loads((REAL / "chatbot_arena" / "train.jsonl").read_text().splitlines()[0])
    row.update(changes)
    return row


@pytest.mark.parametrize(
    ("row", "kind", "field", "reason"),
    [
        (arena_row(winner=3), "wrong_type", "winner", "field 'winner': expected str, found int 3"),
        (
            arena_row(winner="model_c"),
            "unknown_value",
            "winner",
            "expected one of model_a, model_b, tie, tie (bothbad), found 'model_c'",
        ),
        (
            {k: v for k, v in arena_row().items() if k != "question_id"},
            "missing_field",
            "question_id",
            "missing required field 'question_id'",
        ),
        (arena_row(conversation_a=None), "empty_conversation", "conversation_a", "field 'conversation_a' is null"),
        (
            arena_row(conversation_b=[]),
            "empty_conversation",
            "conversation_b",
            "field 'conversation_b' is an empty list",
        ),
        (
            arena_row(conversation_a=[{"role": "user", "content": 5}]),
            "wrong_type",
            "conversation_a[0].content",
            "expected str, found int 5",
        ),
        ('{"question_id": "abc", "winner": ', "unreadable", None, "line 1 is not valid JSON"),
        ("[1, 2]", "wrong_type", None, "expected a JSON object, found list"),
    ],
)
def test_arena_rejects_name_the_field(tmp_path, row, kind, field, reason):
    write_arena(tmp_path / "arena", [row, arena_row(question_id="good")])
    code, out = build(tmp_path, "--sources", "chatbot_arena", "--source-dir", f"chatbot_arena={tmp_path / 'arena'}")
    assert code == 0
    [reject] = rejects_of(out)
    assert (reject["kind"], reject["field"]) == (kind, field)
    assert reason in reject["reason"]
    assert reject["locator"] == "train.jsonl#0"
    manifest = manifest_of(out)
    assert manifest["sources"]["chatbot_arena"]["normalized"] == 1
    assert manifest["sources"]["chatbot_arena"]["rejects_by_kind"] == {kind: 1}
    assert_counts_add_up(manifest)


def test_debate_file_from_another_mallm_version(tmp_path):
    """The older MALLM layout (one object, 21 keys) is read; a file without a transcript is rejected clearly."""
    folder = tmp_path / "runs"
    folder.mkdir()
    shutil.copy(REAL / "debate" / "mallm_raw_older" / "object_13.json", folder / "object_13.json")
    foreign = json.loads((REAL / "debate" / "mallm_raw_older" / "object_13.json").read_text())
    foreign.pop("globalMemory")
    foreign["memory"] = []
    (folder / "other_version.json").write_text(json.dumps(foreign))
    code, out = build(tmp_path, "--sources", "debate", "--source-dir", f"debate={folder}")
    assert code == 0
    manifest = manifest_of(out)
    assert (manifest["sources"]["debate"]["normalized"], manifest["sources"]["debate"]["rejected"]) == (1, 1)
    [reject] = rejects_of(out)
    assert reject["locator"] == "other_version.json#0"
    assert reject["reason"] == "missing required field 'globalMemory'"
    assert "raw_pointer" in reject and reject["raw_pointer"].endswith("other_version.json#0")


def test_large_raw_records_are_pointed_to_not_copied(tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    row = json.loads((REAL / "debate" / "mallm_raw_older" / "object_13.json").read_text())
    row["decisionSuccess"] = "yes"
    (folder / "run.json").write_text(json.dumps([row]))
    code, out = build(tmp_path, "--sources", "debate", "--source-dir", f"debate={folder}")
    assert code == 2 and not out.exists()  # its only record is rejected: the build stops
    [reject] = stopped_rejects(out)
    assert reject["field"] == "decisionSuccess" and "expected bool, found str" in reject["reason"]
    assert "raw" not in reject and reject["raw_pointer"].endswith("run.json#0")


def test_dialogue_string_turns_without_speaker_are_rejected(tmp_path):
    folder = tmp_path / "dialogue"
    folder.mkdir()
    row = {
        "setting": "A room.",
        "characters": {"Ann": "x"},
        "conversation": ["no speaker here"],
        "setting after interaction": None,
    }
    (folder / "train.jsonl").write_text(json.dumps(row) + "\n")
    code, out = build(
        tmp_path, "--sources", "multi_character_dialogue", "--source-dir", f"multi_character_dialogue={folder}"
    )
    assert code == 2
    [reject] = stopped_rejects(out)
    assert reject["field"] == "conversation[0]" and "must look like 'Name: message'" in reject["reason"]


def test_missing_source_dir_is_a_clear_error(tmp_path, capsys):
    code, _ = build(tmp_path, "--source-dir", f"debate={tmp_path / 'nowhere'}")
    assert code == 2
    err = capsys.readouterr().err
    assert f"source 'debate': the folder {tmp_path / 'nowhere'} does not exist" in err
    assert "Traceback" not in err


def test_folder_without_the_layout_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _ = build(tmp_path, "--sources", "debate", "--source-dir", f"debate={tmp_path / 'empty'}")
    assert code == 2
    assert "source 'debate': no data files under" in capsys.readouterr().err


def test_unknown_source_name_lists_the_known_ones(tmp_path, capsys):
    code, _ = build(tmp_path, "--sources", "chatbot_arena,reddit")
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown source 'reddit'; known sources: chatbot_arena, debate, multi_character_dialogue" in err


def test_unknown_annotation_is_a_clear_error(tmp_path, capsys):
    code, _ = build(tmp_path, "--annotate", "telepathy")
    assert code == 2
    assert "unknown annotation(s) telepathy" in capsys.readouterr().err


def test_refuses_to_overwrite_a_folder_that_is_not_a_build(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert build(tmp_path)[0] == 2
    assert "is not a coord_bench build" in capsys.readouterr().err
    assert (out / "precious.txt").read_text() == "keep me"


def test_validate_names_file_row_and_field(tmp_path, capsys):
    code, out = build(tmp_path, "--sources", "debate")
    assert code == 0
    shard = next((out / "debate").glob("train-*.parquet"))
    table = pq.read_table(shard)
    rows = table.to_pylist()
    rows[1]["split"] = "holdout"
    rows[1]["turns"][0]["messages"][0]["n_chars"] = -3
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)
    assert main(["validate", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"debate/{shard.name} row 1 (id '{rows[1]['id']}'): split: 'holdout' is not one of" in err
    assert "turns[0].messages[0].n_chars: -3 is less than the minimum of 0" in err
    assert "INVALID: 2 problem(s)" in err


def test_validate_on_a_folder_that_is_not_a_build(tmp_path, capsys):
    assert main(["validate", str(tmp_path)]) == 2
    assert "is not a coord_bench build: build_manifest.json is missing" in capsys.readouterr().err


def test_an_unforeseen_shape_is_one_reject_not_a_crash(tmp_path):
    row = arena_row(openai_moderation={"categories": ["harassment"], "category_scores": {}, "flagged": True})
    write_arena(tmp_path / "arena", [row, arena_row(question_id="good")])
    code, out = build(tmp_path, "--sources", "chatbot_arena", "--source-dir", f"chatbot_arena={tmp_path / 'arena'}")
    assert code == 0
    [reject] = rejects_of(out)
    assert (reject["kind"], reject["field"]) == ("adapter_error", "openai_moderation")
    assert reject["locator"] == "train.jsonl#0"
    assert reject["reason"].startswith("field 'openai_moderation' has a shape this adapter cannot read: AttributeError")
    assert_counts_add_up(manifest_of(out))


def test_non_utf8_and_trailing_content_are_rejected_with_the_file_named(tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    good = (REAL / "debate" / "mallm_raw_older" / "object_13.json").read_text()
    (folder / "a_trailing.json").write_text(f"[{good}] [1]")
    (folder / "b_latin1.json").write_bytes(b'[{"exampleId": "caf\xe9"}]')
    code, out = build(tmp_path, "--sources", "debate", "--source-dir", f"debate={folder}")
    assert code == 0
    reasons = {r["locator"]: r["reason"] for r in rejects_of(out)}
    assert "unexpected content after the JSON array's closing ']'" in reasons["a_trailing.json#1"]
    assert reasons["b_latin1.json#0"] == (
        "element 0 of the JSON array (at byte 1) is not UTF-8 text: invalid continuation byte (byte 0xe9) "
        "at byte 18 of the record"
    )
    m = manifest_of(out)
    assert (m["sources"]["debate"]["normalized"], m["sources"]["debate"]["rejected"]) == (1, 2)


def test_a_rebuild_leaves_nothing_of_the_previous_build(tmp_path):
    code, out = build(tmp_path)
    assert code == 0
    for stale in ("report/old.png", "artifacts/latent_model.json", "reports/latent_quality.json"):
        (out / stale).parent.mkdir(exist_ok=True)
        (out / stale).write_text("from an earlier build")
    assert build(tmp_path)[0] == 0
    assert not (out / "report").exists() and not (out / "artifacts").exists() and not (out / "reports").exists()


def test_bad_yaml_in_set_is_a_clear_error(tmp_path, capsys):
    assert build(tmp_path, "--set", "splits.ratios={train: 0.9")[0] == 2
    err = capsys.readouterr().err
    assert "--set splits.ratios: the value '{train: 0.9' is not valid YAML" in err and "Traceback" not in err


def test_zero_split_ratios_and_orphan_sources_are_refused(tmp_path, capsys):
    assert build(tmp_path, "--set", "splits.ratios={train: 0, validation: 0, test: 0}")[0] == 2
    assert "split ratios must add up to more than 0" in capsys.readouterr().err
    assert build(tmp_path, "--set", "configs=[{name: all, sources: [debate]}]")[0] == 2
    assert "are in no config, so their records would be written nowhere" in capsys.readouterr().err


ARENA_LINES = (REAL / "chatbot_arena" / "train.jsonl").read_bytes().splitlines()
DEBATE_CONFIG = "simple_nopersona_debate_majority_consensus"
DEBATE_FILE = REAL / "debate" / "hub" / "data" / DEBATE_CONFIG / f"{DEBATE_CONFIG}.json"


def build_arena(tmp_path, lines, *more):
    folder = tmp_path / "arena"
    folder.mkdir(exist_ok=True)
    (folder / "train.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    return build(tmp_path, "--sources", "chatbot_arena", "--source-dir", f"chatbot_arena={folder}", *more)


def debate_rows(n):
    """The first n real DEBATE rows of distinct examples, one from each Hub config."""
    files = sorted((REAL / "debate" / "hub" / "data").glob("*/*.json"))
    return [json.loads(path.read_bytes())[0] for path in files[:n]]


def build_debate(tmp_path, data: bytes):
    folder = tmp_path / "debate" / "data" / DEBATE_CONFIG
    folder.mkdir(parents=True)
    (folder / f"{DEBATE_CONFIG}.json").write_bytes(data)
    return build(tmp_path, "--sources", "debate", "--source-dir", f"debate={tmp_path / 'debate'}")


def counts(out, source):
    s = manifest_of(out)["sources"][source]
    assert s["read"] == s["normalized"] + s["rejected"] + s["filtered"]
    return s["read"], s["normalized"], s["rejected"]


def test_one_bad_byte_in_a_jsonl_line_costs_exactly_that_line(tmp_path):
    lines = list(ARENA_LINES)
    at = lines[39].index(b'"winner"') + 2
    lines[39] = lines[39][:at] + b"\xff" + lines[39][at:]  # line 40
    code, out = build_arena(tmp_path, lines)
    assert code == 0
    assert counts(out, "chatbot_arena") == (73, 72, 1)
    [reject] = rejects_of(out)
    assert (reject["locator"], reject["kind"]) == ("train.jsonl#39", "unreadable")
    assert reject["reason"] == f"line 40 is not UTF-8 text: invalid start byte (byte 0xff) at byte {at} of the record"


def test_a_nul_byte_in_a_debate_array_costs_exactly_its_element(tmp_path):
    rows = [json.dumps(row).encode() for row in debate_rows(3)]
    at = rows[1].index(b'"instruction": "') + len(b'"instruction": "')
    rows[1] = rows[1][:at] + b"\x00" + rows[1][at:]
    code, out = build_debate(tmp_path, b"[" + b", ".join(rows) + b"]")
    assert code == 0
    assert counts(out, "debate") == (3, 2, 1)
    [reject] = rejects_of(out)
    assert reject["locator"] == f"data/{DEBATE_CONFIG}/{DEBATE_CONFIG}.json#1"
    start = len(rows[0]) + 3
    assert reject["reason"].startswith(f"element 1 of the JSON array (at byte {start}) is not valid JSON: "
                                       "Invalid control character")


def test_a_bom_before_a_debate_file_is_accepted(tmp_path):
    code, out = build_debate(tmp_path, b"\xef\xbb\xbf" + DEBATE_FILE.read_bytes())
    assert code == 0
    assert counts(out, "debate") == (1, 1, 0)


def test_a_bom_before_a_jsonl_file_is_accepted(tmp_path):
    code, out = build_arena(tmp_path, [b"\xef\xbb\xbf" + ARENA_LINES[0], *ARENA_LINES[1:]])
    assert code == 0
    assert counts(out, "chatbot_arena") == (73, 73, 0)


DEEP = b"[" * 100_000 + b"]" * 100_000


def test_a_value_nested_100000_deep_is_one_reject_in_every_reader(tmp_path):
    deep_line = ARENA_LINES[5][:-1] + b', "deep": ' + DEEP + b"}"
    code, out = build_arena(tmp_path, [*ARENA_LINES[:5], deep_line, *ARENA_LINES[6:]])
    assert code == 0 and counts(out, "chatbot_arena") == (73, 72, 1)
    [reject] = rejects_of(out)
    assert (reject["locator"], reject["kind"]) == ("train.jsonl#5", "too_deep")
    assert reject["reason"].startswith("line 6 is nested too deeply to read")

    rows = [json.dumps(row).encode() for row in debate_rows(2)]
    code, out = build_debate(tmp_path, b"[" + rows[0] + b", " + DEEP + b", " + rows[1] + b"]")
    assert code == 0 and counts(out, "debate") == (3, 2, 1)
    [reject] = rejects_of(out)
    assert (reject["locator"], reject["kind"]) == (f"data/{DEBATE_CONFIG}/{DEBATE_CONFIG}.json#1", "too_deep")


def test_a_deep_value_in_a_mapping_source_is_one_reject(tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    good = {"id": "c1", "messages": [{"from": "a", "text": "hi"}, {"from": "b", "text": "hello"}]}
    (folder / "chat.jsonl").write_bytes(json.dumps(good).encode() + b"\n" + DEEP + b"\n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "name: deep\nsources:\n  - name: logs\n    adapter: mapping\n"
        f"    location: {{path: {folder}}}\n"
        "    mapping: {conversation_id: id, messages: messages, speaker: from, text: text}\n"
    )
    code = main(["build", str(recipe), "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 0
    assert counts(tmp_path / "out", "logs") == (2, 1, 1)
    [reject] = rejects_of(tmp_path / "out")
    assert (reject["locator"], reject["kind"]) == ("chat.jsonl#1", "too_deep")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (b'"tstamp": NaN', "tstamp"),
        (b'"tstamp": -Infinity', "tstamp"),
        (b'"tstamp": 1e999', "tstamp"),  # a valid JSON number past the float range: it would read as inf
        (b'"toxic_chat_tag": {"roberta-large": {"flagged": false, "probability": Infinity}}',
         "toxic_chat_tag.roberta-large.probability"),
    ],
)
def test_nan_and_infinity_are_rejected_naming_the_field(tmp_path, change, field):
    row = ARENA_LINES[0][:-1] + b", " + change + b"}"  # a later duplicate key wins in JSON
    code, out = build_arena(tmp_path, [row, *ARENA_LINES[1:]])
    assert code == 0 and counts(out, "chatbot_arena") == (73, 72, 1)
    [reject] = rejects_of(out)
    assert (reject["locator"], reject["kind"], reject["field"]) == ("train.jsonl#0", "non_finite_number", field)
    literal = change.split(b": ")[-1].strip(b"}").decode()
    assert f"holds {literal} in '{field}', which is not a finite number" in reject["reason"]


def test_nan_persona_diversity_in_debate_is_rejected(tmp_path):
    text = DEBATE_FILE.read_bytes()
    original = json.dumps(json.loads(text)[0]["persona_diversity"]).encode()
    code, out = build_debate(tmp_path, text.replace(b'"persona_diversity": ' + original, b'"persona_diversity": NaN'))
    assert code == 2
    [reject] = stopped_rejects(out)
    assert (reject["kind"], reject["field"]) == ("non_finite_number", "persona_diversity")


def test_wrong_types_that_used_to_vanish_are_rejects(tmp_path):
    row = json.loads(ARENA_LINES[0])
    lines = [json.dumps({**row, "toxic_chat_tag": [1]}).encode(), *ARENA_LINES[1:]]
    code, out = build_arena(tmp_path, lines)
    [reject] = rejects_of(out)
    assert (reject["field"], reject["kind"]) == ("toxic_chat_tag", "wrong_type")
    assert reject["reason"] == "field 'toxic_chat_tag': expected dict, found list [1]"

    first, second = debate_rows(2)
    first["finalAnswer"] = 5
    second["globalMemory"][0]["solution"] = {"x": 1}
    code, out = build_debate(tmp_path, json.dumps([first, second]).encode())
    assert code == 2  # no DEBATE record is left: the build stops, the arena build before it stays in place
    assert counts(out, "chatbot_arena") == (73, 72, 1) and "debate" not in manifest_of(out)["sources"]
    fields = {r["locator"].rsplit("#")[-1]: (r["field"], r["reason"]) for r in stopped_rejects(out)}
    assert fields["0"] == ("finalAnswer", "field 'finalAnswer': expected str, found int 5")
    assert fields["1"] == ("globalMemory[0].solution", "field 'globalMemory[0].solution': expected str, found dict "
                                                       '{"x": 1}')


def test_empty_input_files_are_listed_in_the_manifest_and_on_the_console(tmp_path, capsys):
    folder = tmp_path / "arena"
    folder.mkdir()
    (folder / "a_empty.jsonl").write_bytes(b"")
    (folder / "b_empty.jsonl.gz").write_bytes(b"")
    (folder / "c_blank.jsonl").write_bytes(b"\n\n")
    code, out = build_arena(tmp_path, ARENA_LINES)
    assert code == 0
    source = manifest_of(out)["sources"]["chatbot_arena"]
    assert source["empty_files"] == ["a_empty.jsonl", "b_empty.jsonl.gz", "c_blank.jsonl"]
    assert counts(out, "chatbot_arena") == (73, 73, 0)
    console = capsys.readouterr().out
    assert "empty file (no records in it): chatbot_arena: b_empty.jsonl.gz" in console

    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "empty_array.json").write_text("[]")
    shutil.copy(DEBATE_FILE, runs / "good.json")
    code = main(["build", "--out", str(tmp_path / "out2"), "--no-progress", "--sources", "debate",
                 "--source-dir", f"debate={runs}"])
    assert code == 0 and manifest_of(tmp_path / "out2")["sources"]["debate"]["empty_files"] == ["empty_array.json"]
    assert "empty file (no records in it): debate: empty_array.json" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ("sources:\n  - name: debate\n    adapter: [x]\n", 'sources[0].adapter: expected string, found list ["x"]'),
        ("sources:\n  - name: {a: 1}\n    adapter: debate\n", 'sources[0].name: expected string, found dict {"a": 1}'),
        ("sources:\n  - name: debate\n    location: /p\n", 'sources[0].location: expected object, found str "/p"'),
    ],
)
def test_recipe_type_errors_name_the_key_path(tmp_path, capsys, recipe, message):
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe)
    assert main(["build", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"coord-bench build: error: {path} is invalid:") and message in err
    assert "Traceback" not in err


def test_set_into_a_scalar_is_a_clear_error(tmp_path, capsys):
    assert build(tmp_path, "--set", "sources.0.name.x=1")[0] == 2
    assert capsys.readouterr().err == (
        "coord-bench build: error: --set sources.0.name.x: sources.0.name is str \"chatbot_arena\", not a mapping "
        "or list, so it has no key 'x'\n"
    )


def test_a_schema_reject_names_the_field(tmp_path):
    [row] = debate_rows(1)
    row["globalMemory"][0]["message_id"] = -1
    code, out = build_debate(tmp_path, json.dumps([row]).encode())
    assert code == 2
    [reject] = stopped_rejects(out)
    assert (reject["kind"], reject["field"]) == ("schema", "turns[0].messages[0].message_id")
    assert "turns[0].messages[0].message_id: -1 is less than the minimum of 0" in reject["reason"]
