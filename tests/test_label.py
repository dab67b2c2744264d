"""`coord-bench label` end to end: the CLI labels a finished build through a judge server on 127.0.0.1.

A real llama.cpp server (SmolLM2-135M) behind a fault-injecting proxy runs the full label-then-rerun and the
kill-and-resume; a fake server checks that the API key and the base URL's userinfo and query never reach
rows, manifest, card, cache or output, and that a dry run sends nothing. The model is tiny: these tests
assert structure, never label quality. Every loop is bounded; nothing leaves 127.0.0.1."""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from judge_helpers import entry, records_of
from llm_server import FakeChatServer, FaultProxy, _read_body, _send, _Server, conversation_id, judgement

from coord_bench.cli import main


def copy_build(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_label_real_conversations_end_to_end_then_rerun_is_free(llama, real_build, tmp_path, capsys):
    folder = copy_build(real_build, tmp_path / "build")
    proxy = FaultProxy(llama.base_url).start()
    cache = tmp_path / "cache"
    args = [
        "label", str(folder), "--base-url", proxy.base_url, "--judge-model", "smollm2", "--sample-size", "3",
        "--max-calls", "7", "--concurrency", "2", "--no-progress", "--set", f"cache_dir={cache}",
        "--set", "max_tokens=160", "--set", "prompt_token_budget=100", "--set", "max_reasks=1",
    ]  # fmt: skip
    try:
        assert main(args) == 0  # mode auto: json_schema is refused by llama.cpp, json_object is then used
        manifest = json.loads((folder / "build_manifest.json").read_text())
        judge = manifest["annotations"]["judge"]
        assert judge["structured_output_mode"] == "json_object" and judge["requests"]["mode_probes"] == 1
        assert proxy.received == judge["requests"]["sent"] <= 7  # 1 mode probe + 3 rows + at most 1 re-ask each
        assert judge["sample"]["seed"] == 0 and judge["sample"]["size"] == 3 and judge["sample"]["population"] == 9
        assert main(["validate", str(folder)]) == 0  # every labelled row matches the record schema
        rows = records_of(folder)
        assert len(rows) == 9
        sampled = [r for r in rows if r["annotations"]["coordination"]["consensus"]["sampled"]]
        assert len(sampled) == 3 and {r["source"] for r in sampled} == {
            "chatbot_arena",
            "debate",
            "multi_character_dialogue",
        }  # one per source: the sample is stratified
        for row in rows:
            judge_entry = entry(row)
            assert judge_entry["model"] == "smollm2" and judge_entry["prompt_version"] == "v1"
            assert judge_entry["schema_version"] == "1.0"
            if row in sampled:
                assert judge_entry["status"] in ("ok", "failed")
                if judge_entry["status"] == "ok":
                    assert 0 <= judge_entry["success_score"] <= 10 and judge_entry["agreement_level"] in (
                        "full",
                        "partial",
                        "none",
                    )
                    assert judge_entry["cached"] is False and judge_entry["calls"] >= 1
                    assert judge_entry["cost_usd"] == 0.0 and judge_entry["output_mode"] == "json_object"
                    turn_indexes = {t["index"] for t in row["turns"]}
                    assert all(e["turn_index"] in turn_indexes for e in judge_entry["events"])
            else:
                assert judge_entry["status"] == "not_sampled" and judge_entry["success_score"] is None
        ok = sum(entry(r)["status"] == "ok" for r in sampled)
        assert ok >= 2  # json_object mode: llama.cpp's grammar keeps the tiny model's output in shape
        # the other configs carry the same labels
        debate_rows = {r["id"]: r for r in records_of(folder, "debate")}
        for row in sampled:
            if row["id"] in debate_rows:
                assert debate_rows[row["id"]]["annotations"]["coordination"] == row["annotations"]["coordination"]

        before = proxy.received
        assert main(args) == 0  # a rerun: the cache answers what is done, the mode is remembered
        rerun = json.loads((folder / "build_manifest.json").read_text())["annotations"]["judge"]
        assert rerun["requests"]["judgements_cached"] == ok and rerun["requests"]["mode_probes"] == 0
        assert proxy.received - before == rerun["requests"]["sent"]
        if ok == 3:
            assert proxy.received == before  # zero requests for what is already done
        out = capsys.readouterr().out
        assert "requests sent" in out
    finally:
        proxy.stop()


def test_a_killed_label_run_resumes_without_repeating_calls(llama, small_build, tmp_path):
    folder = copy_build(small_build, tmp_path / "build")
    cache = tmp_path / "cache"
    proxy = FaultProxy(llama.base_url).start()
    args = [
        "label", str(folder), "--sample-size", "2", "--max-calls", "8", "--mode", "json_object", "--concurrency", "1",
        "--no-progress", "--set", f"cache_dir={cache}", "--set", "max_tokens=160", "--set", "prompt_token_budget=100",
        "--set", "max_reasks=0", "--judge-model", "smollm2",
    ]  # fmt: skip
    log = tmp_path / "label.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "coord_bench.cli", *args, "--base-url", proxy.base_url],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    db = cache / "judge_cache.sqlite"

    def cached() -> int:
        if not db.exists():
            return 0
        try:
            with sqlite3.connect(db, timeout=5) as conn:
                return conn.execute("SELECT COUNT(*) FROM judgements").fetchone()[0]
        except sqlite3.OperationalError:  # the table is not created yet
            return 0

    try:
        deadline = time.monotonic() + 180
        while cached() < 1 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.1)
        process.send_signal(signal.SIGKILL)  # as a crash would: no cleanup, no manifest update
        process.wait(timeout=30)
        done = cached()
        assert done == 1, f"the run was not caught mid-way: {log.read_text()[-2000:]}"
        first_ids = [i for i in proxy.ids() if i]
        answered_first = first_ids[:done]  # concurrency 1, no re-asks: the first answers are the cached ones
        assert "judge" not in json.loads((folder / "build_manifest.json").read_text())["annotations"]
    finally:
        if process.poll() is None:
            process.kill()
        proxy.stop()

    rerun = FaultProxy(llama.base_url).start()
    try:
        assert main([*args, "--base-url", rerun.base_url]) == 0
        judge = json.loads((folder / "build_manifest.json").read_text())["annotations"]["judge"]
        assert judge["requests"]["judgements_cached"] == done
        assert not set(rerun.ids()) & set(answered_first)  # nothing done before the kill is asked again
        assert len(set(rerun.ids())) == 2 - done == rerun.received
    finally:
        rerun.stop()


def test_api_key_is_sent_but_never_printed_or_stored(small_build, tmp_path, monkeypatch, capsys):
    secret = "sk-or-v1-TESTSECRET-0123456789"
    monkeypatch.setenv("MY_JUDGE_KEY", secret)
    folder = tmp_path / "labelled"
    server = FakeChatServer().start()
    try:
        args = [
            "label", str(small_build), "--out", str(folder), "--base-url", server.base_url, "--api-key-env",
            "MY_JUDGE_KEY", "--judge-model", "fake-judge", "--max-calls", "3", "--no-progress",
            "--set", f"cache_dir={tmp_path / 'cache'}",
        ]  # fmt: skip
        assert main(args) == 0
    finally:
        server.stop()
    assert server.authorization == [f"Bearer {secret}"] * 3
    captured = capsys.readouterr()
    assert secret not in captured.out + captured.err
    for path in [*folder.rglob("*"), *(tmp_path / "cache").rglob("*")]:
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    manifest = json.loads((folder / "build_manifest.json").read_text())
    assert manifest["annotations"]["judge"]["api_key_env"] == "MY_JUDGE_KEY"
    assert len(records_of(folder)) == 6 and len(records_of(small_build)) == 6  # the source build is untouched
    assert all(r["annotations"]["coordination"] is None for r in records_of(small_build))


class KeyEchoServer(_Server):
    """A server that echoes the API key it is sent (its Authorization header) back in every answer, in one of
    :attr:`BEHAVIOURS` per conversation (in the order the conversations arrive). The key is placed so that it
    spans the points where error texts are cut (200 characters), which a redaction after the cut would miss."""

    BEHAVIOURS = ("http_401", "error_in_200", "not_a_completion", "invalid_output", "rationale")

    def __init__(self) -> None:
        self.assigned: dict[str | None, str] = {}
        self.keys: list[str] = []
        self._lock = threading.Lock()

    @staticmethod
    def spanning(key: str, at: int = 190) -> str:
        """Text in which ``key`` starts at character ``at``."""
        return "x" * at + key + " is not a valid key"

    def answer(self, behaviour: str, key: str) -> tuple[int, dict]:
        if behaviour == "http_401":
            return 401, {"error": {"message": self.spanning(key, 190 - len('{"error": {"message": "'))}}
        if behaviour == "error_in_200":
            return 200, {"error": {"message": self.spanning(key), "code": 400}}
        if behaviour == "not_a_completion":
            return 200, {"object": "chat.completion", "choices": [], "echo": self.spanning(key, 60)}
        content = judgement() | ({"agreement_level": key} if behaviour == "invalid_output" else {"rationale": key})
        choice = {"index": 0, "message": {"role": "assistant", "content": json.dumps(content)}, "finish_reason": "stop"}
        return 200, {
            "object": "chat.completion",
            "choices": [choice],
            "usage": {"prompt_tokens": 9, "completion_tokens": 9},
        }

    def handle(self, handler) -> None:
        if handler.command == "GET":  # the model list: no prices (a loopback server is free)
            _send(handler, 200, b'{"data": []}')
            return
        request = json.loads(_read_body(handler) or b"{}")
        key = (handler.headers.get("Authorization") or "").removeprefix("Bearer ")
        with self._lock:
            self.keys.append(key)
            row = conversation_id(request)
            behaviour = self.assigned.setdefault(row, self.BEHAVIOURS[len(self.assigned) % len(self.BEHAVIOURS)])
        status, body = self.answer(behaviour, key)
        _send(handler, status, json.dumps(body).encode())


def pieces(secret: str, size: int = 8) -> list[str]:
    """Every run of ``size`` characters of ``secret``: what must not appear anywhere (a cut key leaves one)."""
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


def sqlite_text(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return json.dumps({t: conn.execute(f"SELECT * FROM {t}").fetchall() for t in tables}, default=str)


def test_a_key_echoed_by_the_server_never_reaches_rows_manifest_or_cache(small_build, tmp_path, monkeypatch, capsys):
    secret = "LEAKY-" + secrets.token_hex(16)
    monkeypatch.setenv("LEAK_TEST_KEY", secret)
    folder, cache = tmp_path / "labelled", tmp_path / "cache"
    server = KeyEchoServer().start()
    try:
        args = [
            "label", str(small_build), "--out", str(folder), "--base-url", server.base_url, "--api-key-env",
            "LEAK_TEST_KEY", "--judge-model", "fake-judge", "--mode", "json_object", "--sample-size", "6",
            "--max-calls", "20", "--concurrency", "1", "--no-progress", "--set", f"cache_dir={cache}",
            "--set", "max_retries=0", "--set", "max_reasks=0",
        ]  # fmt: skip
        assert main(args) == 0
    finally:
        server.stop()
    assert set(server.keys) == {secret} and sorted(set(server.assigned.values())) == sorted(server.BEHAVIOURS)
    rows = records_of(folder)
    judged = {entry(r)["status"]: entry(r) for r in rows}
    reasons = [entry(r)["reason"] or "" for r in rows]
    # every echo was met: an HTTP error body, an error in a 200 body, a 200 that is no completion, an answer
    # that fails the output schema (the key as a label), and a valid answer carrying the key
    for expected in ("HTTP 401", "error in a 200 body", "not a chat completion", "invalid output after 0 re-asks"):
        assert any(expected in reason and "***" in reason for reason in reasons), (expected, reasons)
    assert judged["ok"]["rationale"] == "***"
    manifest = (folder / "build_manifest.json").read_text()
    captured = capsys.readouterr()
    texts = {
        "rows": json.dumps(rows, default=str),
        "manifest": manifest,
        "card": (folder / "README.md").read_text(),
        "cache": sqlite_text(cache / "judge_cache.sqlite"),
        "output": captured.out + captured.err,
    }
    for path in [*folder.rglob("*"), *cache.rglob("*")]:
        if path.is_file():
            texts[str(path)] = path.read_bytes().decode("latin-1")
    leaks = {where: piece for where, text in texts.items() for piece in pieces(secret) if piece in text}
    assert leaks == {}
    assert "failure_reasons" in json.loads(manifest)["annotations"]["judge"]


def test_base_url_is_recorded_without_userinfo_or_query(small_build, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("NO_JUDGE_KEY", raising=False)
    server = FakeChatServer().start()
    folder, cache = tmp_path / "labelled", tmp_path / "cache"
    public = server.base_url  # http://127.0.0.1:PORT/v1
    given = public.replace("http://", "http://someone:pw-SECRET-1234@") + "?sig=QUERY-SECRET-5678"
    try:
        args = [
            "label", str(small_build), "--out", str(folder), "--base-url", given, "--api-key-env", "NO_JUDGE_KEY",
            "--judge-model", "fake-judge", "--max-calls", "3", "--no-progress", "--set", f"cache_dir={cache}",
        ]  # fmt: skip
        assert main(args) == 0
    finally:
        server.stop()
    assert len([r for r in server.requests if r.get("messages")]) == 3  # the query string stays after the path
    manifest = json.loads((folder / "build_manifest.json").read_text())
    judge = manifest["annotations"]["judge"]
    assert judge["base_url"] == judge["params"]["base_url"] == public
    assert manifest["recipe"]["annotations"]["judge"]["base_url"] == public
    with sqlite3.connect(cache / "judge_cache.sqlite") as conn:
        assert conn.execute("SELECT base_url FROM server_modes").fetchall() == [(public,)]
    captured = capsys.readouterr()
    everything = captured.out + captured.err + sqlite_text(cache / "judge_cache.sqlite")
    everything += "".join(p.read_bytes().decode("latin-1") for p in folder.rglob("*") if p.is_file())
    for secret in ("someone", "pw-SECRET-1234", "QUERY-SECRET-5678"):
        assert secret not in everything


def test_dry_run_prints_the_estimate_and_sends_nothing(small_build, tmp_path, capsys):
    server = FakeChatServer(pricing={"prompt": "0.000001", "completion": "0.000002"}).start()
    try:
        args = [
            "label", str(small_build), "--base-url", server.base_url, "--judge-model", "fake-judge",
            "--max-calls", "4", "--max-cost-usd", "0.5", "--dry-run", "--set", f"cache_dir={tmp_path / 'c'}",
        ]  # fmt: skip
        assert main(args) == 0
    finally:
        server.stop()
    out = capsys.readouterr().out
    assert "4 of 6 conversations sampled -> 4 requests (0 cached, 4 to send)" in out
    assert "estimated tokens:" in out and "estimated cost: at most $0.00" in out and "server model list" in out
    assert server.received == 0
    assert not list(small_build.glob(".label*"))
