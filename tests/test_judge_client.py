"""One judge request (coord_bench/mappers/judge/client.py): the base URL as recorded, and the request body of
each structured-output mode."""

from __future__ import annotations

import json
from pathlib import Path

from coord_bench.mappers.judge.client import grammar_schema, public_url, request_body


def test_public_url_keeps_scheme_host_port_and_path_only():
    assert public_url("https://openrouter.ai/api/v1") == "https://openrouter.ai/api/v1"
    assert public_url("https://me:pass@Judge.Example.com:8443/api/v1/?key=abc#frag") == (
        "https://judge.example.com:8443/api/v1/"
    )
    assert public_url("http://user@[::1]:8080/v1?x=1") == "http://[::1]:8080/v1"
    assert public_url(" http://127.0.0.1:9/v1 ") == "http://127.0.0.1:9/v1"


def test_request_bodies_per_mode():
    schema = json.loads((Path(__file__).parents[1] / "schemas" / "judge_output.schema.json").read_text())
    messages = [{"role": "user", "content": "x"}]
    body = request_body("json_schema", "m", messages, schema, {"temperature": 0}, "https://openrouter.ai/api/v1")
    assert body["response_format"]["json_schema"]["strict"] is True
    assert body["provider"] == {"require_parameters": True} and body["usage"] == {"include": True}
    wire = body["response_format"]["json_schema"]["schema"]
    assert "maxLength" not in json.dumps(wire) and "maximum" not in json.dumps(wire)  # checked locally instead
    assert wire["properties"]["success_score"] == {
        "type": "integer",
        "enum": list(range(11)),
        "description": schema["properties"]["success_score"]["description"],
    }
    body = request_body("json_object", "m", messages, schema, {}, "http://127.0.0.1:1/v1")
    assert body["response_format"]["type"] == "json_object" and "provider" not in body
    assert body["response_format"]["schema"]["properties"]["success_score"]["enum"] == list(range(11))
    body = request_body("tool", "m", messages, schema, {}, "http://127.0.0.1:1/v1")
    assert body["tool_choice"]["function"]["name"] == body["tools"][0]["function"]["name"]
    assert "type" not in grammar_schema(schema)["properties"]["preferred"]  # an enum llama.cpp enforces
