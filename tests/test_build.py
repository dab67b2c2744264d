"""The offline build end to end: CLI, validation, load_dataset by folder and by name, export, splits."""

import json

import datasets
import pyarrow.parquet as pq
import pytest
from realdata import REAL, build_realdata

import coord_bench
from coord_bench.cli import main

CONFIGS = ["all", "chatbot_arena", "debate", "multi_character_dialogue"]


@pytest.fixture(scope="module")
def default_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("build") / "coord_bench"
    assert main(["build", "--out", str(out), "--no-progress"]) == 0
    return out


def parquet_ids(out, config):
    return sorted(r["id"] for path in sorted((out / config).glob("*.parquet")) for r in pq.read_table(path).to_pylist())


def test_default_build_writes_every_config_and_validates(default_build, capsys):
    manifest = json.loads((default_build / "build_manifest.json").read_text())
    assert set(manifest["configs"]) == set(CONFIGS)
    assert manifest["configs"]["all"]["num_rows"] == sum(manifest["configs"][name]["num_rows"] for name in CONFIGS[1:])
    for _name, source in manifest["sources"].items():
        assert source["read"] == source["normalized"] + source["rejected"]
        assert source["files"] and all(len(f["sha256"]) == 64 for f in source["files"])
    # the embedded sample holds deliberate rejects: a null conversation, an unknown winner, an empty scene, a duplicate
    kinds = sorted(json.loads(line)["kind"] for line in (default_build / "rejects.jsonl").read_text().splitlines())
    assert kinds == ["duplicate", "empty_conversation", "empty_conversation", "unknown_value"]
    assert main(["validate", str(default_build)]) == 0
    assert "valid:" in capsys.readouterr().out


@pytest.mark.parametrize("config", CONFIGS)
def test_load_dataset_from_the_folder(default_build, config):
    manifest = json.loads((default_build / "build_manifest.json").read_text())
    ds = datasets.load_dataset(str(default_build), config)
    assert {split: len(d) for split, d in ds.items()} == {
        split: n for split, n in manifest["configs"][config]["splits"].items() if n
    }
    assert sorted(r["id"] for d in ds.values() for r in d) == parquet_ids(default_build, config)
    assert ds[next(iter(ds))].features == coord_bench.schema.features()


def test_card_yaml_lists_the_configs(default_build):
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(default_build / "README.md")
    configs = {c["config_name"]: c for c in card.data.to_dict()["configs"]}
    assert set(configs) == set(CONFIGS) and configs["all"]["default"] is True
    assert "${" not in card.text
    assert "| `turns[].messages[].agreement` |" in card.text


def test_load_dataset_by_name_after_import(default_build, tmp_path, monkeypatch):
    # from an empty working folder, where datasets' own lookup of data files would fail
    monkeypatch.chdir(tmp_path)
    ds = datasets.load_dataset("coord_bench", "debate", cache_dir=str(tmp_path / "cache"))
    assert sorted(r["id"] for d in ds.values() for r in d) == parquet_ids(default_build, "debate")
    real = datasets.load_dataset(
        "coord_bench", "debate", cache_dir=str(tmp_path / "cache"), source_dirs={"debate": str(REAL / "debate")}
    )
    assert sum(len(d) for d in real.values()) == 10
    assert "debate:object_13:f7046c67-150c-447c-ba43-c48cce749417" in {r["id"] for d in real.values() for r in d}


def test_split_groups_never_straddle_splits(default_build):
    rows = [r for path in (default_build / "all").glob("*.parquet") for r in pq.read_table(path).to_pylist()]
    by_group = {}
    for row in rows:
        by_group.setdefault(row["split_group"], set()).add(row["split"])
    assert all(len(splits) == 1 for splits in by_group.values())
    # two arena prompts that differ only in case and spacing, and one DEBATE question in two configs
    france = [r for r in rows if r["source"] == "chatbot_arena" and "capital of" in r["task"]["input"].lower()]
    assert len(france) == 2 and france[0]["split_group"] == france[1]["split_group"]
    shared = [r for r in rows if r["source_id"] == "aec50017-0d0b-47fe-b8a6-2684d4b65326"]
    assert len(shared) == 2 and len({r["split"] for r in shared}) == 1


def test_build_of_all_realdata_accounts_for_every_record(tmp_path):
    out = build_realdata(tmp_path / "real")
    manifest = json.loads((out / "build_manifest.json").read_text())
    arena_lines = len((REAL / "chatbot_arena" / "train.jsonl").read_text().splitlines())
    debate_rows = sum(
        len(d) if isinstance(d := json.loads(p.read_text()), list) else 1 for p in (REAL / "debate").rglob("*.json")
    )
    read = {name: s["read"] for name, s in manifest["sources"].items()}
    assert read == {"chatbot_arena": arena_lines, "debate": debate_rows, "multi_character_dialogue": 9}
    assert manifest["totals"]["read"] == manifest["totals"]["normalized"] + manifest["totals"]["rejected"]
    assert main(["validate", str(out)]) == 0


def test_limit_reads_at_most_n_records_per_source(tmp_path):
    out = tmp_path / "small"
    assert main(["build", "--out", str(out), "--no-progress", "--limit", "3"]) == 0
    manifest = json.loads((out / "build_manifest.json").read_text())
    assert {name: s["read"] for name, s in manifest["sources"].items()} == {
        "chatbot_arena": 3,
        "debate": 3,
        "multi_character_dialogue": 3,
    }


def test_rebuild_is_deterministic(default_build, tmp_path):
    again = tmp_path / "again"
    assert main(["build", "--out", str(again), "--no-progress"]) == 0

    def content(folder):
        return sorted(
            (r["id"], r["split"], r["provenance"]["content_hash"])
            for p in (folder / "all").glob("*.parquet")
            for r in pq.read_table(p).to_pylist()
        )

    assert content(again) == content(default_build)


def test_export_seed_json_matches_the_seed_layout(default_build, tmp_path):
    target = tmp_path / "seed.json"
    assert main(["export", str(default_build), "--format", "seed-json", "--out", str(target)]) == 0
    exported = json.loads(target.read_text())["examples"]
    reference = json.loads((REAL / "chatbot_arena" / "seed_layout_data_out.json").read_text())["examples"][0]
    manifest = json.loads((default_build / "build_manifest.json").read_text())
    assert len(exported) == manifest["configs"]["chatbot_arena"]["num_rows"]
    for example in exported:
        assert set(example) == {"input", "context", "output", "metadata"}
        assert set(reference["context"]) - {"api_metadata"} <= set(example["context"])
        assert example["output"] == f"Winner: {example['context']['winner']}"
        assert example["context"]["winner"] in {"model_a", "model_b", "tie", "tie (bothbad)"}
        assert set(example["metadata"]) == {"dataset_source", "annotation_version", "annotation_date"}
    multi = [e for e in exported if e["context"]["turn"] and e["context"]["turn"] > 1]
    assert multi, "the embedded sample has multi-turn arena rows"


def test_shards_stay_under_the_size_limit(tmp_path):
    limit = 400 * 1024
    out = build_realdata(tmp_path / "sharded", "--max-shard-size", "400KB")
    shards = sorted((out / "all").glob("*.parquet"))
    assert len(shards) > 3
    for shard in shards:
        # a shard over the limit may only hold one row (a row cannot be split)
        assert shard.stat().st_size <= limit or pq.ParquetFile(shard).metadata.num_rows == 1, shard.name
    assert main(["validate", str(out)]) == 0
    assert sum(pq.ParquetFile(s).metadata.num_rows for s in shards) == 92


def test_the_card_describes_only_the_sources_of_the_build(tmp_path):
    out = tmp_path / "debate_only"
    assert main(["build", "--out", str(out), "--no-progress", "--sources", "debate"]) == 0
    card = (out / "README.md").read_text()
    sources_part = card.split("## Columns")[0]  # intro, contents, sources, splits (the column docs are generic)
    assert "chatbot_arena" not in sources_part and "Chatbot Arena" not in sources_part
    assert "multi-character" not in sources_part
    assert "`decisionSuccess` means the protocol reached a decision" in card
    assert "- **debate**: the exampleId" in card
    assert "debate (coord_bench embedded sample of debate): apache-2.0" in card.replace("\n  ", " ")
