"""Plain-text logs (``format: text``): the ChatDev-style example recipe built on its fixture, and the errors of
bad logs and bad line grammars."""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pytest
from mapping_examples import FIXTURES, build_example, example_recipe, loaded_rows, manifest_counts, rejects, said
from test_mapping import build, records, stopped

from coord_bench.sources import check_mapping

LOGS = FIXTURES / "text_log" / "WareHouse"
BEIJING = dt.timezone(dt.timedelta(hours=8))


def unix(*moment: int) -> float:
    """A moment of the fixture's logs: ChatDev writes local time (here UTC+8), day before month."""
    return dt.datetime(*moment, tzinfo=BEIJING).timestamp()


def test_a_chatdev_log_maps_entries_speakers_phases_times_task_and_outcome(tmp_path):
    out = build_example(tmp_path, "text_log")
    assert manifest_counts(out, "chatdev") == (2, 2, 0)  # one conversation per file
    rows = loaded_rows(out, "chatdev", tmp_path)
    assert set(rows) == {"20240312091502", "20240312101000"}  # ids from the "ChatDev Starts" stamp
    todo, timer = rows["20240312091502"], rows["20240312101000"]
    assert said(todo) == [
        ("ChatDev", "message"),  # the framework's own entries have no speaker
        ("System", "message"),
        ("Chief Executive Officer", "DemandAnalysis"),
        ("Chief Product Officer", "DemandAnalysis"),
        ("ChatDev", "message"),
        ("Programmer", "Coding"),
        ("Code Reviewer", "CodeReviewComment"),
        ("Programmer", "CodeReviewModification"),
        ("Code Reviewer", "CodeReviewComment"),
        ("ChatDev", "message"),
    ]
    assert (todo["n_turns"], todo["n_messages"], todo["n_agents"]) == (10, 10, 6)  # each entry its own turn
    assert said(timer) == [("ChatDev", "message"), ("Chief Executive Officer", "DemandAnalysis"),
                           ("Chief Product Officer", "DemandAnalysis"), ("Programmer", "Coding")]  # fmt: skip
    assert [a["role"] for a in todo["agents"]] == ["agent"] * 6
    # lines that match no entry continue the one before: the code block stays whole, blank lines around it go
    coding = todo["turns"][5]["messages"][0]["text"]
    assert coding.startswith("**Programmer<->Chief Technology Officer on : Coding, turn 0**\n\ntodo.py\n```python\n")
    assert coding.endswith('    print("\\n".join(tasks))\n```')
    assert todo["turns"][4]["messages"][0]["text"] == "**[Seminar Conclusion]**:\n\n <INFO> Application"
    assert todo["turns"][9]["messages"][0]["text"].endswith("📃**num_code_files**=1")  # the file's last line
    # '[2024-03-12 09:15:02 INFO]' is 3 December 2024 (ChatDev's %Y-%d-%m) at 09:15:02 in UTC+8
    times = [m["timestamp"] for t in todo["turns"] for m in t["messages"]]
    assert times[0] == unix(2024, 12, 3, 9, 15, 2) and times[-1] == unix(2024, 12, 3, 9, 17, 50)
    assert times == sorted(times)
    assert (todo["timestamp"], todo["duration_seconds"]) == (unix(2024, 12, 3, 9, 15, 2), 168.0)
    assert todo["task"]["instruction"] == "Build a command-line to-do list that keeps its tasks in a JSON file."
    assert timer["task"]["instruction"] == "Write a countdown timer that beeps at zero."
    # finished runs end with the framework's Post Info entry; the timer run stops while coding
    assert (todo["outcome"]["decision_success"], timer["outcome"]["decision_success"]) == (True, False)
    assert todo["protocol"]["interaction"] == "multi_agent_software_company"
    assert json.loads(todo["extras"]) == {}  # every group of the line regex is mapped (level through speaker)
    usage = todo["annotations"]["token_usage"]
    assert usage["tool_tokens"] == 0 and usage["output_tokens"] == sum(m["n_tokens"] for t in todo["turns"]
                                                                        for m in t["messages"])  # fmt: skip


def test_lines_before_the_first_entry_and_unmapped_groups_are_kept_in_extras(tmp_path):
    root = tmp_path / "logs"
    root.mkdir()
    log = (
        "cron: starting the team at 09:00\n"
        "[2024-03-12 09:00:01 INFO] Programmer: hello\n"
        "  an indented second line\n"
        "\n"
        "[2024-03-12 09:00:05 WARNING] Code Reviewer: careful\n"
    )
    (root / "run.log").write_text(log, encoding="utf-8")
    mapping = {
        "format": "text",
        "files": "*.log",
        "line": r"^\[(?P<timestamp>[\d-]+ [\d:]+) (?P<level>[A-Z]+)\] (?P<speaker>[^:]+): (?P<text>.*)$",
    }
    out, manifest = build(tmp_path, root, mapping)  # fmt: skip
    assert (manifest["sources"]["my_logs"]["read"], manifest["sources"]["my_logs"]["normalized"]) == (1, 1)
    [row] = records(out).values()
    assert said(row) == [("Programmer", "message"), ("Code Reviewer", "message")]
    assert [m["text"] for t in row["turns"] for m in t["messages"]] == ["hello\n  an indented second line", "careful"]
    # no time_format: an ISO-like date-time, and without a time_zone it is UTC
    assert row["timestamp"] == dt.datetime(2024, 3, 12, 9, 0, 1, tzinfo=dt.timezone.utc).timestamp()
    assert json.loads(row["extras"]) == {
        "preamble": "cron: starting the team at 09:00",
        "messages": [{"level": "INFO"}, {"level": "WARNING"}],  # the group no option maps
    }


def test_a_log_without_entries_and_a_line_that_is_not_utf8_are_rejected_naming_file_and_line(tmp_path):
    root = tmp_path / "logs"
    root.mkdir()
    shutil.copy(LOGS / "Timer_DefaultOrganization_20240312101000.log", root / "good.log")
    (root / "notes.log").write_text("no entries here\njust notes\n", encoding="utf-8")
    (root / "latin1.log").write_bytes("[2024-03-12 10:10:00 INFO] Programmer: ok\ncaf\xe9\n".encode("latin-1"))
    mapping = example_recipe("text_log")["sources"][0]["mapping"]
    out, manifest = build(tmp_path, root, {**mapping, "files": "*.log"})
    assert (manifest["sources"]["my_logs"]["read"], manifest["sources"]["my_logs"]["normalized"]) == (3, 1)
    found = {r["locator"]: (r["kind"], r["reason"]) for r in rejects(out)}
    assert found["notes.log#0"] == ("no_messages", f"none of the 2 lines of notes.log matches mapping.line "
                                                   f"{mapping['line']!r}")  # fmt: skip
    kind, reason = found["latin1.log#0"]
    assert kind == "unreadable" and reason.startswith("line 2 of latin1.log is not UTF-8 text") and "0xe9" in reason


def test_without_format_text_a_log_file_is_refused_with_the_way_to_read_it(tmp_path):
    root = tmp_path / "logs"
    root.mkdir()
    shutil.copy(LOGS / "Timer_DefaultOrganization_20240312101000.log", root / "run.log")
    with pytest.raises(
        ValueError,
        match=r"matches run.log, which the mapping adapter cannot read as JSON or "
        r"Parquet .*; narrow the globs, or read plain-text logs with format: text",
    ):
        build(tmp_path, root, {"files": "*.log", "messages": "m", "speaker": "s", "text": "t"})


TEXT = {"format": "text", "line": r"^(?P<speaker>\w+): (?P<text>.*)$"}


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"format": "csv"}, "mapping.format: expected 'json' (JSON, JSONL, Parquet by file name) or 'text', found"),
        ({"format": "text"}, "mapping.line: required with format: text (a regex matching the line that starts"),
        ({**TEXT, "line": "(?P<text>"}, "mapping.line: not a regular expression"),
        ({**TEXT, "line": r"^(?P<who>\w+): (?P<body>.*)$"}, "mapping.line: needs a named group 'text'"),
        ({"line": "(?P<text>.*)", "messages": "m", "speaker": "s", "text": "t"},
         "mapping.line: only read with format: text"),
        ({**TEXT, "layout": "flat"}, "mapping.layout: not used with format: text (a text log is read as grouped)"),
        ({**TEXT, "records": "x"}, "mapping.records: not used with format: text (a file is one conversation)"),
        ({**TEXT, "timestamp": {"path": "t", "time_format": "YYYY-MM-DD"}},
         "mapping.timestamp.time_format: expected a strptime format like '%Y-%m-%d %H:%M:%S', found 'YYYY-MM-DD'"),
        ({**TEXT, "timestamp": {"path": "t", "time_zone": "Mars/Olympus"}},
         "mapping.timestamp.time_zone: expected UTC, an offset like '+08:00' or a zone name"),
        ({**TEXT, "kind": {"path": "k", "time_zone": "UTC"}}, "mapping.kind: unknown key(s) 'time_zone'"),
    ],
)  # fmt: skip
def test_invalid_text_options_are_refused_naming_the_key(mapping, message):
    with pytest.raises(ValueError) as info:
        check_mapping(mapping)
    assert message in str(info.value)


def test_a_line_regex_with_speaker_and_text_groups_is_a_whole_mapping():
    check_mapping(TEXT)  # messages, speaker and text default to the record the reader makes and the regex groups


def test_a_timestamp_in_the_wrong_format_rejects_the_record_with_the_format(tmp_path):
    root = tmp_path / "logs"
    root.mkdir()
    (root / "a.log").write_text("03/12/2024 alice: hi\n", encoding="utf-8")
    mapping = {"format": "text", "line": r"^(?P<timestamp>\S+) (?P<speaker>\w+): (?P<text>.*)$",
               "timestamp": {"path": "timestamp", "time_format": "%Y-%m-%d"}}  # fmt: skip
    [reject], _ = stopped(tmp_path, root, mapping)
    assert reject["field"] == "messages.0.timestamp"
    assert "expected a date-time like '%Y-%m-%d', found str \"03/12/2024\"" in reject["reason"]


def test_a_separator_splits_a_log_into_conversations_each_counted(tmp_path):
    root = tmp_path / "logs"
    root.mkdir()
    log = (
        "===== task 1: add 2 and 3 =====\n"
        "alice: 5\n"
        "bob: agreed, 5\n"
        "===== task 2: the capital of Peru =====\n"
        "alice: Lima\n"
        "===== task 3: the run crashed =====\n"
        "Traceback (most recent call last):\n"
    )
    (root / "batch.log").write_text(log, encoding="utf-8")
    mapping = {**TEXT, "files": "*.log", "separator": "^=====",
               "task": {"input": {"path": "preamble", "regex": r"task \d+: (?P<input>.+) ====="}}}  # fmt: skip
    out, manifest = build(tmp_path, root, mapping)
    assert (manifest["sources"]["my_logs"]["read"], manifest["sources"]["my_logs"]["normalized"]) == (3, 2)
    rows = sorted(records(out).values(), key=lambda r: r["source_locator"])
    assert [r["source_locator"] for r in rows] == ["batch.log#0", "batch.log#1"]
    assert [said(r) for r in rows] == [[("alice", "message"), ("bob", "message")], [("alice", "message")]]
    assert [r["task"]["input"] for r in rows] == ["add 2 and 3", "the capital of Peru"]
    [reject] = rejects(out)
    assert reject["locator"] == "batch.log#2" and reject["kind"] == "no_messages"
    assert reject["reason"].startswith("none of lines 6-7 of batch.log matches mapping.line")


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({**TEXT, "separator": "(unclosed"}, "mapping.separator: not a regular expression"),
        ({**TEXT, "separator": ["^==="]}, "mapping.separator: expected a regex matching the line that starts a"),
        ({"separator": "^===", "messages": "m", "speaker": "s", "text": "t"},
         "mapping.separator: only read with format: text"),
    ],
)  # fmt: skip
def test_invalid_separators_are_refused_naming_the_key(mapping, message):
    with pytest.raises(ValueError) as info:
        check_mapping(mapping)
    assert message in str(info.value)
