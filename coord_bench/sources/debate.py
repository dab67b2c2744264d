"""Multi-Agent-LLMs/DEBATE and raw MALLM output: several LLM personas discuss a question over turns.

Reads the Hub layout (``data/<config>/<config>.json``, one JSON array a config) and raw MALLM output files
(a JSON array, or one object from older MALLM versions). The transcript is ``globalMemory``. Note that
``decisionSuccess`` only says the protocol reached a decision; correctness is derived against
``references`` here.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

from coord_bench.answers import is_correct, turn_majority
from coord_bench.sources.base import (
    RawRecord,
    Reject,
    SourceAdapter,
    agent,
    blank,
    check_item,
    message,
    optional,
    require,
)

CONFIG_PATTERN = re.compile(
    r"(?P<task_variant>simple|critical|reasoning)_(?P<persona_mode>nopersona|expert|ipip)_"
    r"(?P<paradigm>memory|relay|report|debate)_"
    r"(?P<decision_protocol>majority_consensus|unanimity_consensus|simple_voting|approval_voting)"
)


class Debate(SourceAdapter):
    name = "debate"
    hub_repo_id = "Multi-Agent-LLMs/DEBATE"
    license = "apache-2.0"
    interaction = "multi_agent_debate"
    file_patterns = ("**/*.json",)
    hub_config_pattern = "data/{config}/*.json"
    FIELD_MAP = {
        "exampleId": "source_id and split group (id = '<source>:<file stem>:<exampleId>')",
        "instruction": "task.instruction",
        "personas": "agents (agentId, persona -> name, model, personaDescription -> description)",
        "persona_diversity": "protocol.persona_diversity",
        "paradigm": "protocol.paradigm",
        "input": "task.input (items joined by a blank line)",
        "context": "task.context",
        "references": "task.references",
        "decisionSuccess": "outcome.decision_success",
        "finalAnswer": "outcome.final_answer (final_answer_source = 'finalAnswer')",
        "turns": "protocol.rounds",
        "clockSeconds": "duration_seconds",
        "globalMemory": "turns (turn, message_id, agent_id, contribution -> kind, message -> text, agreement, "
        "solution, memory_ids -> visible_message_ids)",
    }
    SUMMARY = "multi-agent MALLM debates with decision outcomes (DEBATE, or raw MALLM output)"
    CAVEATS = (
        "`decisionSuccess` means the protocol reached a decision, not that the answer is right; "
        "`outcome.answer_correct` is derived against the references",
        "messages are long and repetitive across turns (one model family, Llama-3.3-70B)",
    )
    GROUP_KEY = "the exampleId (the same question recurs across configs)"
    TAGS = ("debate", "question-answering")
    KEPT_IN_EXTRAS = {
        "dataset": "raw MALLM: the task file the run used",
        "datasetId": "raw MALLM: the task's id in that file",
        "coordinatorId": "raw MALLM: id of the coordinating agent",
        "votesEachTurn": "raw MALLM: votes per turn (string turn keys)",
        "challengedAnswers": "raw MALLM: answer-challenging results",
        "metadata": "raw MALLM: run metadata",
        "judgements": "raw MALLM: judge outputs",
        "judged_solutions": "raw MALLM: judged solutions",
        "agreements": "only when it is not a copy of the last turn's messages (see DROPPED)",
    }
    DROPPED = {
        "agentMemory": "repeats globalMemory once per agent (what each agent saw is kept as visible_message_ids)",
        "agreements": "repeats the last turn of globalMemory (same message_id, response = message, agreement, "
        "solution); kept in extras when it does not",
        "globalMemory[].persona": "repeats agents[].name",
        "globalMemory[].additional_args": "repeats the instruction, input, persona, persona description and the "
        "agent's visible memory; current_draft is the previous solution; "
        "feedback_sentences is null in DEBATE",
    }

    def convert(self, raw: RawRecord) -> dict[str, Any]:
        row = raw.value
        example_id = require(row, "exampleId", str)
        stem = PurePosixPath(raw.file).stem
        config_match = CONFIG_PATTERN.search(stem)
        memory = require(row, "globalMemory", list)
        if not memory:
            raise Reject(
                "field 'globalMemory' is an empty list: the debate has no messages",
                field="globalMemory",
                kind="empty_conversation",
            )
        agents, roster = _agents(require(row, "personas", list))
        turns = _turns(memory, agents, roster)
        references = require(row, "references", list, nullable=True) or []
        for i, ref in enumerate(references):
            check_item(ref, f"references[{i}]", str, "str")
        inputs = require(row, "input", (list, str))
        final_answer, final_source = _final_answer(row, turns)
        protocol = {
            "paradigm": require(row, "paradigm", str, nullable=True),
            "persona_diversity": _float(optional(row, "persona_diversity", (int, float))),
            "rounds": optional(row, "turns", int),
            "decision_protocol": _last_vote_type(row),
        }
        if config_match:
            protocol.update(config_match.groupdict())
        return {
            "local_id": f"{stem}:{example_id}",
            "source_id": example_id,
            "source_config": config_match.group(0) if config_match else None,
            "group_key": example_id,
            "task": {
                **blank("task"),
                "instruction": require(row, "instruction", str, nullable=True),
                "input": inputs if isinstance(inputs, str) else "\n\n".join(str(item) for item in inputs),
                "context": _text_or_none(row.get("context")),  # raw MALLM only
                "references": references,
            },
            "protocol": protocol,
            "agents": agents,
            "turns": turns,
            "outcome": {
                "decision_success": require(row, "decisionSuccess", bool, nullable=True),
                "final_answer": final_answer,
                "final_answer_source": final_source,
                "answer_correct": is_correct(final_answer, references),
            },
            "duration_seconds": _float(optional(row, "clockSeconds", (int, float))),
        }

    def extras(self, raw: dict[str, Any]) -> dict[str, Any]:
        extras = super().extras(raw)
        if not _agreements_repeat_memory(raw):
            extras["agreements"] = raw.get("agreements")
        return extras


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _text_or_none(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return str(value)


def _agents(personas: list[Any]) -> tuple[list[dict[str, Any]], set[str]]:
    agents = []
    for i, persona in enumerate(personas):
        check_item(persona, f"personas[{i}]", dict, "an object")
        where = f"personas[{i}]."
        agent_id = require(persona, "agentId", str, where=where)
        agents.append(
            agent(
                agent_id,
                require(persona, "persona", str, nullable=True, where=where) or agent_id,
                "agent",
                model=require(persona, "model", str, nullable=True, where=where),
                description=require(persona, "personaDescription", str, nullable=True, where=where),
            )
        )
    return agents, {a["agent_id"] for a in agents}


def _turns(memory: list[Any], agents: list[dict[str, Any]], roster: set[str]) -> list[dict[str, Any]]:
    """Group globalMemory messages by their MALLM turn, ordered by (turn, message_id)."""
    rows = []
    for i, item in enumerate(memory):
        where = f"globalMemory[{i}]."
        check_item(item, f"globalMemory[{i}]", dict, "an object")
        agent_id = require(item, "agent_id", str, where=where)
        if agent_id not in roster:
            roster.add(agent_id)
            name = item.get("persona") if isinstance(item.get("persona"), str) else agent_id
            agents.append(agent(agent_id, name, "agent", in_source_roster=False))
        visible = optional(item, "memory_ids", list, where=where)
        if visible is not None and not all(isinstance(v, int) and not isinstance(v, bool) for v in visible):
            raise Reject(
                f"field '{where}memory_ids': expected a list of integers", field=f"{where}memory_ids", kind="wrong_type"
            )
        rows.append(
            (
                require(item, "turn", int, where=where),
                require(item, "message_id", int, where=where),
                message(
                    item["message_id"],
                    agent_id,
                    require(item, "contribution", str, nullable=True, where=where) or "message",
                    require(item, "message", str, where=where),
                    agreement=optional(item, "agreement", bool, where=where),
                    solution=optional(item, "solution", str, where=where),
                    visible_message_ids=visible,
                ),
            )
        )
    rows.sort(key=lambda r: (r[0], r[1]))
    turns: list[dict[str, Any]] = []
    last_turn = None
    for turn_no, _, msg in rows:
        if turn_no != last_turn:
            turns.append({"index": len(turns), "messages": []})
            last_turn = turn_no
        turns[-1]["messages"].append(msg)
    return turns


def _last_vote_type(row: dict[str, Any]) -> str | None:
    """Raw MALLM names its decision protocol in votesEachTurn[<turn>].type; the Hub layout has it in the config."""
    votes = row.get("votesEachTurn")
    if not isinstance(votes, dict) or not votes:
        return None
    last = votes[max(votes, key=lambda k: int(k) if str(k).isdigit() else -1)]
    return last.get("type") if isinstance(last, dict) else None


def _final_answer(row: dict[str, Any], turns: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """MALLM's finalAnswer when present; else the most common solution of the last turn (ties: the latest)."""
    final = optional(row, "finalAnswer", str)
    if final and final.strip():
        return final, "finalAnswer"
    majority = turn_majority(turns[-1]["messages"])
    return (majority, "last_turn_majority") if majority is not None else (None, None)


def _agreements_repeat_memory(row: dict[str, Any]) -> bool:
    """True when every agreements entry is a copy of the globalMemory message with its message_id."""
    agreements = row.get("agreements")
    if agreements is None:
        return True
    memory = row.get("globalMemory")
    if not isinstance(agreements, list) or not isinstance(memory, list):
        return False
    by_id = {m.get("message_id"): m for m in memory if isinstance(m, dict)}
    for entry in agreements:
        if not isinstance(entry, dict):
            return False
        source = by_id.get(entry.get("message_id"))
        if source is None or any(
            entry.get(a) != source.get(b)
            for a, b in (
                ("response", "message"),
                ("agreement", "agreement"),
                ("solution", "solution"),
                ("agent_id", "agent_id"),
            )
        ):
            return False
    return True
