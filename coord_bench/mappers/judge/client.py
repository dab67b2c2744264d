"""One chat-completions request to an OpenAI-compatible server, in one of four structured-output modes.

Modes (``mode`` in the recipe; ``auto`` picks per server):

- ``json_schema``: ``response_format: {type: json_schema, json_schema: {name, strict: true, schema}}``
  (OpenAI, OpenRouter; on OpenRouter with ``provider: {require_parameters: true}`` so that only providers
  that honour the schema serve the request);
- ``json_object``: ``response_format: {type: json_object, schema}`` (llama.cpp's server: the schema becomes a
  grammar);
- ``tool``: a forced call of one function whose parameters are the schema;
- ``prompt``: the schema in the prompt only.

``auto``: OpenRouter and OpenAI get ``json_schema``; another server is tried in the order above, and a
request whose form the server rejects (HTTP 400/422/500 naming ``response_format``, ``json_schema`` or
``tools``) moves it down one mode. The mode that worked is remembered per server in the judge cache, so
the probe is paid once per server, not once per run.

Errors are typed so the caller can retry the right ones: ``RateLimited`` (429, with Retry-After),
``ServerError`` (5xx), ``RequestTimeout``, ``ConnectionFailed``, ``BadResponse`` (a 200 whose body is not
a chat completion, e.g. truncated JSON) are transient; ``ClientError`` (other 4xx) and ``ModeRejected`` are
not. The API key is sent in the Authorization header only. Whatever comes back from the server (error texts,
the judgement text) has the key redacted over its whole length before it is cut to size, so no piece of the
key can reach an error reason, a row, the manifest or the cache; the base URL's userinfo and query string
are redacted too, and only :func:`public_url` (scheme, host, port and path) is ever recorded.
"""

from __future__ import annotations

import asyncio
import copy
import email.utils
import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse, urlsplit, urlunsplit

import httpx

MODES = ("json_schema", "json_object", "tool", "prompt")
TOOL_NAME = "submit_judgement"
# the keywords every strict structured-output implementation accepts; bounds are checked locally anyway
STRICT_KEYWORDS = {"type", "properties", "required", "additionalProperties", "items", "enum", "description", "anyOf"}


class JudgeError(Exception):
    """A request that did not produce a chat completion. ``billed``: the server may have charged for it."""

    transient = True
    billed = False

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class RateLimited(JudgeError):
    def __init__(self, reason: str, retry_after: float | None):
        super().__init__(reason)
        self.retry_after = retry_after


class ServerError(JudgeError):
    pass


class RequestTimeout(JudgeError):
    billed = True  # the server may have finished (and charged) after we gave up


class ConnectionFailed(JudgeError):
    pass


class BadResponse(JudgeError):
    billed = True


class ClientError(JudgeError):
    transient = False


class ModeRejected(JudgeError):
    transient = False


@dataclass
class Reply:
    """What one successful request returned."""

    text: str | None  # the JSON text of the judgement (message content or tool arguments)
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None  # OpenRouter's usage.cost when present
    mode: str


def host(base_url: str) -> str:
    return (urlparse(base_url).hostname or "").lower()


def is_openrouter(base_url: str) -> bool:
    return host(base_url).endswith("openrouter.ai")


def is_loopback(base_url: str) -> bool:
    return host(base_url) in ("127.0.0.1", "localhost", "::1")


def public_url(base_url: str) -> str:
    """``scheme://host[:port]/path`` of ``base_url``, the only form of it that is ever recorded (manifest,
    recipe, card, cache): userinfo (``user:password@``), query string and fragment are dropped."""
    parts = urlsplit(base_url.strip())
    name = parts.hostname or ""
    netloc = f"[{name}]" if ":" in name else name
    try:
        port = parts.port
    except ValueError:  # not a number: keep nothing of it
        port = None
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _no_redaction(text: str) -> str:
    return text


def known_mode(base_url: str) -> str | None:
    """The mode of servers known to support strict JSON schemas; None: detect it."""
    return "json_schema" if is_openrouter(base_url) or host(base_url) == "api.openai.com" else None


def strict_schema(node: Any) -> Any:
    """The schema in the subset strict structured outputs accept: no maxLength, maxItems or bounds (checked
    locally anyway); a small integer range becomes an enum of integers, which strict mode does enforce."""
    if isinstance(node, list):
        return [strict_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    bounded = node.get("type") == "integer" and "minimum" in node and "maximum" in node and "enum" not in node
    if bounded and node["maximum"] - node["minimum"] <= 20:
        node = {**node, "enum": list(range(node["minimum"], node["maximum"] + 1))}
    out = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: strict_schema(child) for name, child in value.items()}
        elif key in STRICT_KEYWORDS:
            out[key] = strict_schema(value)
    return out


def grammar_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema in the form grammar-based servers (llama.cpp) enforce best: an enum without a ``type`` (a
    typed enum is compiled as a plain string) and small integer ranges as enums (ranges are not enforced);
    maxLength stays, as it bounds the generation."""
    schema = {
        k: v
        for k, v in copy.deepcopy(schema).items()
        if k not in ("$schema", "$id", "title") and not k.startswith("x-")
    }

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "enum" in node:
                return {k: v for k, v in node.items() if k != "type"}
            small_range = node.get("type") == "integer" and node.get("maximum", 99) - node.get("minimum", 0) <= 20
            if small_range and "minimum" in node and "maximum" in node:
                rest = {k: v for k, v in node.items() if k not in ("type", "minimum", "maximum")}
                return {**rest, "enum": list(range(node["minimum"], node["maximum"] + 1))}
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


@functools.lru_cache(maxsize=32)
def _wire_schema(kind: str, schema_json: str) -> dict[str, Any]:
    schema = json.loads(schema_json)
    return strict_schema(schema) if kind == "strict" else grammar_schema(schema)


def request_body(
    mode: str, model: str, messages: list[dict[str, str]], schema: dict[str, Any], params: dict[str, Any], base_url: str
) -> dict[str, Any]:
    """The JSON body of one request in ``mode`` (wire schemas are converted once per schema and cached)."""
    schema_json = json.dumps(schema, sort_keys=True)
    body: dict[str, Any] = {"model": model, "messages": messages, **params}
    if mode == "json_schema":
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "judgement", "strict": True, "schema": _wire_schema("strict", schema_json)},
        }
    elif mode == "json_object":
        body["response_format"] = {"type": "json_object", "schema": _wire_schema("grammar", schema_json)}
    elif mode == "tool":
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": TOOL_NAME,
                    "description": "Submit the judgement of the conversation.",
                    "parameters": _wire_schema("grammar", schema_json),
                },
            }
        ]
        body["tool_choice"] = {"type": "function", "function": {"name": TOOL_NAME}}
    elif mode != "prompt":
        raise ValueError(f"unknown structured-output mode {mode!r}; expected one of {', '.join(MODES)}")
    if is_openrouter(base_url):
        body["usage"] = {"include": True}
        if mode != "prompt":
            body["provider"] = {"require_parameters": True}
    return body


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (a number or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def parse_reply(mode: str, data: Any, redact: Callable[[str], str] = _no_redaction) -> Reply:
    """The judgement text and usage of a chat completion; BadResponse when it is not one. ``redact`` is applied
    to every text taken from ``data`` (the judgement text and the error reason) before it is cut."""
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
        raise BadResponse(f"not a chat completion: {redact(json.dumps(data))[:200]}")
    choice = data["choices"][0]
    message = choice.get("message") or {}
    text = message.get("content")
    calls = message.get("tool_calls") or []
    if mode == "tool" and calls:
        text = ((calls[0] or {}).get("function") or {}).get("arguments")
    usage = data.get("usage") or {}
    cost = usage.get("cost")
    return Reply(
        text=redact(text) if isinstance(text, str) else None,
        finish_reason=choice.get("finish_reason"),
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        cost_usd=float(cost) if isinstance(cost, (int, float)) else None,
        mode=mode,
    )


def _mentions_mode(text: str, mode: str) -> bool:
    words = {"json_schema": ("response_format", "json_schema"), "json_object": ("response_format",)}
    words["tool"] = ("tool", "function")
    return any(w in text for w in words.get(mode, ()))


class ChatClient:
    """Sends requests to ``{base_url}/chat/completions``, each through one httpx.AsyncClient of ``http``.

    Give one client per concurrent request (each limited to one connection): a request takes a free client
    and returns it, so no connection pool is shared. One large shared pool costs httpcore time quadratic in
    its size (it scans every connection for every request), which shows from about 32 requests in flight."""

    def __init__(
        self, base_url: str, api_key: str | None, timeout_s: float, http: httpx.AsyncClient | list[httpx.AsyncClient]
    ):
        self.base_url = base_url.rstrip("/")
        self.public_url = public_url(self.base_url)
        self._key = api_key
        parts = urlsplit(self.base_url)
        # what must never be shown: the key, and the base URL's password and query string (the URL as given
        # is replaced by its public form first, so its userinfo goes as a whole)
        self._secrets = [(self.base_url, self.public_url)] if self.base_url != self.public_url else []
        self._secrets += [(s, "***") for s in (parts.password, parts.query) if s and len(s) >= 4]
        self._secrets += [(api_key, "***")] if api_key else []
        self.timeout_s = timeout_s
        self.clients = list(http) if isinstance(http, list) else [http]
        self._free: asyncio.Queue | None = None

    def __repr__(self) -> str:  # never show the key, nor the URL's userinfo or query
        return f"ChatClient({self.public_url!r})"

    def redact(self, text: str) -> str:
        """``text`` with the key (and the base URL's password and query) replaced; apply it to the whole text,
        then cut: a cut first could leave a piece of the key that no replacement finds."""
        for secret, replacement in self._secrets:
            text = text.replace(secret, replacement)
        return text

    def _url(self, suffix: str) -> str:
        """``{base_url}{suffix}``, keeping a query string of the base URL after the path."""
        parts = urlsplit(self.base_url)
        return urlunsplit(parts._replace(path=parts.path.rstrip("/") + suffix))

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "X-Title": "coord_bench judge"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        return headers

    async def send(
        self, mode: str, model: str, messages: list[dict[str, str]], schema: dict[str, Any], params: dict[str, Any]
    ) -> Reply:
        body = request_body(mode, model, messages, schema, params, self.base_url)
        if self._free is None:
            self._free = asyncio.Queue()
            for client in self.clients:
                self._free.put_nowait(client)
        http = await self._free.get()
        try:
            response = await asyncio.wait_for(
                http.post(self._url("/chat/completions"), json=body, headers=self._headers()),
                timeout=self.timeout_s,
            )
        except (asyncio.TimeoutError, httpx.TimeoutException):
            raise RequestTimeout(f"no response within {self.timeout_s:g} s") from None
        except httpx.ConnectError as err:
            raise ConnectionFailed(self.redact(f"cannot connect to {self.public_url}: {err}")) from None
        except httpx.TransportError as err:  # the connection broke after the request was sent
            error = BadResponse(self.redact(f"connection broken during the response: {type(err).__name__}: {err}"))
            raise error from None
        finally:
            self._free.put_nowait(http)
        text = self.redact(response.text)[:500]  # redacted whole, then cut
        status = response.status_code
        if status == 429:
            raise RateLimited(f"HTTP 429: {text[:200]}", parse_retry_after(response.headers.get("Retry-After")))
        if status in (400, 422, 500, 501) and mode != "prompt" and _mentions_mode(text, mode):
            raise ModeRejected(f"HTTP {status} for mode {mode}: {text[:300]}")
        if status >= 500:
            raise ServerError(f"HTTP {status}: {text[:200]}")
        if status >= 400:
            hint = " (check the API key's environment variable)" if status in (401, 403) else ""
            raise ClientError(f"HTTP {status}{hint}: {text[:200]}")
        try:
            data = response.json()
        except ValueError:
            raise BadResponse(f"HTTP {status} with a body that is not JSON: {text[:120]!r}") from None
        if isinstance(data, dict) and data.get("error") and not data.get("choices"):
            error = data["error"] if isinstance(data["error"], dict) else {"message": str(data["error"])}
            message = self.redact(str(error.get("message", "")))[:200]
            if error.get("code") == 429:
                raise RateLimited(f"error 429 in the body: {message}", None)
            code = self.redact(str(error.get("code")))[:40]
            raise ServerError(f"error in a 200 body (code {code}): {message}")
        return parse_reply(mode, data, self.redact)

    async def list_models(self) -> list[dict[str, Any]]:
        """``GET {base_url}/models`` (OpenRouter lists prices there); [] when the server has no such list."""
        try:
            response = await self.clients[0].get(self._url("/models"), headers=self._headers(), timeout=30)
            data = response.json() if response.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            return []
        items = data.get("data") if isinstance(data, dict) else None
        return items if isinstance(items, list) else []
