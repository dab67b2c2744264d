"""Bad input ends in a reject with a specific reason or a clear error, never a crash; counts add up."""

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from realdata import REAL

from coord_bench.cli import main
from coord_bench.locate import EMBEDDED_DIR


def build(tmp_path, *args):
    out = tmp_path / "out"
    code = main(["build", "--out", str(out), "--no-progress", *args])
    return code, out


def rejects_of(out):
    return [json.loads(line) for line in (out / "rejects.jsonl").read_text().splitlines()]


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
    [reject] = rejects_of(out)
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
    [reject] = rejects_of(out)
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
