"""Embeddings: the genuine bundled MiniLM, long texts chunked and pooled, a content-addressed cache that resumes."""

import json
import logging

import numpy as np
import pytest

from coord_bench.cli import main
from coord_bench.mappers.embeddings import Embedder, EmbeddingCache, text_batches


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    # torch fp32: the model as published, whose similarity table the first test checks
    return Embedder(cache_dir=tmp_path_factory.mktemp("cache"), progress=False, backend="torch", precision="fp32")


def test_bundled_model_is_the_genuine_minilm(embedder):
    # the similarity table printed in the sentence-transformers README for all-MiniLM-L6-v2
    vectors = embedder.vectors(["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."])
    sims = vectors @ vectors.T
    np.testing.assert_allclose([sims[0, 1], sims[0, 2], sims[1, 2]], [0.6660, 0.1046, 0.1411], atol=5e-5)
    assert embedder.dim == 384 and embedder.device == "cpu"  # no GPU here; "auto" picks CUDA when present


def test_long_texts_are_chunked_and_pooled(embedder):
    window = embedder.model.max_seq_length - 2
    long_text = " ".join(f"word{i} is here" for i in range(400))
    ids = embedder.model.tokenizer(long_text, add_special_tokens=False)["input_ids"]
    assert len(ids) > 2 * window
    chunks = [ids[i : i + window] for i in range(0, len(ids), window)]
    parts = embedder.model.encode([embedder.model.tokenizer.decode(c) for c in chunks], normalize_embeddings=True)
    expected = (parts * np.array([len(c) for c in chunks])[:, None]).sum(axis=0)
    expected /= np.linalg.norm(expected)
    got = embedder.encode([long_text])[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    truncated = embedder.model.encode([long_text], normalize_embeddings=True)[0]
    assert not np.allclose(got, truncated, atol=1e-3)  # the tail of the text counts


def test_chunking_silences_the_too_long_warning_there_and_only_there(tmp_path):
    fresh = Embedder(cache_dir=tmp_path, progress=False)
    # transformers warns once per tokenizer, and the loaded model is shared: forget an earlier warning
    fresh.model.tokenizer.deprecation_warnings.pop("sequence-length-is-longer-than-the-specified-maximum", None)
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logging.getLogger("transformers").addHandler(handler)  # transformers' own logger, whatever stream it uses
    try:
        long_text = " ".join(f"word{i} is here" for i in range(400))
        fresh.encode([long_text, "short"])
        assert not [m for m in seen if "Token indices sequence length is longer" in m]
        fresh.model.tokenizer(long_text)  # the same tokenizer used anywhere else still warns
        assert [m for m in seen if "Token indices sequence length is longer" in m]
    finally:
        logging.getLogger("transformers").removeHandler(handler)


def test_each_distinct_text_is_encoded_once_and_cached(tmp_path):
    first = Embedder(cache_dir=tmp_path, progress=False)
    assert first.ensure(["a", "b", "a", "c"]) == 3
    assert first.ensure(["a", "b", "d"]) == 1
    again = Embedder(cache_dir=tmp_path, progress=False)  # a new process: the SQLite cache persists
    assert again.ensure(["a", "b", "c", "d"]) == 0
    np.testing.assert_array_equal(again.vectors(["c"]), first.vectors(["c"]))
    assert again._model is None  # a warm cache never even loads the model


def test_cache_survives_an_interrupted_run(tmp_path):
    cache = EmbeddingCache(tmp_path / "x.sqlite")
    cache.put({"k1": np.ones(3, np.float32)})
    del cache  # as if the process died after the batch committed
    reopened = EmbeddingCache(tmp_path / "x.sqlite")
    assert reopened.missing(["k1", "k2"]) == {"k2"}
    np.testing.assert_array_equal(reopened.get(["k1"])["k1"], np.ones(3, np.float32))


def test_a_warm_rebuild_encodes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("COORD_BENCH_CACHE", str(tmp_path / "cache"))
    for run in ("cold", "warm"):
        assert main(["build", "--no-progress", "--out", str(tmp_path / run), "--annotate", "embeddings"]) == 0
    cold = json.loads((tmp_path / "cold" / "build_manifest.json").read_text())["annotations"]["embeddings"]
    warm = json.loads((tmp_path / "warm" / "build_manifest.json").read_text())["annotations"]["embeddings"]
    assert cold["texts_encoded"] == cold["distinct_texts"] > 100
    assert warm["texts_encoded"] == 0 and warm["texts_from_cache"] == cold["distinct_texts"]


def test_model_batches_are_bounded_by_characters_as_well_as_by_count():
    ordered = [(f"k{i}", "x" * n) for i, n in enumerate([10, 10, 10, 50, 300, 5000])]
    batches = list(text_batches(ordered, size=2, chars=100))
    assert [[key for key, _ in batch] for batch in batches] == [["k0", "k1"], ["k2", "k3"], ["k4"], ["k5"]]
    assert [item for batch in batches for item in batch] == ordered  # every text once, in order
    assert list(text_batches(ordered, size=64, chars=10**6)) == [ordered]
