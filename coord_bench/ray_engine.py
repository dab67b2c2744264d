"""The Ray engine (``coord-bench build --engine ray``): the per-record work on a Ray cluster, the rest on the driver.

Ray Data reads the sources a file at a time (``map_batches`` over the files, an actor pool of CPU workers):
each worker normalizes and schema-checks its file's records and applies the per-record layers
(``Layer.per_record``: tokens). The driver takes the outcomes in reading order (Ray Data keeps it) and does
what needs the whole corpus exactly as the local engine does (``build._normalize_into``: the limit, duplicate
ids, filters, rejects and counts), then stages the records. The embeddings are planned on the driver in the
batches the local engine would encode (``embeddings.text_chunks``, ``Embedder.plan``: a vector depends on its
batch) and encoded by an actor pool (one actor per GPU where the cluster has GPUs, else one per as many CPUs
as torch uses on the driver: a vector also depends on the thread count) that writes them into the shared
content cache; the layers' corpus passes (the latent fit, the judge's sample), pass 2 and the writer then run
on the driver as in the local engine, finding every vector cached. So both engines write the same rows in the
same order (on the same kind of device). Ray is imported only here. Across machines the cache folder
($COORD_BENCH_CACHE), the source files and the output folder must be on a filesystem every node sees, with
coord_bench installed on every node.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import pickle
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.data

from coord_bench.build import Outcome, SourcesInput, outcome_of
from coord_bench.mappers.embedding_backends import Choice
from coord_bench.mappers.embeddings import Embedder, EmbeddingsMapper, Planned, text_chunks
from coord_bench.mappers.layer import Layer, LayerContext
from coord_bench.plan import BuildPlan
from coord_bench.resources import default_cache_dir
from coord_bench.sources import SourceSpec, adapter_class
from coord_bench.staging import AnnotatedView, StagedCorpus

OUTCOMES_PER_BLOCK = 64  # records a read worker hands back at a time (DEBATE rows are megabytes)
WINDOW_CHARS = 64 * 2**20  # text planned for encoding before a Ray job encodes it: bounds the driver's memory


def on_ray(address: str | None = None) -> Callable[[BuildPlan, list[Layer]], RaySourcesInput]:
    """The engine of ``build.run_build`` that runs pass 1 on the Ray cluster at ``address`` (None: a local one)."""
    return lambda plan, layers: RaySourcesInput(plan, layers, address)


class RaySourcesInput(SourcesInput):
    """Pass 1 of a build from sources on a Ray cluster (see the module docstring); the manifest is the local
    engine's."""

    def __init__(self, plan: BuildPlan, layers: list[Layer], address: str | None = None):
        super().__init__(plan)
        self.address = address
        self.per_record = [(layer.name, plan.annotations.get(layer.name) or {}) for layer in layers if layer.per_record]
        self.applied = frozenset(name for name, _ in self.per_record)
        self.embeddings = next((layer for layer in layers if isinstance(layer, EmbeddingsMapper)), None)
        self._groups: Iterator | None = None
        self._head: tuple[int, Iterator] | None = None

    def stage(self, corpus: StagedCorpus, work_dir: Path, progress: bool) -> None:
        with ray_session(self.address, progress):
            read = self._read()
            self._groups = itertools.groupby(read, key=lambda pair: pair[0])
            self._head = next(self._groups, None)
            try:
                super().stage(corpus, work_dir, progress)
            finally:
                read.close()  # the limit may leave files unread: their workers stop and free their CPUs
            if self.embeddings is not None:
                corpus.close_writing()
                self._embed(corpus)

    def outcomes(self, adapter: Any) -> Iterator[Outcome]:
        """``adapter``'s outcomes from the Ray workers; the sources come in the order of ``self.adapters``."""
        index = self.adapters.index(adapter)
        while self._head is not None and self._head[0] < index:  # a source the limit stopped early
            self._head = next(self._groups, None)
        if self._head is not None and self._head[0] == index:
            for _, outcome in self._head[1]:
                if isinstance(outcome, ValuesRead):  # counted where the driver reads on, as the local engine does
                    adapter.count_values(outcome.counts)
                    continue
                if outcome.file_values is not None:
                    adapter.count_values({outcome.file: outcome.file_values})
                yield outcome

    def _read(self) -> Iterator[tuple[int, Outcome | ValuesRead]]:
        shards = []
        for i, a in enumerate(self.adapters):
            if a.reads_in_order:  # one shard of every file ("" below), read in order by one worker
                shards.append({"source": i, "file": ""})
            else:
                files = (path.relative_to(a.spec.root).as_posix() for path in self.inputs[a.spec.name])
                shards += [{"source": i, "file": file} for file in files]
        workers = max(1, min(len(shards), int(ray.cluster_resources().get("CPU", 1))))
        rows = ray.data.from_items(shards, override_num_blocks=len(shards)).map_batches(
            ReadShards,
            fn_constructor_args=([a.spec for a in self.adapters], self.per_record),
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=1,
            runtime_env=_runtime_env(),
        )
        for row in rows.iter_rows():
            outcome = pickle.loads(row["outcome"])
            if isinstance(outcome, Exception):  # where the local engine would have stopped, with its error
                raise outcome
            yield int(row["source"]), outcome

    def _embed(self, corpus: StagedCorpus) -> None:
        """Encode every text the embeddings layer will ask for, in its batches, WINDOW_CHARS of text a job."""
        embedder = self.embeddings.embedder
        window: list[Planned] = []
        pending: set[str] = set()
        chars = 0
        for texts in text_chunks(AnnotatedView(corpus, EmbeddingsMapper.reads, [])):
            for batch, new in embedder.plan(texts, pending):
                window.append((batch, new))
                pending |= new
                chars += sum(len(text) for _, text in batch)
            if chars >= WINDOW_CHARS:
                self._encode(window)
                window, pending, chars = [], set(), 0
        if window:
            self._encode(window)

    def _encode(self, window: list[Planned]) -> None:
        """One Ray job: the window's batches encoded by a pool of actors, one per GPU, or else one per as many
        CPUs as torch would use here: at bf16 a long text's vector depends on torch's thread count, so the
        actors use the local engine's, and write its vectors."""
        import torch

        embedder = self.embeddings.embedder
        settings = {**dataclasses.asdict(self.embeddings.config), "cache_dir": embedder.cache_root.parent}
        gpus = int(ray.cluster_resources().get("GPU", 0))
        node_cpus = max(int(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node["Alive"])
        threads = max(1, min(torch.get_num_threads(), node_cpus))
        actors = gpus or max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
        rows = [{"batch": pickle.dumps(item)} for item in window]
        stored = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
            EncodeBatches,
            fn_constructor_args=(settings, embedder.resolve(), threads),
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=min(actors, len(rows))),
            num_cpus=1 if gpus else threads,
            num_gpus=1 if gpus else 0,
            runtime_env=_runtime_env(),
        )
        expected, got, devices = sum(len(new) for _, new in window), 0, set()
        for row in stored.iter_rows():
            got += int(row["stored"])
            devices.add(str(row["device"]))
        if got != expected:
            raise RuntimeError(f"the Ray embedding actors stored {got} vectors, {expected} were planned")
        embedder.device = ", ".join(sorted(devices))  # where the vectors were encoded, for the manifest


@dataclasses.dataclass(frozen=True)
class ValuesRead:
    """The last item of a shard's outcomes: the top-level values its worker read per file (the manifest's
    ``top_level_values``, counted on the driver as the local engine counts them)."""

    counts: dict[str, int]


class ReadShards:
    """A Ray Data worker: the outcomes of the records of whole files, the per-record layers applied."""

    def __init__(self, specs: list[SourceSpec], per_record: list[tuple[str, dict[str, Any]]]):
        from coord_bench.mappers.registry import LAYERS

        self.specs = specs
        context = LayerContext(progress=False)
        self.layers = [LAYERS[name].from_params(params, context) for name, params in per_record]

    def __call__(self, shard: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        """The file's outcomes a block at a time; an error that stops reading it goes to the driver as data,
        after the outcomes before it, to be raised there as it is (Ray would wrap it in its own)."""
        for source, file in zip(shard["source"], shard["file"], strict=True):
            spec = self.specs[int(source)]
            adapter = adapter_class(spec.adapter)(spec)  # fresh: no state from the shards this worker read before
            raws = adapter.raw_records(spec.root / str(file)) if file else adapter.iter_raw()
            outcomes: list[Outcome] = []
            try:
                for raw in raws:
                    outcome = outcome_of(adapter, raw).detached()
                    outcome.file_values = adapter.values_read().get(raw.file)  # as the local engine counts it
                    outcomes.append(outcome)
                    if len(outcomes) == OUTCOMES_PER_BLOCK:
                        yield self._block(int(source), self._applied(outcomes))
                        outcomes = []
                outcomes = self._applied(outcomes)
            except Exception as err:
                yield self._block(int(source), [*outcomes, _picklable(err)])
                return
            yield self._block(int(source), [*outcomes, ValuesRead(adapter.values_read())])

    def _applied(self, outcomes: list[Outcome]) -> list[Outcome]:
        records = [outcome.record for outcome in outcomes if outcome.record is not None]
        for layer in self.layers:
            layer.apply(records)
        return outcomes

    @staticmethod
    def _block(source: int, items: list[Outcome | Exception]) -> dict[str, np.ndarray]:
        blobs = np.empty(len(items), dtype=object)
        blobs[:] = [pickle.dumps(item) for item in items]
        return {"source": np.full(len(items), source), "outcome": blobs}


class EncodeBatches:
    """A Ray Data actor: the driver's embedder settings and choice of backend and precision, its own model;
    encodes planned batches whole and commits their new keys to the shared cache."""

    def __init__(self, settings: dict[str, Any], choice: Choice, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.embedder = Embedder(**settings, progress=False)
        self.embedder.choice = choice  # decided once, on the driver: every actor encodes at that precision

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        stored = []
        for blob in rows["batch"]:
            batch, new = pickle.loads(blob)
            self.embedder.store(batch, new)
            stored.append(len(new))
        return {"stored": np.array(stored), "device": np.array([self.embedder.device] * len(stored))}


@contextmanager
def ray_session(address: str | None, progress: bool) -> Iterator[None]:
    """Ray as the caller left it when it is already initialized, else connected to ``address`` (or a local
    instance when None) for the build's pass 1, then shut down; Ray Data set to keep the reading order
    meanwhile."""
    context = ray.data.DataContext.get_current()
    before = context.execution_options.preserve_order, context.enable_progress_bars
    context.execution_options.preserve_order = True  # the driver accounts for the records in reading order
    context.enable_progress_bars = progress
    logging.getLogger("ray.data").setLevel(logging.INFO if progress else logging.WARNING)
    started = not ray.is_initialized()
    if started:
        local = {"include_dashboard": False} if address is None else {}
        ray.init(address=address, configure_logging=False, log_to_driver=progress, **local)
    try:
        yield
    finally:
        context.execution_options.preserve_order, context.enable_progress_bars = before
        if started:
            ray.shutdown()


def _picklable(err: Exception) -> Exception:
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}")


def _runtime_env() -> dict[str, Any]:
    """The workers use the driver's cache folder (the tokenizer file, the embeddings)."""
    return {"env_vars": {"COORD_BENCH_CACHE": str(default_cache_dir())}}
