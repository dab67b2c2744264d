"""Persistent judge cache: one SQLite file of validated judgements, keyed by what determines the answer.

``key = sha256(canonical JSON of {model, prompt_version, schema, messages, params})`` where ``schema`` is the
judge's output schema, ``messages`` the first request's messages (re-asks do not change the key) and
``params`` the sampling parameters (temperature, max_tokens). The base URL, the structured-output mode and
the API key are not part of the key (the key is never stored anywhere). Each judgement is committed as soon
as it is validated, so a rerun, or a run resumed after a crash or a kill, sends no request for what is done.
The file also remembers which structured-output mode each server accepted.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any


def request_key(
    model: str, prompt_version: str, schema: dict[str, Any], messages: list[dict[str, str]], params: dict[str, Any]
) -> str:
    payload = {
        "model": model,
        "prompt_version": prompt_version,
        "schema": schema,
        "messages": messages,
        "params": params,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class JudgeCache:
    """key -> validated output, cost and usage; safe for one process with many coroutines (one thread)."""

    def __init__(self, path: Path):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, timeout=30, check_same_thread=False)  # one thread at a time uses it
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process loses no committed row
        with self.db:
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS judgements (key TEXT PRIMARY KEY, model TEXT NOT NULL, "
                "prompt_version TEXT NOT NULL, output TEXT NOT NULL, cost_usd REAL, prompt_tokens INTEGER, "
                "completion_tokens INTEGER, mode TEXT, calls INTEGER, created REAL)"
            )
            self.db.execute("CREATE TABLE IF NOT EXISTS server_modes (base_url TEXT PRIMARY KEY, mode TEXT NOT NULL)")

    def get(self, key: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT output, cost_usd, prompt_tokens, completion_tokens, mode, calls FROM judgements WHERE key = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        output, cost, prompt_tokens, completion_tokens, mode, calls = row
        return {
            "output": json.loads(output),
            "cost_usd": cost,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "mode": mode,
            "calls": calls,
        }

    def has(self, key: str) -> bool:
        return self.db.execute("SELECT 1 FROM judgements WHERE key = ?", (key,)).fetchone() is not None

    def put(
        self,
        key: str,
        model: str,
        prompt_version: str,
        output: dict[str, Any],
        cost_usd: float,
        prompt_tokens: int | None,
        completion_tokens: int | None,
        mode: str,
        calls: int,
    ) -> None:
        with self.db:  # committed at once: a kill right after loses nothing
            self.db.execute(
                "INSERT OR REPLACE INTO judgements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    model,
                    prompt_version,
                    json.dumps(output, sort_keys=True),
                    cost_usd,
                    prompt_tokens,
                    completion_tokens,
                    mode,
                    calls,
                    time.time(),
                ),
            )

    def server_mode(self, base_url: str) -> str | None:
        row = self.db.execute("SELECT mode FROM server_modes WHERE base_url = ?", (base_url,)).fetchone()
        return row[0] if row else None

    def set_server_mode(self, base_url: str, mode: str) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO server_modes VALUES (?, ?)", (base_url, mode))
