"""Which backend and precision encode the texts, decided on this machine and recorded with the vectors.

bfloat16 runs the bundled MiniLM about 3x faster than fp32 on CPUs with bf16 units (avx512_bf16, AMX) and
about 5x slower on CPUs that emulate it, so ``precision: auto`` picks bf16 only where the hardware computes
it natively (the x86 CPU flags ``avx512_bf16`` / ``amx_bf16`` in /proc/cpuinfo; ``torch.cuda.
is_bf16_supported()`` on CUDA) and where the bf16 vectors of a fixed probe set (a dozen short texts shipped in
``embedding_probe.json``) stay within tolerance of the model's fp32 vectors: mean cosine >= 0.9999 and every
cosine >= 0.9995. The fp32 reference of the bundled model is stored in that file (rewrite it with
``tests/benchmarks/make_embedding_probe.py`` when the bundled model changes); another model's is encoded at
start-up. The decision, with its reason, is kept per machine and settings under the cache folder, so a warm
rebuild neither loads the model nor re-probes. The backend ``auto`` is OpenVINO where the ``openvino`` extra is
installed and the device is the CPU (``embedding_openvino``: about 3.5x torch fp32 at bf16, 1.3x at fp32), else
torch; ``openvino`` asked for on a machine without it falls back to torch, saying so in one line.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import platform
import sys
import tempfile
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

BACKENDS = ("auto", "torch", "openvino")
PRECISIONS = ("auto", "fp32", "bf16")
PROBE_FILE = Path(__file__).with_name("embedding_probe.json")
MEAN_COSINE, MIN_COSINE = 0.9999, 0.9995
BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


@dataclass(frozen=True)
class Choice:
    """The backend and precision a build encodes with, and why (recorded in the manifest)."""

    backend: str
    precision: str
    reason: str
    fallback: bool = False  # a weaker choice than asked for: said on stderr at every run


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty elsewhere, which makes ``auto`` stay at fp32."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return set()
    return next((set(line.split(":", 1)[1].split()) for line in lines if line.startswith("flags")), set())


def native_bf16(device: str) -> str | None:
    """Why ``device`` computes bfloat16 natively, or None where it would emulate it."""
    if device.startswith("cuda"):
        import torch

        return f"{torch.cuda.get_device_name(device)} supports bf16" if torch.cuda.is_bf16_supported() else None
    found = sorted(BF16_FLAGS & cpu_flags())
    return f"{' and '.join(found)} present" if found else None


def probe() -> tuple[list[str], str, np.ndarray]:
    """The probe texts, the model id their stored fp32 vectors belong to, and those vectors."""
    data = json.loads(PROBE_FILE.read_text())
    vectors = np.frombuffer(base64.b64decode(data["vectors_base64"]), dtype="<f4").reshape(data["shape"])
    return data["texts"], data["model"], vectors


def write_probe(texts: list[str], model_id: str, vectors: np.ndarray, path: Path = PROBE_FILE) -> None:
    vectors = np.asarray(vectors, dtype="<f4")
    data = {
        "about": "fp32 vectors of these texts by the bundled model (tests/benchmarks/make_embedding_probe.py)",
        "model": model_id,
        "texts": texts,
        "shape": list(vectors.shape),
        "vectors_base64": base64.b64encode(vectors.tobytes()).decode(),
    }
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


def probe_verdict(bf16: np.ndarray, fp32: np.ndarray, native: str) -> Choice:
    """bf16 where its probe vectors are within tolerance of fp32, else fp32 (a fallback, said)."""
    cosines = (bf16.astype(np.float64) * fp32).sum(axis=1) / (
        np.linalg.norm(bf16, axis=1) * np.linalg.norm(fp32, axis=1)
    )
    measured = f"probe cosine to fp32 mean {cosines.mean():.5f} min {cosines.min():.5f}"
    if cosines.mean() >= MEAN_COSINE and cosines.min() >= MIN_COSINE:
        return Choice("", "bf16", f"bf16: {native}, {measured}")
    return Choice("", "fp32", f"fp32: bf16 {measured}, under {MEAN_COSINE} / {MIN_COSINE}", fallback=True)


class ChoiceStore:
    """Decisions already taken on this machine, one small JSON file each, keyed by what they depend on."""

    def __init__(self, folder: Path):
        self.folder = folder

    def _path(self, settings: dict) -> Path:
        machine = {
            "host": platform.node(),
            "cpu_bf16": sorted(BF16_FLAGS & cpu_flags()),
            "torch": _version("torch"),
            "openvino": openvino_version(),
        }
        key = hashlib.sha256(json.dumps({**settings, **machine}, sort_keys=True).encode()).hexdigest()[:16]
        return self.folder / f"choice-{key}.json"

    def get(self, settings: dict) -> Choice | None:
        path = self._path(settings)
        return Choice(**json.loads(path.read_text())) if path.exists() else None

    def put(self, settings: dict, choice: Choice) -> None:
        path = self._path(settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as out:
            json.dump(asdict(choice), out)
        os.replace(tmp, path)


def say(choice: Choice) -> None:
    """One line on stderr for a fallback: the build goes on, slower or at the other precision."""
    if choice.fallback:
        print(f"coord-bench: embeddings: {choice.reason}", file=sys.stderr)


def openvino_version() -> str | None:
    """OpenVINO's version where it can be imported, else None (the ``openvino`` extra is not installed)."""
    try:
        found = importlib.util.find_spec("openvino") is not None
    except ValueError:  # a module left in sys.modules without a spec
        found = False
    return _version("openvino") if found else None


def _version(package: str) -> str | None:
    """An installed package's version without importing it (a warm rebuild never imports torch)."""
    try:
        return version(package)
    except PackageNotFoundError:
        return None
