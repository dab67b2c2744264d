"""Human review, both ways (coord_bench/review.py, coord_bench/review_import.py): the export, the import of two
annotators' files with a known agreement, and the refusal of invalid files."""

from __future__ import annotations

import csv
import json
import shutil

import datasets
import pytest
from judge_helpers import records_of
from realdata import source_dir_args

from coord_bench.cli import main
from coord_bench.labels import MAST_MODES
from coord_bench.review import FORM
from coord_bench.schema import record_errors


def _rows(path):
    return list(csv.DictReader(path.open(encoding="utf-8")))


def test_review_sample_exports_csv_jsonl_and_a_guide(real_build, tmp_path):
    target = tmp_path / "review.csv"
    assert main(["review-sample", str(real_build), "--n", "6", "--out", str(target), "--seed", "3"]) == 0
    rows = _rows(target)
    assert len(rows) == 6 and {r["source"] for r in rows} == {"chatbot_arena", "debate", "multi_character_dialogue"}
    assert all("[turn 0]" in r["conversation"] for r in rows)
    assert all(r[f.name] == "" for r in rows for f in FORM) and all(r["annotator"] == "" for r in rows)
    assert not any(name.startswith(("rules_", "judge_")) for name in rows[0])  # blind: no label to anchor on
    lines = [json.loads(line) for line in (tmp_path / "review.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [{k: str(v) for k, v in line.items()} for line in lines] == rows  # CSV cells are text
    guide = (tmp_path / "review_guide.md").read_text(encoding="utf-8")
    assert all(f"`{f.name}`" in guide for f in FORM) and all(m.name in guide for m in MAST_MODES)
    again = tmp_path / "again.csv"
    assert main(["review-sample", str(real_build), "--n", "6", "--out", str(again), "--seed", "3"]) == 0
    assert again.read_text() == target.read_text()  # seeded: the same sample


def test_review_sample_size_comes_from_the_recipe(tmp_path):
    out = tmp_path / "b"
    args = ["build", "--no-progress", "--out", str(out), "--limit", "3", "--sources", "debate,chatbot_arena",
            "--annotate", "none", "--set", "output.report=false", "--set", "review.sample_size=4",
            *source_dir_args(("debate", "chatbot_arena"))]  # fmt: skip
    assert main(args) == 0
    assert main(["review-sample", str(out), "--out", str(tmp_path / "r.csv")]) == 0
    assert len(_rows(tmp_path / "r.csv")) == 4  # the build holds 6; the recipe asks for 4


@pytest.fixture
def exported(real_build, tmp_path):
    """A copy of the real build (the import rewrites it) and its full review export, ordered by id."""
    folder = tmp_path / "build"
    shutil.copytree(real_build, folder)
    assert main(["review-sample", str(folder), "--out", str(tmp_path / "sample.csv")]) == 0
    return folder, sorted(_rows(tmp_path / "sample.csv"), key=lambda r: r["id"])


def _write(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _fill(rows, success, level, preferred):
    filled, pairwise = [], iter(preferred)
    for row, s, a in zip(rows, success, level, strict=True):
        arena = row["source"] == "chatbot_arena"
        filled.append({**row, "success": s, "agreement_level": a, "preferred": next(pairwise) if arena else ""})
    return filled


def test_review_round_trip_reproduces_a_known_kappa(exported, tmp_path):
    folder, rows = exported
    assert len(rows) == 9  # 3 records of each source: the default sample (30) takes them all
    # success over the 9 conversations (ids sorted), alice vs bob:
    #   alice T T T T T F F F F    bob T T T F F F F F T
    # agree on 6 of 9: p_o = 6/9; alice 5 T / 4 F, bob 4 T / 5 F: p_e = (5*4 + 4*5)/81 = 40/81
    # Cohen's kappa = (54/81 - 40/81) / (41/81) = 14/41 = 0.341463...
    # Krippendorff's alpha (nominal, 2 coders, 18 values): coincidences o_TF = o_FT = 3, n_T = n_F = 9,
    #   D_o = 6/18, D_e = 2*9*9 / (18*17) = 162/306, alpha = 1 - (6/18)/(162/306) = 10/27 = 0.370370...
    t, f = "true", "false"
    alice = [t, t, t, t, t, f, f, f, f]
    bob = [t, t, t, f, f, f, f, f, t]
    levels = ["full", "partial", "none"] * 3  # the same for both: kappa 1
    _write(tmp_path / "alice.csv", _fill(rows, alice, levels, ["A", "B", "tie"]))
    jsonl = _fill(rows, [v.upper() for v in bob], levels, ["a", "B", "B"])  # spreadsheet case is accepted
    (tmp_path / "bob.jsonl").write_text("".join(json.dumps(r) + "\n" for r in jsonl), encoding="utf-8")
    assert main(["review-import", str(folder), str(tmp_path / "alice.csv"), str(tmp_path / "bob.jsonl")]) == 0

    report = json.loads((folder / "reports" / "labels.json").read_text(encoding="utf-8"))
    human = report["human_review"]
    assert human["annotators"] == ["alice", "bob"] and human["conversations"] == 9
    success = human["inter_annotator"]["success"]
    (pair,) = success["pairs"]
    assert pair["cohen_kappa"]["value"] == pytest.approx(14 / 41)
    assert pair["agreement"]["value"] == pytest.approx(6 / 9)
    assert success["krippendorff_alpha"]["value"] == pytest.approx(10 / 27)
    low, high = pair["cohen_kappa"]["low"], pair["cohen_kappa"]["high"]
    assert low < 14 / 41 < high
    assert human["inter_annotator"]["agreement_level"]["pairs"][0]["cohen_kappa"]["value"] == pytest.approx(1.0)
    preferred = human["inter_annotator"]["preferred"]
    assert preferred["conversations"] == 3 and preferred["pairs"][0]["agreement"]["value"] == pytest.approx(2 / 3)

    records = {r["id"]: r for r in records_of(folder)}
    assert len(records) == 9 and all(not list(record_errors(r)) for r in records.values())
    first = records[rows[0]["id"]]["annotations"]["coordination"]["labels"]
    assert {(item["provenance"], item["name"], item["value"]) for item in first} == {
        ("human:alice", "success", "true"), ("human:alice", "agreement_level", "full"),
        ("human:bob", "success", "true"), ("human:bob", "agreement_level", "full"),
    } | ({("human:alice", "preferred", "A"), ("human:bob", "preferred", "A")}
         if rows[0]["source"] == "chatbot_arena" else set())  # fmt: skip
    stored = datasets.load_dataset("json", data_files=str(folder / "reviews" / "human_labels.jsonl"), split="train")
    assert len(stored) == 9 * 2 * 2 + 3 * 2 and set(stored["provenance"]) == {"human:alice", "human:bob"}
    loaded = datasets.load_dataset(str(folder), "all", split="train", cache_dir=str(tmp_path / "cache"))
    in_build = [item for row in loaded for item in (row["annotations"]["coordination"] or {}).get("labels") or []]
    assert in_build and all(item["provenance"].startswith("human:") for item in in_build)
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "## How good are the labels" in card and "alice/bob: 0.341" in card

    # bob again, alone, with alice's labels for success: alice's stored labels stay, bob's are replaced
    _write(tmp_path / "bob.csv", _fill(rows, alice, levels, ["A", "B", "tie"]))
    assert main(["review-import", str(folder), str(tmp_path / "bob.csv")]) == 0
    report = json.loads((folder / "reports" / "labels.json").read_text(encoding="utf-8"))
    assert report["human_review"]["inter_annotator"]["success"]["pairs"][0]["cohen_kappa"]["value"] == 1.0


def test_invalid_review_files_are_refused_with_their_line(exported, tmp_path, capsys):
    folder, rows = exported
    good = _fill(rows, ["true"] * 9, ["full"] * 9, ["A", "B", "tie"])
    bad = [dict(r) for r in good]
    bad[2]["success"] = "maybe"
    bad[4]["id"] = "no-such-id"
    bad[5]["agreement_level"] = ""
    non_arena = next(k for k, r in enumerate(bad) if r["source"] != "chatbot_arena" and k not in (2, 4, 5))
    bad[non_arena]["preferred"] = "A"
    _write(tmp_path / "carol.csv", bad)
    text = (tmp_path / "carol.csv").read_text(encoding="utf-8")

    def line_of(row_id):  # where the row starts: transcripts span many lines, so the row number would not do
        return text[: text.index("\n" + row_id + ",")].count("\n") + 2

    before = {p: p.read_bytes() for p in folder.rglob("*.parquet")}
    assert main(["review-import", str(folder), str(tmp_path / "carol.csv")]) == 2
    err = capsys.readouterr().err
    assert f"carol.csv, line {line_of(bad[2]['id'])}: invalid value 'maybe' for 'success'" in err
    assert f"carol.csv, line {line_of('no-such-id')}: unknown conversation id 'no-such-id'" in err
    assert f"carol.csv, line {line_of(bad[5]['id'])}: missing value for 'agreement_level'" in err
    assert f"carol.csv, line {line_of(bad[non_arena]['id'])}: 'preferred' is for pairwise conversations only" in err
    assert "4 problem(s)" in err and "nothing was stored" in err

    no_column = [{k: v for k, v in r.items() if k != "agreement_level"} for r in good]
    (tmp_path / "dave.jsonl").write_text("".join(json.dumps(r) + "\n" for r in no_column) + "{oops\n")
    assert main(["review-import", str(folder), str(tmp_path / "dave.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "dave.jsonl, line 1: missing field 'agreement_level'" in err and "dave.jsonl, line 10: not JSON" in err
    assert not (folder / "reviews").exists() and not (folder / "reports" / "labels.json").exists()
    assert {p: p.read_bytes() for p in folder.rglob("*.parquet")} == before


def test_a_rebuild_keeps_the_review_and_merges_it_again(exported, tmp_path):
    from judge_helpers import build_sources

    folder, rows = exported
    _write(tmp_path / "erin.csv", _fill(rows, ["false"] * 9, ["none"] * 9, ["tie"] * 3))
    assert main(["review-import", str(folder), str(tmp_path / "erin.csv")]) == 0
    build_sources(folder, ("chatbot_arena", "debate", "multi_character_dialogue"), 3)  # the same build, again
    assert (folder / "reviews" / "human_labels.jsonl").is_file()  # not a build folder: carried over
    labels = [r["annotations"]["coordination"]["labels"] for r in records_of(folder)]
    assert len(labels) == 9 and all({i["provenance"] for i in items} == {"human:erin"} for items in labels)
    manifest = json.loads((folder / "build_manifest.json").read_text(encoding="utf-8"))
    assert manifest["annotations"]["human_review"]["conversations"] == 9
    assert json.loads((folder / "reports" / "labels.json").read_text())["human_review"]["annotators"] == ["erin"]
