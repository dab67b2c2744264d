"""Split assignment by group hash: stable per key, proportional over many keys, and bad ratios refused."""

from __future__ import annotations

import hashlib
from collections import Counter

import pytest

from coord_bench.plan import BuildError, BuildPlan
from coord_bench.recipe import RecipeError, default_recipe_path, load_recipe, validate_recipe
from coord_bench.splits import DEFAULT_RATIOS, SPLITS, assign_split, group_hash, normalize_text

KEYS = [f"question number {i}" for i in range(20000)]


def test_group_hash_is_16_hex_digits_of_sha256():
    assert group_hash("What is 2+2?") == hashlib.sha256(b"What is 2+2?").hexdigest()[:16]
    assert group_hash("é") == hashlib.sha256("é".encode()).hexdigest()[:16]


def test_copies_differing_in_case_and_spacing_share_a_group():
    assert normalize_text("  What is\tthe Capital\n\nof FRANCE? ") == "what is the capital of france?"
    assert group_hash(normalize_text("Hello  World")) == group_hash(normalize_text("hello world"))
    assert normalize_text("hello, world") != normalize_text("hello world")  # punctuation is kept


def test_the_same_group_key_always_lands_in_the_same_split():
    first = [assign_split(group_hash(key)) for key in KEYS[:500]]
    again = [assign_split(group_hash(key)) for key in KEYS[:500]]
    assert first == again
    assert set(first) == set(SPLITS)


def test_default_ratios_are_respected_on_many_keys():
    counts = Counter(assign_split(group_hash(key)) for key in KEYS)
    for split, ratio in DEFAULT_RATIOS.items():
        assert abs(counts[split] / len(KEYS) - ratio) < 0.01, (split, counts)


def test_ratios_are_normalized_and_a_zero_ratio_split_gets_nothing():
    ratios = {"train": 2, "validation": 0, "test": 2}  # weights, not fractions
    counts = Counter(assign_split(group_hash(key), ratios) for key in KEYS)
    assert counts["validation"] == 0
    assert abs(counts["train"] / len(KEYS) - 0.5) < 0.01


def test_the_split_is_the_hash_position_against_the_cumulative_ratios():
    assert assign_split("0000000000000000") == "train"
    assert assign_split("c000000000000000") == "train"  # 0.75 < 0.8
    assert assign_split("d000000000000000") == "validation"  # 0.8125 < 0.8 + 0.1
    assert assign_split("e800000000000000") == "test"  # 0.90625
    assert assign_split("d000000000000000", {"train": 0.5, "validation": 0.25, "test": 0.25}) == "test"


def test_ratios_that_add_up_to_zero_are_refused_by_the_plan(tmp_path):
    with pytest.raises(BuildError, match=r"split ratios must add up to more than 0, got \{'train': 0"):
        BuildPlan([], tmp_path, split_ratios={"train": 0, "validation": 0, "test": 0})


def test_a_negative_ratio_in_a_recipe_is_refused_naming_the_key():
    recipe = load_recipe(default_recipe_path())
    recipe["splits"] = {"ratios": {"train": 0.9, "validation": -0.1, "test": 0.2}}
    with pytest.raises(RecipeError, match=r"splits\.ratios\.validation: -0\.1 is less than the minimum of 0"):
        validate_recipe(recipe)


def test_a_recipe_must_give_every_split_a_ratio():
    recipe = load_recipe(default_recipe_path())
    recipe["splits"] = {"ratios": {"train": 0.9, "test": 0.1}}
    with pytest.raises(RecipeError, match="'validation' is a required property"):
        validate_recipe(recipe)
