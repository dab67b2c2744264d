"""Embedding backends on real texts, run by hand (not a test). It prints ratios, each measured in its own process:

1. per backend and precision available here (torch; OpenVINO where the extra is installed): speed over torch
   fp32 (median of ``--repeats`` runs, the processes interleaved), mean and min cosine to torch fp32, and the
   share of top-10 neighbours kept;
2. the pipeline (``Embedder.ensure`` with the default settings, cold cache) over the fastest raw backend;
3. a build of the real records (tokens, embeddings) with a cold embedding cache over the same build warm.

The texts are the distinct strings of two words or more in ../shared/realdata (messages, memories, prompts,
answers, settings), in a fixed order. Raw backends encode the same pieces as the pipeline (texts longer than
254 word pieces cut into windows), so part 2 measures the pipeline's own overhead.

    PYTHONPATH=. .venv/bin/python tests/benchmarks/bench_embeddings.py [--texts 1500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: where the real records are
from realdata import REAL, source_dir_args  # noqa: E402

REFERENCE = "torch fp32"
RAW = {  # name -> (backend, how the worker prepares the model)
    REFERENCE: ("torch", "fp32"),
    "torch bf16 weights": ("torch", "bf16"),
    "torch bf16 autocast": ("torch", "autocast"),
    "openvino fp32": ("openvino", "fp32"),  # measured where the openvino extra is installed
    "openvino bf16": ("openvino", "bf16"),
}
PIPELINE = "pipeline (default settings)"


def real_texts(limit: int) -> list[str]:
    """Distinct strings of two words or more found anywhere in the real records, ordered by their hash."""
    found: set[str] = set()

    def walk(value) -> None:
        if isinstance(value, str):
            if len(value.split()) >= 2:
                found.add(value)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for path in sorted(REAL.rglob("*")):
        if path.suffix == ".json":
            walk(json.loads(path.read_text()))
        elif path.name.endswith((".jsonl", ".jsonl.gz")):
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt") as lines:
                for line in lines:
                    walk(json.loads(line))
    return sorted(found, key=lambda t: hashlib.sha256(t.encode()).hexdigest())[:limit]


def worker(name: str, texts_file: Path, vectors_file: Path, batch_size: int) -> None:
    """One measurement in this fresh process: prints {"seconds": ...}, writes the vectors."""
    texts = json.loads(texts_file.read_text())
    from coord_bench.mappers.embeddings import Embedder, windows

    if name == PIPELINE:
        embedder = Embedder(cache_dir=vectors_file.parent / "pipeline-cache", batch_size=batch_size, progress=False)
        embedder.encode(texts[:32])  # warm-up: decide the precision, load weights, first-call overheads
        start = time.perf_counter()
        embedder.ensure(texts)
        seconds = time.perf_counter() - start
        vectors = embedder.vectors(texts)
        choice = f"{embedder.choice.backend} {embedder.choice.precision}"
        print(json.dumps({"seconds": seconds, "items": len(texts), "precision": choice}))
    else:
        import torch

        backend, mode = RAW[name]
        precision = "fp32" if mode == "autocast" else mode
        embedder = Embedder(progress=False, backend=backend, precision=precision, cache_dir=vectors_file.parent)
        model = embedder.model
        pieces, _, _ = windows(model.tokenizer, texts, model.max_seq_length - 2)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=mode == "autocast")

        def encode(items):
            with autocast:
                return model.encode(items, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)

        encode(pieces[:32])
        start = time.perf_counter()
        vectors = np.asarray(encode(pieces), dtype=np.float32)
        seconds = time.perf_counter() - start
        print(json.dumps({"seconds": seconds, "items": len(pieces)}))
    np.save(vectors_file, np.asarray(vectors, dtype=np.float32))


def measure(name: str, texts_file: Path, vectors_file: Path, batch_size: int) -> dict:
    command = [sys.executable, __file__, "--worker", name, "--texts-file", str(texts_file)]
    command += ["--vectors-file", str(vectors_file), "--batch-size", str(batch_size)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def agreement(vectors: np.ndarray, reference: np.ndarray, k: int = 10) -> tuple[float, float, float]:
    """Mean and min cosine to the reference, and the mean share of each item's top-k neighbours kept."""
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    reference = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    cosines = (vectors * reference).sum(axis=1)

    def neighbours(v: np.ndarray) -> np.ndarray:
        sims = v @ v.T
        np.fill_diagonal(sims, -np.inf)
        return np.argsort(-sims, axis=1)[:, :k]

    kept = [len(set(a) & set(b)) / k for a, b in zip(neighbours(vectors), neighbours(reference), strict=True)]
    return float(cosines.mean()), float(cosines.min()), float(np.mean(kept))


def build(out: Path, cache: Path) -> tuple[float, dict]:
    command = [sys.executable, "-m", "coord_bench.cli", "build", "--no-progress", "--out", str(out)]
    command += [*source_dir_args(), "--annotate", "tokens,embeddings", "--set", "output.report=false"]
    start = time.perf_counter()
    subprocess.run(command, check=True, env={**os.environ, "COORD_BENCH_CACHE": str(cache)}, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, json.loads((out / "build_manifest.json").read_text())


def cpu_summary() -> str:
    from coord_bench.mappers.embedding_backends import cpu_flags

    flags = cpu_flags()
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
    return f"{os.cpu_count()} cores; flags: {', '.join(f for f in wanted if f in flags) or 'none of ' + str(wanted)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=1500, help="distinct real texts at most")
    parser.add_argument("--repeats", type=int, default=3, help="runs per backend (median)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--no-build", action="store_true", help="skip part 3")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--texts-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--vectors-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.texts_file, args.vectors_file, args.batch_size)

    texts = real_texts(args.texts)
    print(f"{len(texts)} distinct real texts from {REAL}; {cpu_summary()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        texts_file = tmp / "texts.json"
        texts_file.write_text(json.dumps(texts))
        from coord_bench.mappers.embedding_backends import openvino_version

        raw = [name for name in RAW if RAW[name][0] != "openvino" or openvino_version()]
        names = [*raw, PIPELINE]
        runs: dict[str, list[dict]] = {name: [] for name in names}
        for repeat in range(args.repeats):  # interleaved: A B C, A B C, ... so drifts in load hit all alike
            for i, name in enumerate(names):
                vectors_file = tmp / f"{i}-{repeat}.npy"
                runs[name].append(measure(name, texts_file, vectors_file, args.batch_size))
                shutil.rmtree(tmp / "pipeline-cache", ignore_errors=True)  # the pipeline starts cold every time
        rate = {name: runs[name][0]["items"] / statistics.median(r["seconds"] for r in runs[name]) for name in names}
        reference = np.load(tmp / f"{names.index(REFERENCE)}-0.npy")
        print(f"\n1. backends ({runs[REFERENCE][0]['items']} pieces; median of {args.repeats}):")
        print(f"| backend | pieces/s | speed vs {REFERENCE} | mean cosine to fp32 | min cosine | top-10 kept |")
        print("|---|---|---|---|---|---|")
        for name in raw:
            mean, low, kept = agreement(np.load(tmp / f"{names.index(name)}-0.npy"), reference)
            ratio = rate[name] / rate[REFERENCE]
            print(f"| {name} | {rate[name]:.1f} | {ratio:.2f}x | {mean:.5f} | {low:.5f} | {100 * kept:.1f}% |")
        for name in sorted(set(RAW) - set(raw)):
            print(f"| {name} | not measured: pip install 'coord_bench[openvino]' |")
        print("| ONNX Runtime | not a backend of coord_bench: fp32 0.9x, int8 loses 5% of neighbours (issue 16) |")

        fastest = max(raw, key=rate.get)
        pipeline_rate = rate[PIPELINE] * runs[REFERENCE][0]["items"] / len(texts)  # in pieces/s, as the raw rates
        print(
            f"\n2. pipeline ({runs[PIPELINE][0]['precision']}) {pipeline_rate:.1f} pieces/s over the fastest raw "
            f"backend ({fastest}, {rate[fastest]:.1f}): {pipeline_rate / rate[fastest]:.2f} (target >= 0.9); over "
            f"{REFERENCE}: {pipeline_rate / rate[REFERENCE]:.2f}x (target >= 2.5x on a bf16-capable CPU)"
        )

        if not args.no_build:
            cold_s, cold = build(tmp / "cold", tmp / "build-cache")
            warm_s, warm = build(tmp / "warm", tmp / "build-cache")
            encoded = [m["annotations"]["embeddings"]["texts_encoded"] for m in (cold, warm)]
            print(
                f"\n3. real-records build (tokens, embeddings) cold {cold_s:.1f} s, warm {warm_s:.1f} s: warm is "
                f"{cold_s / warm_s:.1f}x faster; texts encoded cold {encoded[0]}, warm {encoded[1]}"
            )


if __name__ == "__main__":
    main()
