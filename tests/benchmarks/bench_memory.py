"""Peak memory of a build on real-shaped records as the corpus grows, run by hand (not a test).

The records of ``../shared/realdata`` (arena rows, DEBATE hub rows of 0.2-4 MB, dialogue scenes) are
replicated in their raw layouts with fresh ids (a new arena ``question_id``, DEBATE ``exampleId``, a numbered
dialogue setting) to each corpus size, in the sources' mix. Every size is built in its own process with the
layers asked for; the script prints each build's peak RSS and the growth per 1,000 conversations between the
smallest and the largest size (targets of issue 16: peak < 1.5 GB at 5,000 conversations, growth < 50 MB per
1,000). Texts repeat across replicas: the smallest size encodes the shared texts (its peak includes encoding
their long batches), and every later size encodes only its new texts (the numbered dialogue settings), so each
loads the model. Growth is therefore measured from the second size on (from the first when only two are given).

    .venv/bin/python tests/benchmarks/bench_memory.py [--sizes 1000 3000 5000] [--annotate tokens,rules]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REAL = Path(__file__).resolve().parents[3] / "shared" / "realdata"
ROWS_PER_DEBATE_FILE = 100  # as on the Hub: one JSON array of 100 rows per config


def real_rows() -> dict[str, list]:
    arena = [json.loads(line) for line in (REAL / "chatbot_arena" / "train.jsonl").read_text().splitlines() if line]
    debate = [row for path in sorted((REAL / "debate" / "hub" / "data").glob("*/*.json"))
              for row in json.loads(path.read_text())]  # fmt: skip
    with gzip.open(REAL / "multi_character_dialogue" / "train.jsonl.gz", "rt") as handle:
        dialogue = [json.loads(line) for line in handle if line.strip()]
    return {"chatbot_arena": arena, "debate": debate, "multi_character_dialogue": dialogue}


def replicate(rows: dict[str, list], total: int, root: Path) -> dict[str, int]:
    """Write ``total`` conversations in the real mix of sources; return how many of each."""
    real_total = sum(len(r) for r in rows.values())
    counts = {name: max(1, round(total * len(r) / real_total)) for name, r in rows.items()}
    arena = root / "chatbot_arena"
    arena.mkdir(parents=True)
    with open(arena / "train.jsonl", "w") as handle:
        for i in range(counts["chatbot_arena"]):
            row = rows["chatbot_arena"][i % len(rows["chatbot_arena"])]
            handle.write(json.dumps({**row, "question_id": f"{row['question_id']}-r{i}"}) + "\n")
    data = root / "debate" / "data"
    for start in range(0, counts["debate"], ROWS_PER_DEBATE_FILE):
        folder = data / f"replica_{start // ROWS_PER_DEBATE_FILE:04d}"
        folder.mkdir(parents=True)
        chunk = []
        for i in range(start, min(start + ROWS_PER_DEBATE_FILE, counts["debate"])):
            row = rows["debate"][i % len(rows["debate"])]
            chunk.append({**row, "exampleId": f"{row['exampleId']}-r{i}"})
        (folder / f"{folder.name}.json").write_text(json.dumps(chunk))
    dialogue = root / "multi_character_dialogue"
    dialogue.mkdir(parents=True)
    with gzip.open(dialogue / "train.jsonl.gz", "wt") as handle:
        for i in range(counts["multi_character_dialogue"]):
            row = rows["multi_character_dialogue"][i % len(rows["multi_character_dialogue"])]
            handle.write(json.dumps({**row, "setting": f"{row['setting']} (scene {i})"}) + "\n")
    return counts


PEAK = """
import resource, sys
from coord_bench.cli import main
code = main(sys.argv[1:])
print("PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(code)
"""


def build(root: Path, out: Path, cache: Path, annotate: str) -> tuple[int, dict]:
    """Build the replicated corpus in a fresh process; return its peak RSS (kB) and the manifest."""
    args = ["build", "--no-progress", "--out", str(out), "--annotate", annotate, "--set", "output.report=false",
            "--set", f"annotations.judge.cache_dir={cache / 'judge'}"]  # fmt: skip
    for name in ("chatbot_arena", "debate", "multi_character_dialogue"):
        args += ["--source-dir", f"{name}={root / name}"]
    env = {"COORD_BENCH_CACHE": str(cache), "PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", PEAK, *args], capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"build failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    peak = int(next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("PEAK_KB")))
    return peak, json.loads((out / "build_manifest.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 5000])
    parser.add_argument("--annotate", default="tokens,embeddings,latents,rules")
    args = parser.parse_args()
    rows = real_rows()
    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = tmp / "cache"  # shared by every size: the embeddings of the repeated texts are computed once
        for size in sorted(args.sizes):
            counts = replicate(rows, size, tmp / f"in{size}")
            peak, manifest = build(tmp / f"in{size}", tmp / f"out{size}", cache, args.annotate)
            peaks[size] = peak / 1024
            latents = (manifest["annotations"].get("latents") or {}).get("quality", {}).get("memory")
            held = f"; latent arrays {latents['sequence_mb']} MB, spilled: {latents['spilled']}" if latents else ""
            print(f"{size} conversations {counts} -> {manifest['totals']['normalized']} built ({args.annotate}): "
                  f"peak RSS {peaks[size]:.0f} MB{held}")  # fmt: skip
    if len(peaks) > 1:
        sizes = sorted(peaks)
        low, high = (sizes[1] if len(sizes) > 2 else sizes[0]), sizes[-1]
        growth = (peaks[high] - peaks[low]) / ((high - low) / 1000)
        print(f"growth {growth:.1f} MB per 1,000 conversations ({low} -> {high}); target < 50 MB; "
              f"peak at {high}: {peaks[high]:.0f} MB, target < 1536 MB")  # fmt: skip


if __name__ == "__main__":
    main()
