"""Embedding backend and precision: decided on the machine, recorded, and part of the cache key."""

import hashlib
import json
import sqlite3
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from coord_bench.cli import main
from coord_bench.mappers import embedding_backends
from coord_bench.mappers.embedding_openvino import OpenVINOModel
from coord_bench.mappers.embeddings import Embedder, record_texts

TEXTS = ["The capital of France is Paris.", "Agent 2 disagrees: the answer is (C)."]


def legacy_key(model_id: str, text: str) -> str:
    """The cache key of every build before backends existed: torch fp32 vectors keep it."""
    return hashlib.sha256(f"{model_id}\0{text}".encode()).hexdigest()


def weights_dtype(embedder: Embedder) -> str:
    return str(next(embedder.model.parameters()).dtype)


def runtime_bf16() -> str:
    """What a bf16 hint gives on this CPU: bf16 where the OpenVINO runtime has bf16 units, else f32."""
    import openvino

    return "bf16" if "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES") else "f32"


def openvino_precision(embedder: Embedder) -> str:
    assert isinstance(embedder.model, OpenVINOModel)
    return embedder.model.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()


def said(capsys) -> list[str]:
    """Our lines on stderr (transformers draws its own weight-loading bar there)."""
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("coord-bench:")]


def cache_keys(embedder: Embedder) -> set[str]:
    with sqlite3.connect(embedder.cache_path) as db:
        return {row[0] for row in db.execute("SELECT key FROM vectors")}


@pytest.fixture
def native_cpu(monkeypatch):
    """A CPU that reports bf16 units, whatever this machine has (the probe then decides)."""
    monkeypatch.setattr(embedding_backends, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})


@pytest.fixture
def no_openvino(monkeypatch):
    """A machine without the openvino extra: the module cannot be imported."""
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert embedding_backends.openvino_version() is None


def test_auto_takes_openvino_bf16_where_native_and_within_the_probe_tolerance(tmp_path, native_cpu, capsys):
    embedder = Embedder(cache_dir=tmp_path, progress=False)
    choice = embedder.resolve()
    assert (choice.backend, choice.precision, choice.fallback) == ("openvino", "bf16", False)
    version = embedding_backends.openvino_version()
    assert choice.reason.startswith(
        f"openvino {version} installed; bf16: avx512_bf16 present, probe cosine to fp32 mean 0.99"
    )
    assert openvino_precision(embedder) == runtime_bf16()
    assert embedder.key(TEXTS[0]) == legacy_key(f"{embedder.model_id}|openvino|bf16", TEXTS[0])
    assert said(capsys) == []  # nothing to say when the better choice is taken
    again = Embedder(cache_dir=tmp_path, progress=False)  # the decision is kept: no model load, no probe
    assert again.resolve() == choice and again._model is None


def test_without_openvino_auto_takes_torch_bf16(tmp_path, native_cpu, no_openvino, capsys):
    embedder = Embedder(cache_dir=tmp_path, progress=False)
    choice = embedder.resolve()
    assert (choice.backend, choice.precision, choice.fallback) == ("torch", "bf16", False)
    assert choice.reason.startswith("torch: OpenVINO is not installed (pip install 'coord_bench[openvino]'); bf16:")
    assert weights_dtype(embedder) == "torch.bfloat16"
    assert embedder.key(TEXTS[0]) == legacy_key(f"{embedder.model_id}|torch|bf16", TEXTS[0])
    assert said(capsys) == []  # auto asked for no backend in particular


def test_openvino_asked_for_on_a_machine_without_it_falls_back_to_torch_in_one_line(tmp_path, no_openvino, capsys):
    embedder = Embedder(cache_dir=tmp_path, progress=False, backend="openvino", precision="fp32")
    choice = embedder.resolve()
    missing = "torch: OpenVINO is not installed (pip install 'coord_bench[openvino]')"
    assert choice == embedding_backends.Choice("torch", "fp32", f"{missing}; fp32: set in the recipe", fallback=True)
    assert said(capsys) == [f"coord-bench: embeddings: {choice.reason}"]
    assert weights_dtype(embedder) == "torch.float32"
    assert embedder.key(TEXTS[0]) == legacy_key(embedder.model_id, TEXTS[0])


def test_openvino_export_is_cached_by_model_content_and_matches_torch(tmp_path):
    fp32 = Embedder(cache_dir=tmp_path, progress=False, backend="openvino", precision="fp32")
    assert openvino_precision(fp32) == "f32"
    (export,) = (tmp_path / "embeddings" / "openvino").iterdir()  # one folder, named by the content hash
    assert sorted(p.name for p in export.iterdir()) == ["model.bin", "model.xml"]
    stamp = (export / "model.bin").stat().st_mtime_ns
    bf16 = Embedder(cache_dir=tmp_path, progress=False, backend="openvino", precision="bf16")
    assert openvino_precision(bf16) == runtime_bf16()
    assert (export / "model.bin").stat().st_mtime_ns == stamp  # the second load converted nothing
    texts, _, stored = embedding_backends.probe()
    cosines = (fp32.encode(texts) * stored).sum(axis=1)
    assert cosines.min() > 0.99999
    assert fp32.variant.endswith("|openvino|fp32") and bf16.variant.endswith("|openvino|bf16")


def test_bf16_and_fp32_vectors_of_one_text_are_two_cache_entries(tmp_path):
    bf16 = Embedder(cache_dir=tmp_path, progress=False, backend="torch", precision="bf16")
    fp32 = Embedder(cache_dir=tmp_path, progress=False, backend="torch", precision="fp32")
    assert bf16.cache_path == fp32.cache_path  # one file per model, the variant in the key
    assert bf16.ensure(TEXTS) == 2 and fp32.ensure(TEXTS) == 2
    assert cache_keys(fp32) == {fp32.key(t) for t in TEXTS} | {bf16.key(t) for t in TEXTS}
    assert {fp32.key(t) for t in TEXTS} == {legacy_key(fp32.model_id, t) for t in TEXTS}
    low, high = bf16.vectors(TEXTS), fp32.vectors(TEXTS)
    assert not np.array_equal(low, high)
    assert (low * high).sum(axis=1).min() > 0.999
    assert Embedder(cache_dir=tmp_path, progress=False, backend="torch", precision="bf16").ensure(TEXTS) == 0


def test_auto_stays_at_fp32_without_native_bf16(tmp_path, monkeypatch):
    monkeypatch.setattr(embedding_backends, "cpu_flags", lambda: {"avx2", "fma"})  # an AVX2-only CPU
    embedder = Embedder(cache_dir=tmp_path, progress=False)
    choice = embedder.resolve()
    assert (choice.backend, choice.precision) == ("openvino", "fp32")
    assert choice.reason.endswith("installed; fp32: no native bf16 on cpu")
    assert embedder._model is None  # no probe was needed
    assert openvino_precision(embedder) == "f32"  # the runtime told not to pick bf16 itself
    assert embedder.key(TEXTS[0]) == legacy_key(f"{embedder.model_id}|openvino|fp32", TEXTS[0])


def test_auto_stays_at_torch_fp32_without_native_bf16_nor_openvino(tmp_path, monkeypatch, no_openvino):
    monkeypatch.setattr(embedding_backends, "cpu_flags", lambda: {"avx2", "fma"})
    embedder = Embedder(cache_dir=tmp_path, progress=False)
    assert embedder.resolve().reason == (
        "torch: OpenVINO is not installed (pip install 'coord_bench[openvino]'); fp32: no native bf16 on cpu"
    )
    assert embedder.key(TEXTS[0]) == legacy_key(embedder.model_id, TEXTS[0])  # the key of caches before backends
    assert weights_dtype(embedder) == "torch.float32"


def test_auto_falls_back_to_fp32_when_the_probe_misses_and_says_so(tmp_path, native_cpu, monkeypatch, capsys):
    monkeypatch.setattr(embedding_backends, "MIN_COSINE", 1.0)  # a tolerance no bf16 vector meets
    embedder = Embedder(cache_dir=tmp_path, progress=False)
    choice = embedder.resolve()
    assert (choice.backend, choice.precision, choice.fallback) == ("openvino", "fp32", True)
    assert "installed; fp32: bf16 probe cosine to fp32 mean 0.99" in choice.reason
    assert said(capsys) == [f"coord-bench: embeddings: {choice.reason}"]
    assert openvino_precision(embedder) == "f32"  # recompiled at fp32 after the bf16 probe
    fp32 = Embedder(cache_dir=tmp_path / "other", progress=False, backend="openvino", precision="fp32")
    np.testing.assert_array_equal(embedder.vectors(TEXTS), fp32.vectors(TEXTS))
    Embedder(cache_dir=tmp_path, progress=False).resolve()  # the kept decision says it again
    assert said(capsys) == [f"coord-bench: embeddings: {choice.reason}"]


def test_unknown_settings_are_refused():
    with pytest.raises(ValueError, match="annotations.embeddings.precision: expected one of auto, fp32, bf16"):
        Embedder(precision="fp16")


def test_torch_fp32_reproduces_the_stored_probe_vectors_bit_for_bit(tmp_path):
    texts, model_id, stored = embedding_backends.probe()
    embedder = Embedder(cache_dir=tmp_path, progress=False, backend="torch", precision="fp32")
    assert model_id == embedder.model_id and len(texts) == 12 == len(set(texts))
    np.testing.assert_array_equal(embedder.encode(texts), stored)


def test_a_build_records_what_it_used_and_torch_fp32_keeps_the_old_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("COORD_BENCH_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    flags = ["--annotate", "embeddings", "--set", "annotations.embeddings.precision=fp32"]
    flags += ["--set", "annotations.embeddings.backend=torch"]
    assert main(["build", "--no-progress", "--out", str(out), *flags]) == 0
    used = json.loads((out / "build_manifest.json").read_text())["annotations"]["embeddings"]
    reason = "torch: set in the recipe; fp32: set in the recipe"
    assert (used["backend"], used["precision"], used["reason"]) == ("torch", "fp32", reason)
    assert f"Vectors of this build: torch, {reason}." in (out / "README.md").read_text()
    rows = [row for shard in sorted((out / "all").glob("*.parquet")) for row in pq.read_table(shard).to_pylist()]
    texts = {t for row in rows for t in record_texts(row)}
    embedder = Embedder(progress=False, backend="torch", precision="fp32")
    assert len(texts) == used["distinct_texts"] and cache_keys(embedder) == {
        legacy_key(embedder.model_id, t) for t in texts
    }


def test_openvino_cuts_long_batches_into_bounded_inferences_with_the_same_vectors(tmp_path):
    model = Embedder(cache_dir=tmp_path, progress=False, backend="openvino", precision="fp32").model
    texts = [f"{i} " + "word " * (100 + 25 * i) for i in range(6)]  # 100-225 word pieces each
    whole = model.encode(texts, batch_size=64, normalize_embeddings=True)
    model.tokens_per_infer = 300  # one text per inference at these lengths
    np.testing.assert_allclose(model.encode(texts, batch_size=64, normalize_embeddings=True), whole, atol=1e-5)
    assert np.linalg.norm(whole, axis=1) == pytest.approx(1.0, abs=1e-6)
