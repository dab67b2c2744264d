"""Fitted models as versioned, hashed artifacts: <path>.npz (float arrays, no pickle) + <path>.json (metadata).

The hash (sha256 over the arrays in name order, with their dtype and shape, then the canonical JSON) names the
model content, not the file bytes: it is stored in every annotated row, and `load` refuses a pair whose content
no longer matches the hash recorded next to it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

ARTIFACT_VERSION = 1


def canonical_json(meta: dict[str, Any]) -> str:
    return json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def content_hash(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    digest.update(canonical_json(meta).encode())
    return digest.hexdigest()


def write(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> str:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = content_hash(arrays, meta)
    np.savez(f"{path}.npz", **arrays)
    Path(f"{path}.json").write_text(json.dumps({**meta, "sha256": digest}, sort_keys=True, indent=2) + "\n")
    return digest


def read(path: Path, method: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    meta = json.loads(Path(f"{path}.json").read_text())
    recorded = meta.pop("sha256", None)
    if meta.get("method") != method:
        raise ValueError(f"{path}.json holds method {meta.get('method')!r}, expected {method!r}")
    if meta.get("version") != ARTIFACT_VERSION:
        raise ValueError(f"{path}.json: artifact version {meta.get('version')!r}, this code reads {ARTIFACT_VERSION}")
    with np.load(f"{path}.npz", allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    if content_hash(arrays, meta) != recorded:
        raise ValueError(f"{path}: content does not match its recorded sha256 (edited or mismatched files)")
    return arrays, meta


class ArtifactModel:
    """Save/load/hash for a model whose state is `PARAMS` (float arrays) + config, dims and fit history."""

    method: str
    PARAMS: tuple[str, ...]

    def _metadata(self) -> dict[str, Any]:
        raise NotImplementedError

    def _restore(self, meta: dict[str, Any]) -> None:
        raise NotImplementedError

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if getattr(self, self.PARAMS[0], None) is None:
            raise RuntimeError(f"{type(self).__name__}: fit or load the model first")
        arrays = {name: np.asarray(getattr(self, name), dtype=np.float64) for name in self.PARAMS}
        return arrays, {"method": self.method, "version": ARTIFACT_VERSION, **self._metadata()}

    @property
    def model_hash(self) -> str:
        return content_hash(*self._state())

    def save(self, path: Path) -> str:
        """Write <path>.npz and <path>.json; return the content sha256."""
        return write(path, *self._state())

    @classmethod
    def load(cls, path: Path):
        arrays, meta = read(path, cls.method)
        missing = set(cls.PARAMS) - set(arrays)
        if missing:
            raise ValueError(f"{path}.npz lacks {sorted(missing)}")
        model = cls.__new__(cls)
        for name in cls.PARAMS:
            setattr(model, name, arrays[name])
        model._restore(meta)
        return model
