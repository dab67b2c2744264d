"""Declarative recipes: the sample recipe is the default build, overrides reach the build, errors help."""

import json

import pyarrow.parquet as pq
import pytest
import yaml
from huggingface_hub import DatasetCard
from realdata import REAL

from coord_bench.cli import main
from coord_bench.recipe import RecipeError, load_recipe, validate_recipe
from coord_bench.resources import resource_path

RECIPES = resource_path("builder_scripts")


def rows(folder, config="all"):
    return sorted(
        (r["id"], r["provenance"]["content_hash"], r["split"])
        for p in (folder / config).glob("*.parquet")
        for r in pq.read_table(p).to_pylist()
    )


def manifest(folder):
    return json.loads((folder / "build_manifest.json").read_text())


def build(*args):
    return main(["build", "--no-progress", *args])


def test_sample_recipe_is_the_no_argument_build(tmp_path):
    assert build("--out", str(tmp_path / "default")) == 0
    assert build(str(RECIPES / "sample.yaml"), "--out", str(tmp_path / "recipe")) == 0
    assert rows(tmp_path / "default") == rows(tmp_path / "recipe")
    assert len(rows(tmp_path / "default")) == manifest(tmp_path / "default")["configs"]["all"]["num_rows"] > 0


def test_published_recipe_validates_and_dry_runs_offline(capsys):
    recipe = load_recipe(RECIPES / "coord_bench.yaml")
    validate_recipe(recipe)
    assert recipe["annotations"]["judge"]["max_calls"] == 1000
    assert {s["location"]["hub"] for s in recipe["sources"]} == {
        "lmsys/chatbot_arena_conversations",
        "Multi-Agent-LLMs/DEBATE",
        "agentlans/multi-character-dialogue",
    }
    assert build(str(RECIPES / "coord_bench.yaml"), "--dry-run") == 0
    out = capsys.readouterr().out
    assert "download Hub dataset Multi-Agent-LLMs/DEBATE@" in out
    assert "gated: needs HF_TOKEN" in out
    assert "at most 1000 calls in all" in out and "at most $5.00" in out
    assert "dry run: nothing was downloaded, built or spent" in out


def test_manifest_and_card_carry_the_resolved_recipe_and_rebuild_from_it(tmp_path):
    out = tmp_path / "a"
    assert build("--out", str(out), "--set", "splits.ratios={train: 0.5, validation: 0.25, test: 0.25}") == 0
    m = manifest(out)
    assert m["recipe"]["splits"]["ratios"] == {"train": 0.5, "validation": 0.25, "test": 0.25}
    assert m["split_method"]["ratios"] == m["recipe"]["splits"]["ratios"]
    assert len(m["recipe_hash"]) == 64
    card = DatasetCard.load(out / "README.md").text
    assert m["recipe_hash"] in card
    recipe_text = card.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "from_card.yaml").write_text(recipe_text)
    # the card's recipe is the manifest's, with the output folder by its name only (a local path is private)
    assert yaml.safe_load(recipe_text) == {**m["recipe"], "output": {**m["recipe"]["output"], "dir": "a"}}
    assert build(str(tmp_path / "from_card.yaml"), "--out", str(tmp_path / "b")) == 0
    assert rows(tmp_path / "b") == rows(out)


def test_set_overrides_reach_the_build(tmp_path):
    out = tmp_path / "o"
    assert (
        build(
            "--set",
            f"output.dir={out}",
            "--set",
            "output.limit=2",
            "--set",
            "sources.chatbot_arena.filters.languages=[Spanish, German]",
        )
        == 0
    )
    m = manifest(out)
    assert {n: s["read"] for n, s in m["sources"].items()} == {
        "chatbot_arena": 2,
        "debate": 2,
        "multi_character_dialogue": 2,
    }
    arena = m["sources"]["chatbot_arena"]
    assert arena["read"] == arena["normalized"] + arena["rejected"] + arena["filtered"]
    assert arena["filtered"] == 2 and arena["filtered_by_reason"] == {"language not in filters.languages": 2}


def test_language_filter_keeps_only_those_languages(tmp_path):
    out = tmp_path / "lang"
    assert (
        build(
            "--out",
            str(out),
            "--sources",
            "chatbot_arena",
            "--set",
            "sources.chatbot_arena.filters.languages=[Spanish]",
        )
        == 0
    )
    kept = [r for p in (out / "chatbot_arena").glob("*.parquet") for r in pq.read_table(p).to_pylist()]
    assert kept and {r["task"]["language"] for r in kept} == {"Spanish"}
    assert main(["validate", str(out)]) == 0


def test_debate_config_filter_and_record_split_groups(tmp_path):
    out = tmp_path / "cfg"
    assert (
        build(
            "--out",
            str(out),
            "--sources",
            "debate",
            "--source-dir",
            f"debate={REAL / 'debate' / 'hub'}",
            "--set",
            "sources.debate.filters.configs=[simple_*]",
            "--set",
            "sources.debate.split_group=record",
        )
        == 0
    )
    kept = [r for p in (out / "debate").glob("*.parquet") for r in pq.read_table(p).to_pylist()]
    assert sorted(r["source_config"] for r in kept) == [
        "simple_expert_memory_simple_voting",
        "simple_nopersona_debate_majority_consensus",
        "simple_nopersona_memory_majority_consensus",
    ]
    assert manifest(out)["sources"]["debate"]["filtered"] == 5
    assert len({r["split_group"] for r in kept}) == 3


def write(tmp_path, text):
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return str(path)


def test_invalid_recipe_names_key_path_expected_and_found(tmp_path, capsys):
    recipe = write(tmp_path, "name: x\nsources:\n  - name: debate\n    location: {path: 5}\noutput: {limit: many}\n")
    assert build(recipe) == 2
    err = capsys.readouterr().err
    assert "sources[0].location.path: expected string, found int 5" in err
    assert "output.limit: expected ['integer', 'null'], found str \"many\"" in err


def test_unknown_adapter_lists_the_known_ones(tmp_path):
    with pytest.raises(
        RecipeError,
        match=r"sources\[0\]\.adapter: unknown adapter 'reddit'; known adapters: "
        r"chatbot_arena, debate, ",
    ):
        validate_recipe(yaml.safe_load("name: x\nsources: [{name: r, adapter: reddit}]\n"))


def test_unknown_keys_and_sources_are_named(tmp_path, capsys):
    recipe = write(
        tmp_path,
        "name: x\nsources: [{name: debate}]\nconfigs: [{name: c, sources: [debate, nope]}]\n"
        "annotations: {latents: {k: 8, rank: 2}}\n",
    )
    assert build(recipe) == 2
    err = capsys.readouterr().err
    known = "enabled, method, k, k_grid, r, seed, fit_split"
    assert f"annotations.latents: unknown key(s) 'rank'; expected one of: {known}" in err
    assert "configs[0].sources: unknown source(s) ['nope']; sources are ['debate']" in err


def test_set_on_a_missing_list_item_is_named(capsys):
    assert build("--set", "sources.reddit.location.path=/x") == 2
    assert (
        "--set sources.reddit.location.path: no item named 'reddit' (items: chatbot_arena, debate, "
        in capsys.readouterr().err
    )


def test_recipe_that_is_not_a_mapping(tmp_path, capsys):
    assert build(write(tmp_path, "- just\n- a list\n")) == 2
    assert "expected a mapping at the top level, found list" in capsys.readouterr().err


def test_dry_run_checks_a_mapping_section(tmp_path, capsys):
    recipe = write(tmp_path, "name: x\nsources:\n  - name: mine\n    adapter: mapping\n    location: {path: /tmp}\n"
                             "    mapping: {layout: sideways, text: body}\n")
    assert build(recipe, "--dry-run") == 2
    err = capsys.readouterr().err
    assert "sources[0].mapping:" in err and "sideways" in err


def test_the_recorded_recipe_never_holds_url_credentials():
    from coord_bench.recipe import to_plan

    recipe = load_recipe(RECIPES / "sample.yaml")
    secret_url = "https://user:s3cret@judge.example/v1?api-key=s3cret"
    recipe["annotations"] = {"judge": {"enabled": True, "base_url": secret_url}}
    plan = to_plan(recipe)
    assert plan.annotations["judge"]["base_url"] == secret_url  # the judge itself still reaches its server
    assert plan.recipe["annotations"]["judge"]["base_url"] == "https://judge.example/v1"
    assert "s3cret" not in json.dumps(plan.recipe)
