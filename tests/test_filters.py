"""Recipe filters: which records a build keeps, and the reason given for each one it drops."""

from __future__ import annotations

import pytest
from synthetic import arena, debate

from coord_bench.filters import filter_reason


def arena_record(language: str = "English", **safety) -> dict:
    record = arena(0, "train", "model_a", "x", "y")
    record["task"]["language"] = language
    record["safety"].update(safety)
    return record


def test_no_filters_keep_everything():
    flagged = arena_record(moderation_flagged=True, toxic_chat_t5_flagged=True)
    assert filter_reason(flagged, {}) is None
    assert filter_reason(flagged, {"languages": [], "configs": None, "exclude_toxic": False}) is None


def test_the_language_filter_keeps_only_the_listed_languages():
    filters = {"languages": ["German", "Spanish"]}
    assert filter_reason(arena_record("Spanish"), filters) is None
    assert filter_reason(arena_record("English"), filters) == "language not in filters.languages"
    assert filter_reason(arena_record("german"), filters) == "language not in filters.languages"  # exact names


def test_the_moderation_filter_drops_only_flagged_records():
    filters = {"exclude_moderation_flagged": True}
    assert filter_reason(arena_record(moderation_flagged=True), filters) == "flagged by OpenAI moderation"
    assert filter_reason(arena_record(moderation_flagged=False), filters) is None
    assert filter_reason(arena_record(moderation_flagged=True), {"exclude_moderation_flagged": False}) is None


@pytest.mark.parametrize("flag", ["toxic_chat_roberta_flagged", "toxic_chat_t5_flagged"])
def test_either_toxic_chat_classifier_flag_drops_a_record(flag):
    filters = {"exclude_toxic": True}
    assert filter_reason(arena_record(**{flag: True}), filters) == "flagged by a toxic-chat classifier"
    assert filter_reason(arena_record(), filters) is None


def test_the_configs_filter_matches_glob_patterns_case_sensitively():
    record = debate(0, "train", [[("A", None)]], True)
    record["source_config"] = "simple_expert_memory_simple_voting"
    assert filter_reason(record, {"configs": ["simple_*"]}) is None
    assert filter_reason(record, {"configs": ["other", "*_voting"]}) is None
    assert filter_reason(record, {"configs": ["Simple_*"]}) == "source_config not in filters.configs"
    record["source_config"] = None  # a source without configs matches no pattern but "*"
    assert filter_reason(record, {"configs": ["simple_*"]}) == "source_config not in filters.configs"
    assert filter_reason(record, {"configs": ["*"]}) is None


def test_the_first_failing_filter_names_the_reason():
    record = arena_record("English", moderation_flagged=True, toxic_chat_roberta_flagged=True)
    every = {"languages": ["French"], "exclude_moderation_flagged": True, "exclude_toxic": True, "configs": ["x"]}
    assert filter_reason(record, every) == "language not in filters.languages"
    assert filter_reason(record, {**every, "languages": None}) == "flagged by OpenAI moderation"
    without_moderation = {**every, "languages": None, "exclude_moderation_flagged": False}
    assert filter_reason(record, without_moderation) == "flagged by a toxic-chat classifier"
