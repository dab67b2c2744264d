"""The OpenVINO embedding backend: the sentence-transformers model's transformer run by the OpenVINO runtime.

OpenVINO computes MiniLM in bfloat16 on CPUs with bf16 units (AMX, avx512_bf16) about 3.5x faster than torch
fp32 on 2 cores, and in fp32 about 1.3x faster. The model is converted with OpenVINO's own
``openvino.convert_model`` (sentence-transformers' ``backend="openvino"`` needs optimum-intel, whose
transformers and huggingface-hub pins exclude the versions ``datasets`` 5 needs), once per model content:
the IR goes to ``<cache>/embeddings/openvino/<hash>/`` where the hash covers the weights, the config and the
OpenVINO version. Only the transformer runs in OpenVINO; tokenization, mean pooling and normalization are
sentence-transformers' own steps redone here in numpy, so a model with other modules stays on torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from coord_bench.mappers.embedding_backends import openvino_version

HINTS = {"fp32": "f32", "bf16": "bf16"}  # our precision -> OpenVINO's INFERENCE_PRECISION_HINT
TOKENS_PER_INFER = 4096  # padded word pieces in one inference (16 windows of 256): bounds the runtime's buffers


def unsupported(st_model) -> str | None:
    """Why this sentence-transformers model cannot run here, or None: transformer, mean pooling, normalize."""
    modules = [type(m).__name__ for m in st_model]
    if modules[:2] != ["Transformer", "Pooling"] or modules[2:] not in ([], ["Normalize"]):
        return f"modules {' + '.join(modules)}, not Transformer + Pooling (+ Normalize)"
    if st_model[1].pooling_mode != "mean":
        return f"pooling {st_model[1].pooling_mode}, not mean"
    return None


def content_hash(st_model) -> str:
    """sha256 of the transformer's weights (names, dtypes, shapes, bytes), its config and OpenVINO's version."""
    import torch

    digest = hashlib.sha256(f"openvino {openvino_version()}\0".encode())
    transformer = st_model[0].auto_model
    digest.update(json.dumps(transformer.config.to_dict(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(transformer.state_dict().items()):
        digest.update(f"\0{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.detach().to(torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def export(st_model, folder: Path) -> Path:
    """The model's OpenVINO IR under ``folder``, converted now unless a previous run left it there."""
    import openvino as ov

    target = folder / content_hash(st_model)
    xml = target / "model.xml"
    if xml.exists():
        return xml
    # padded, so that the traced graph keeps the attention mask; the tracer's warnings on constant Python
    # booleans are about branches the encoder (no cache, no causal mask) never takes
    example = dict(st_model.tokenizer(["an example text", "two"], padding=True, return_tensors="pt"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = ov.convert_model(st_model[0].auto_model, example_input=example)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=".export-"))
    try:
        ov.save_model(converted, tmp / "model.xml", compress_to_fp16=False)
        os.replace(tmp, target)  # a parallel build that won the race leaves the same files
    except OSError:
        if not xml.exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return xml


class OpenVINOModel:
    """What ``Embedder`` uses of a SentenceTransformer (tokenizer, max_seq_length, dimension, encode), with
    the transformer compiled by OpenVINO at a precision."""

    def __init__(self, st_model, folder: Path, precision: str):
        import openvino as ov

        self.tokenizer, self.max_seq_length = st_model.tokenizer, st_model.max_seq_length
        self.dimension = int(st_model.get_embedding_dimension())
        self.normalized = len(st_model) == 3  # the model's own Normalize module
        config = {"INFERENCE_PRECISION_HINT": HINTS[precision], "PERFORMANCE_HINT": "LATENCY"}
        self.compiled = ov.Core().compile_model(str(export(st_model, folder)), "CPU", config)
        self.inputs = {port.get_any_name() for port in self.compiled.inputs}
        self.request = self.compiled.create_infer_request()
        self.tokens_per_infer = TOKENS_PER_INFER

    def get_embedding_dimension(self) -> int:
        return self.dimension

    def encode(self, texts: list[str], batch_size: int = 64, normalize_embeddings: bool = False, **_) -> np.ndarray:
        """Mean-pooled embeddings in the order of ``texts``, batched longest first as sentence-transformers
        does; unit length where the model or the caller normalizes (its other options do not apply here)."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            tokens = self.tokenizer(
                [texts[i] for i in rows], padding=True, truncation=True, max_length=self.max_seq_length,
                return_tensors="np",
            )  # fmt: skip
            step = max(1, self.tokens_per_infer // tokens["input_ids"].shape[1])
            for part in range(0, len(rows), step):
                # the runtime keeps buffers for the largest input it has seen: 64 x 256 word pieces take 340 MB
                piece = {k: v[part : part + step] for k, v in tokens.items() if k in self.inputs}
                hidden = self.request.infer(piece)[0]  # the request's own buffer: pooled before the next call
                mask = tokens["attention_mask"][part : part + step, :, None].astype(np.float32)
                pooled = (hidden * mask).sum(axis=1) / mask.sum(axis=1).clip(1e-9)
                if self.normalized or normalize_embeddings:
                    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True).clip(1e-12)
                out[rows[part : part + step]] = pooled
        return out
