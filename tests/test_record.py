"""Record accessors: the roles of a record's agents and the text that sets a conversation going."""

from __future__ import annotations

from synthetic import arena

from coord_bench.record import agent_roles, task_text


def test_agent_roles_maps_every_agent_id_to_its_role():
    record = arena(0, "train", "model_a", "answer a", "answer b")
    assert agent_roles(record) == {a["agent_id"]: a["role"] for a in record["agents"]}
    assert sorted(agent_roles(record).values()).count("user") == 1


def test_task_text_falls_back_from_input_to_setting_to_instruction():
    record = {"task": {"input": None, "setting": "a tavern at night", "instruction": "play the scene"}}
    assert task_text(record) == "a tavern at night"
    record["task"]["input"] = "2 + 2?"
    assert task_text(record) == "2 + 2?"
    assert task_text({"task": {"input": "", "setting": None, "instruction": None}}) == ""
