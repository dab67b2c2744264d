"""The llama.cpp server the judge tests rely on: built portably, it survives real completions on this CPU.

A llama-cpp-python compiled for the build machine's CPU (ggml's default GGML_NATIVE) can include AMX kernels
that crash with SIGSEGV on the first completion; .ci/run and the README build it with -DGGML_NATIVE=OFF.
"""

from __future__ import annotations

import httpx
from llm_server import LlamaServer


def test_llama_server_survives_completions(tmp_path):
    server = LlamaServer(tmp_path / "server.log").start()  # start() already runs one warm-up completion
    try:
        body = {
            "messages": [{"role": "user", "content": "Name one colour. " * 40}],
            "max_tokens": 16,
            "temperature": 0,
        }
        replies = [httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=120) for _ in range(2)]
        assert [r.status_code for r in replies] == [200, 200]
        assert all(r.json()["choices"][0]["message"]["content"] is not None for r in replies)
        assert replies[0].json()["usage"]["prompt_tokens"] > 100  # a real prompt went through the model
        assert server.process.poll() is None, server._died("after two completions")
    finally:
        server.stop()
