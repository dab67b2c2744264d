"""The judge's recipe section (coord_bench/mappers/judge/config.py): what is refused before any request, a key
sent over plain http to a non-loopback host, a missing key."""

from __future__ import annotations

import secrets

import pytest

from coord_bench.mappers.judge import JudgeConfigError, JudgeMapper


def test_plain_http_with_a_key_is_refused_except_to_loopback(tmp_path, monkeypatch):
    secret = "sk-" + secrets.token_hex(12)
    monkeypatch.setenv("MY_JUDGE_KEY", secret)
    base = {"api_key_env": "MY_JUDGE_KEY", "models": ["m"], "cache_dir": str(tmp_path)}
    for check_key in (True, False):  # a dry run (no key needed) would still send it to the model list
        with pytest.raises(JudgeConfigError, match=r"plain http to http://judge\.example\.com/v1.*https://") as err:
            JudgeMapper({**base, "base_url": "http://user:pw-XYZ-42@judge.example.com/v1?sig=1"}, False, check_key)
        assert secret not in str(err.value) and "pw-XYZ-42" not in str(err.value) and "sig" not in str(err.value)
    JudgeMapper({**base, "base_url": "https://judge.example.com/v1"}, progress=False)  # https: fine
    JudgeMapper({**base, "base_url": "http://127.0.0.1:9/v1"}, progress=False)  # loopback: fine
    monkeypatch.delenv("MY_JUDGE_KEY")
    JudgeMapper({**base, "base_url": "http://judge.example.com/v1"}, progress=False, check_key=False)  # no key


def test_missing_key_fails_before_any_request(monkeypatch):
    monkeypatch.delenv("OPENROUTER_API_KEY", raising=False)
    with pytest.raises(JudgeConfigError, match=r"\$OPENROUTER_API_KEY"):
        JudgeMapper({"models": ["openai/gpt-4o-mini"]}, progress=False)
