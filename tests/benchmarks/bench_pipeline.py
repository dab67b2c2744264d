"""Benchmark of the annotation pipeline, run by hand (not a test). It prints ratios, not absolute claims:

1. pipeline embedding throughput over raw ``SentenceTransformer.encode`` throughput on the same unique texts;
2. a whole build (tokens, embeddings) with a cold embedding cache over the same build with the cache warm;
3. peak RSS of a build over a large synthetic corpus (default 20,000 conversations), in a subprocess.

    .venv/bin/python tests/benchmarks/bench_pipeline.py [--conversations 400] [--big 20000] [--annotate ...]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = [
    "agent",
    "plan",
    "vote",
    "answer",
    "model",
    "token",
    "turn",
    "debate",
    "consensus",
    "reason",
    "evidence",
    "claim",
    "task",
    "user",
    "reply",
    "question",
    "draft",
    "improve",
    "agree",
    "disagree",
    "solution",
    "memory",
    "relay",
    "report",
    "score",
    "final",
    "check",
]


def synthetic_arena(folder: Path, conversations: int, words_per_text: int, seed: int = 0) -> list[str]:
    """An arena-layout JSONL corpus of unique texts; returns the distinct texts it holds."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    texts = []
    with open(folder / "train.jsonl", "w") as out:
        for i in range(conversations):
            prompt, a, b = (f"{i}-{k} " + " ".join(rng.choices(WORDS, k=words_per_text)) for k in "pab")
            texts += [prompt, a, b]
            row = {
                "question_id": f"{i:032x}",
                "model_a": "m1",
                "model_b": "m2",
                "winner": rng.choice(["model_a", "model_b", "tie", "tie (bothbad)"]),
                "judge": f"u{i}",
                "conversation_a": [{"role": "user", "content": prompt}, {"role": "assistant", "content": a}],
                "conversation_b": [{"role": "user", "content": prompt}, {"role": "assistant", "content": b}],
                "turn": 1,
                "anony": True,
                "language": "English",
                "tstamp": 1.7e9 + i,
            }
            out.write(json.dumps(row) + "\n")
    return texts


def build(source: Path, out: Path, cache: Path, annotate: str) -> tuple[float, dict]:
    command = [
        sys.executable,
        "-m",
        "coord_bench.cli",
        "build",
        "--no-progress",
        "--sources",
        "chatbot_arena",
        "--source-dir",
        f"chatbot_arena={source}",
        "--out",
        str(out),
        "--annotate",
        annotate,
    ]
    start = time.perf_counter()
    subprocess.run(
        command,
        check=True,
        env={**__import__("os").environ, "COORD_BENCH_CACHE": str(cache)},
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start, json.loads((out / "build_manifest.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=400, help="corpus size for parts 1 and 2")
    parser.add_argument("--words", type=int, default=80, help="words per text (~arena mean of 500 chars)")
    parser.add_argument("--big", type=int, default=20000, help="conversations for the memory part (0: skip)")
    parser.add_argument("--annotate", default="latents", help="layers of the memory build (part 3)")
    args = parser.parse_args()
    from coord_bench.mappers.embeddings import Embedder

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        texts = synthetic_arena(tmp / "src", args.conversations, args.words)
        unique = sorted(set(texts))
        embedder = Embedder(cache_dir=tmp / "cache1", progress=False)
        embedder.model.encode(unique[:64])  # warm-up: load weights, first-call overheads
        start = time.perf_counter()
        embedder.model.encode(unique, batch_size=64, normalize_embeddings=True)
        raw_rate = len(unique) / (time.perf_counter() - start)
        start = time.perf_counter()
        encoded = embedder.ensure(unique)
        pipeline_rate = encoded / (time.perf_counter() - start)
        print(
            f"1. embedding: raw encode {raw_rate:.1f} texts/s, pipeline {pipeline_rate:.1f} texts/s, "
            f"ratio {pipeline_rate / raw_rate:.2f} (target >= 0.85) on {len(unique)} unique texts"
        )

        cold_s, cold = build(tmp / "src", tmp / "cold", tmp / "cache2", "tokens,embeddings")
        warm_s, warm = build(tmp / "src", tmp / "warm", tmp / "cache2", "tokens,embeddings")
        encoded_warm = warm["annotations"].get("embeddings", {}).get("texts_encoded")
        print(
            f"2. build cold {cold_s:.1f} s, warm {warm_s:.1f} s: warm is {cold_s / warm_s:.1f}x faster "
            f"(target >= 10x); texts encoded cold {cold['annotations'].get('embeddings', {}).get('texts_encoded')},"
            f" warm {encoded_warm}"
        )

        if args.big:
            synthetic_arena(tmp / "big", args.big, 12, seed=1)
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            big_s, big = build(tmp / "big", tmp / "bigout", tmp / "cache3", args.annotate)
            peak_mb = max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before) / 1024
            print(
                f"3. {args.big} conversations ({big['totals']['normalized']} built, {args.annotate}): "
                f"{big_s:.0f} s, peak RSS {peak_mb:.0f} MB (target < 2048 MB)"
            )


if __name__ == "__main__":
    main()
