"""Streaming readers: the same values as json.load on real files, and a specific reason for broken ones."""

import gzip
import json

import pytest
from realdata import REAL

from coord_bench.sources import readers
from coord_bench.sources.readers import ReadFailure, iter_json, iter_jsonl


@pytest.mark.parametrize("path", sorted((REAL / "debate").rglob("*.json")), ids=lambda p: p.name)
def test_streamed_json_equals_json_load(path):
    loaded = json.loads(path.read_text(encoding="utf-8"))
    expected = loaded if isinstance(loaded, list) else [loaded]
    assert [value for _, value in iter_json(path)] == expected


def test_small_chunks_still_parse_every_element(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "_CHUNK", 5)
    data = [{"n": i, "text": "x" * (i * 7)} for i in range(30)]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(data, indent=1))
    assert [value for _, value in iter_json(path)] == data


def test_truncated_array_yields_good_elements_then_a_reason(tmp_path):
    path = tmp_path / "cut.json"
    text = json.dumps([{"a": 1}, {"b": 2}, {"c": "long text here"}])
    path.write_text(text[:-12])
    out = list(iter_json(path))
    assert [v for _, v in out[:2]] == [{"a": 1}, {"b": 2}]
    index, failure = out[2]
    assert index == 2 and isinstance(failure, ReadFailure)
    assert "element 2 of the JSON array is truncated or invalid" in failure.reason


def test_missing_comma_is_named(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[{"a": 1} {"b": 2}]')
    out = list(iter_json(path))
    assert out[0] == (0, {"a": 1})
    assert "expected ',' or ']'" in out[1][1].reason


def test_jsonl_bad_line_does_not_stop_the_file(tmp_path):
    path = tmp_path / "x.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write('{"a": 1}\n{"b": \n\n{"c": 3}\n')
    out = list(iter_jsonl(path))
    assert out[0] == (0, {"a": 1})
    assert isinstance(out[1][1], ReadFailure) and "line 2 is not valid JSON" in out[1][1].reason
    assert out[2] == (2, {"c": 3})


def test_cut_gzip_is_reported(tmp_path):
    path = tmp_path / "cut.jsonl.gz"
    payload = gzip.compress(b"".join(b'{"n": %d}\n' % i for i in range(2000)))
    path.write_bytes(payload[: len(payload) // 2])
    out = list(iter_jsonl(path))
    assert isinstance(out[-1][1], ReadFailure)
    assert "cut off or corrupt" in out[-1][1].reason
