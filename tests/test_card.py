"""The dataset card: it describes exactly the build it sits in, and its YAML makes `load_dataset` see new content.

`datasets` caches `load_dataset(folder, config)` by a hash of the card's `configs` and `dataset_info`, not of
the files (DESIGN §10): these tests rebuild into the same folder, and build two folders of the same name,
loading each time into ONE datasets cache, and check that the rows loaded are the rows just built.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import datasets
import pytest
import yaml
from huggingface_hub import DatasetCard
from realdata import REAL, build_realdata
from test_mapping import CHAT_MAPPING, write_chat

from coord_bench.cli import main


def _built_ids(folder, config):
    return sorted(r["id"] for path in sorted((folder / config).glob("*.parquet"))
                  for r in datasets.Dataset.from_parquet(str(path)).select_columns(["id"]))


def _loaded_ids(folder, config, cache):
    loaded = datasets.load_dataset(str(folder), config, cache_dir=str(cache))
    return sorted(i for split in loaded.values() for i in split["id"])


def _arena_build(out, first, last):
    """Build real arena records ``first:last`` into ``out``: the same folder, other content for other ranges."""
    source = out.parent / "arena_source"
    source.mkdir(parents=True, exist_ok=True)
    lines = (REAL / "chatbot_arena" / "train.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (source / "train.jsonl").write_text("".join(lines[first:last]), encoding="utf-8")
    args = ["build", "--no-progress", "--annotate", "none", "--out", str(out), "--sources", "chatbot_arena"]
    assert main([*args, "--source-dir", f"chatbot_arena={source}"]) == 0
    return _built_ids(out, "chatbot_arena")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param((0, 12), (0, 30), id="more-rows"),
        # same row count, other records: only the content fingerprint tells the two builds apart
        pytest.param((0, 10), (10, 20), id="as-many-rows-other-content"),
    ],
)
def test_a_rebuild_into_the_same_folder_loads_the_new_rows(tmp_path, first, second):
    cache = tmp_path / "hf_cache"
    out = tmp_path / "builds" / "coord_bench"
    before = _arena_build(out, *first)
    assert _loaded_ids(out, "chatbot_arena", cache) == before
    after = _arena_build(out, *second)
    assert after != before
    assert _loaded_ids(out, "chatbot_arena", cache) == after


def test_two_folders_of_the_same_name_load_their_own_rows(tmp_path):
    cache = tmp_path / "hf_cache"
    embedded = tmp_path / "a" / "coord_bench"
    assert main(["build", "--no-progress", "--annotate", "none", "--out", str(embedded)]) == 0
    real = build_realdata(tmp_path / "b" / "coord_bench", "--annotate", "none")
    assert _loaded_ids(embedded, "debate", cache) == _built_ids(embedded, "debate")
    assert _loaded_ids(real, "debate", cache) == _built_ids(real, "debate")
    assert _built_ids(embedded, "debate") != _built_ids(real, "debate")


def test_the_card_yaml_carries_sizes_and_a_content_fingerprint_per_config(tmp_path):
    out = tmp_path / "coord_bench"
    assert main(["build", "--no-progress", "--annotate", "none", "--out", str(out)]) == 0
    card = DatasetCard.load(out / "README.md").data.to_dict()
    manifest = yaml.safe_load((out / "build_manifest.json").read_text())
    manifest_configs = {c: info for c, info in manifest["configs"].items() if info["num_rows"]}
    infos = {info["config_name"]: info for info in card["dataset_info"]}
    assert set(infos) == set(manifest_configs)
    for name, info in infos.items():
        splits = {s["name"]: s for s in info["splits"]}
        expected = {split: n for split, n in manifest_configs[name]["splits"].items() if n}
        assert {s: v["num_examples"] for s, v in splits.items()} == expected
        assert all(v["num_bytes"] > 0 for v in splits.values())
        assert info["dataset_size"] == sum(v["num_bytes"] for v in splits.values())
        assert info["download_size"] == sum(p.stat().st_size for p in (out / name).glob("*.parquet"))
    fingerprints = {c["config_name"]: re.search(r"sha256 ([0-9a-f]{16})$", c["description"]).group(1)
                    for c in card["configs"]}
    assert len(set(fingerprints.values())) == len(fingerprints)  # every config has its own content
    # the fingerprint follows the bytes of the shards: touch one shard and only its config's changes
    shard = next((out / "debate").glob("train-*.parquet"))
    shard.write_bytes(shard.read_bytes())  # same bytes: same fingerprint
    from coord_bench.card import card_metadata

    again = {c["config_name"]: c["description"] for c in card_metadata(manifest, out)["configs"]}
    assert {k: v[-16:] for k, v in again.items()} == fingerprints


def test_a_mapping_build_card_names_only_its_own_configs_sources_and_tags(tmp_path, monkeypatch):
    private = tmp_path / "private_data" / "team_runs"
    write_chat(private)
    recipe = {
        "name": "my_team",
        "sources": [{"name": "my_logs", "adapter": "mapping", "location": {"path": str(private)},
                     "mapping": yaml.safe_load(CHAT_MAPPING)}],
        "output": {"dir": str(tmp_path / "out" / "my_team")},
    }
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    assert main(["build", str(tmp_path / "recipe.yaml"), "--no-progress", "--annotate", "none"]) == 0
    out = tmp_path / "out" / "my_team"
    text = (out / "README.md").read_text(encoding="utf-8")
    assert str(tmp_path) not in text and "private_data" not in text  # no local path, anywhere in the card
    card = DatasetCard.load(out / "README.md")
    configs = {c["config_name"] for c in card.data.to_dict()["configs"]}
    assert configs == {"all", "my_logs"}
    assert not {"debate", "dialogue", "pairwise-preference"} & set(card.data.tags)
    assert card.data.to_dict()["multilinguality"] == "monolingual"
    # every load line of the card runs as pasted (from the folder that holds the build) and names a real config
    snippet = re.search(r"```python\n(.*?)```", card.text, re.S).group(1)
    named = re.findall(r'load_dataset\("([^"]+)", "([^"]+)"', snippet)
    assert {config for _, config in named} == configs and {path for path, _ in named} == {"./my_team"}
    assert snippet.startswith("from datasets import load_dataset\n")
    shutil.copytree(out, tmp_path / "paste" / "my_team")
    monkeypatch.chdir(tmp_path / "paste")
    cache = str(tmp_path / "hf_cache")
    namespace = {"load_dataset": lambda *args, **kwargs: datasets.load_dataset(*args, cache_dir=cache, **kwargs)}
    exec(compile(snippet.split("\n", 1)[1], "card snippet", "exec"), namespace)
    assert sum(split.num_rows for split in namespace["ds"].values()) == 3
    # the Rebuild section shows the local source by its folder name only, and says so
    assert "path: team_runs" in text and "shown by their folder name only" in text


def test_the_method_text_is_the_cards_own_and_not_a_module_docstring(tmp_path, monkeypatch):
    """Editing a layer's docstring must not change a published card; its method file is what the card says."""
    import coord_bench.mappers.rules as rules
    from coord_bench.card import render_card

    out = tmp_path / "out"
    args = ["build", "--no-progress", "--annotate", "tokens,rules", "--out", str(out), "--set", "output.report=false"]
    assert main(args) == 0
    manifest = json.loads((out / "build_manifest.json").read_text())
    before = render_card(manifest, "user/coord_bench", out)
    method = (Path(rules.__file__).parents[1] / "card_methods" / "rules.md").read_text().strip()
    assert f"### rules\n\n{method}\n\n" in before and "### tokens\n\n" in before
    monkeypatch.setattr(rules, "__doc__", "an edited docstring")
    assert render_card(manifest, "user/coord_bench", out) == before
