"""The declared layer interface: the registry resolves what a layer needs, and a build applies each layer once
per record in the final pass plus once per corpus pass of a layer that needs it, reading only declared columns."""

from __future__ import annotations

from collections import Counter

import pytest

from coord_bench.build import build_dataset
from coord_bench.mappers.layer import LayerContext
from coord_bench.mappers.registry import LAYERS, with_needs
from coord_bench.mappers.rules import RulesMapper
from coord_bench.mappers.tokens import TokensMapper
from coord_bench.recipe import default_recipe_path, enabled_annotations, load_recipe, to_plan
from coord_bench.staging import AnnotatedView


def test_needs_resolve_transitively_in_running_order():
    order = list(LAYERS)
    for name, layer in LAYERS.items():
        assert all(order.index(needed) < order.index(name) for needed in layer.needs), name
    assert with_needs(["latents"]) == ["tokens", "embeddings", "latents"]
    assert with_needs(["judge"]) == ["judge"]
    with pytest.raises(ValueError, match="unknown annotation layer 'sentiment'"):
        with_needs(["rules", "sentiment"])


def test_a_layer_config_refuses_unknown_parameters():
    with pytest.raises(ValueError, match=r"annotations\.tokens: unknown parameter\(s\) encodng; known: encoding"):
        TokensMapper.from_params({"encodng": "cl100k_base"}, LayerContext())
    with pytest.raises(ValueError, match="the rules layer needs the embeddings layer"):
        RulesMapper.from_params({}, LayerContext())


def test_each_layer_applies_once_per_record_per_pass_that_needs_it(tmp_path, monkeypatch):
    applied: Counter[str] = Counter()
    for name, layer in LAYERS.items():

        def counting(self, batch, _apply=layer.apply, _name=name):
            applied[_name] += len(batch)
            return _apply(self, batch)

        monkeypatch.setattr(layer, "apply", counting)
    passes: list[tuple[tuple[str, ...], set[str], int]] = []  # (layers applied, columns seen, records)
    batches = AnnotatedView.batches

    def counting_batches(self, columns=None):
        seen, records = set(), 0
        for batch in batches(self, columns):
            seen.update(key for record in batch for key in record)
            records += len(batch)
            yield batch
        passes.append((tuple(layer.name for layer in self.needed), seen, records))

    monkeypatch.setattr(AnnotatedView, "batches", counting_batches)
    recipe = load_recipe(default_recipe_path())
    manifest = build_dataset(to_plan(recipe, tmp_path / "out"), progress=False)

    records = manifest["totals"]["normalized"]
    assert records > 0 and enabled_annotations(recipe) == ["tokens", "embeddings", "latents", "rules"]
    expected = {
        name: records + sum(n for names, _, n in passes if name in names) for name in enabled_annotations(recipe)
    }
    assert applied == expected
    # the embeddings' pass applies nothing and reads two columns; the latents' pass applies what latents need
    tokens, latents = LAYERS["tokens"], LAYERS["latents"]
    assert passes == [
        ((), {"task", "turns"}, records),
        (("tokens", "embeddings"), {*latents.reads, *tokens.reads, *tokens.writes}, records),
    ]
    assert applied["tokens"] == 2 * records and applied["latents"] == applied["rules"] == records
    rules = manifest["annotations"]["rules"]
    assert sum(rules["success"].values()) == sum(rules["agreement_level"].values()) == records


def test_latent_methods_have_one_name_in_recipes_code_and_rows_and_the_old_names_still_work():
    from coord_bench.mappers.latents import ChangeLDS, LinearGaussianSSM, PCAReducedRank
    from coord_bench.mappers.latents.layer import LatentsConfig
    from coord_bench.recipe import validate_recipe

    assert LatentsConfig().method == ChangeLDS.method == "delta-lds-em"
    assert LatentsConfig(method="lds-em").method == LinearGaussianSSM.method
    assert LatentsConfig(method="pca-rrr").method == PCAReducedRank.method
    assert LatentsConfig(method="lds").method == "lds-em" and LatentsConfig(method="pca_rrr").method == "pca-rrr"
    with pytest.raises(ValueError, match="annotations.latents.method: expected one of delta-lds-em, lds-em, pca-rrr"):
        LatentsConfig(method="kalman")
    recipe = load_recipe(default_recipe_path())
    for name in ("delta-lds-em", "lds-em", "pca-rrr", "lds", "pca_rrr"):
        recipe["annotations"]["latents"]["method"] = name
        validate_recipe(recipe)
