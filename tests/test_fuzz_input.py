"""Seeded fuzzing of the real records: every mutated record is exactly one reject, no input crashes the build.

Copies of the three real layouts get 60 records mutated (truncation, a required field of the wrong type, a byte
that breaks UTF-8 or a NUL inside a string, a value nested 100,000 levels deep, a NaN or Infinity literal).
Each mutation is chosen so that it necessarily invalidates its record and nothing else.
"""

from __future__ import annotations

import gzip
import json
import random
import shutil
import subprocess
import sys

from realdata import REAL

SEED = 18
MUTATIONS = 60
DEEP = "[" * 100_000 + "]" * 100_000
WRONG_TYPE = {  # a required field of each source and a value of the wrong type for it
    "chatbot_arena": [("winner", 3), ("question_id", [1]), ("conversation_a", "text"), ("model_a", {})],
    "debate": [("exampleId", 5), ("globalMemory", "text"), ("personas", {"a": 1})],
    "multi_character_dialogue": [("setting", 7), ("characters", 5), ("conversation", 3.5)],
}
NUMBER_FIELD = {"chatbot_arena": "tstamp", "debate": "persona_diversity", "multi_character_dialogue": "setting"}


def mutate(record: dict, source: str, rng: random.Random) -> tuple[str, bytes]:
    """(what was done, the record's new bytes)."""
    kind = rng.choice(["truncate", "wrong_type", "bad_byte", "nul", "deep", "non_finite"])
    if kind == "wrong_type":
        key, value = rng.choice(WRONG_TYPE[source])
        return kind, json.dumps({**record, key: value}).encode()
    if kind == "deep":
        return kind, json.dumps({**record, "deep": "@DEEP@"}).replace('"@DEEP@"', DEEP).encode()
    if kind == "non_finite":
        return kind, json.dumps({**record, NUMBER_FIELD[source]: rng.choice([float("nan"), float("inf")])}).encode()
    text = json.dumps(record).encode()
    if kind == "truncate":  # an object cut before its closing brace is never valid JSON
        return kind, text[: rng.randrange(1, len(text) - 1)]
    # inside the first key's quotes: an invalid UTF-8 byte, or a raw control character, which JSON forbids
    return kind, text[:2] + (b"\xff" if kind == "bad_byte" else b"\x00") + text[2:]


def test_fuzzed_real_records_are_each_one_reject(tmp_path):
    rng = random.Random(SEED)
    arena = [json.loads(line) for line in (REAL / "chatbot_arena" / "train.jsonl").read_text().splitlines()]
    with gzip.open(REAL / "multi_character_dialogue" / "train.jsonl.gz", "rt") as handle:
        dialogue = [json.loads(line) for line in handle if line.strip()]
    debate_files = sorted(p.relative_to(REAL / "debate").as_posix() for p in (REAL / "debate").rglob("*.json"))
    debate = {}
    for name in debate_files:
        value = json.loads((REAL / "debate" / name).read_text())
        debate[name] = value if isinstance(value, list) else [value]
    assert all(len(rows) == 1 for rows in debate.values())  # so a truncated file costs exactly its record
    # every record, by its locator
    everything = (
        [("chatbot_arena", f"train.jsonl#{i}", r) for i, r in enumerate(arena)]
        + [("debate", f"{name}#0", rows[0]) for name, rows in debate.items()]
        + [("multi_character_dialogue", f"train.jsonl.gz#{i}", r) for i, r in enumerate(dialogue)]
    )
    chosen = rng.sample(range(len(everything)), MUTATIONS)
    mutated = {}  # locator -> (source, what, bytes)
    for i in chosen:
        source, locator, record = everything[i]
        what, data = mutate(record, source, rng)
        mutated[locator] = (source, what, data)

    def line(locator, record):
        return mutated[locator][2] if locator in mutated else json.dumps(record).encode()

    (tmp_path / "arena").mkdir()
    (tmp_path / "arena" / "train.jsonl").write_bytes(
        b"\n".join(line(f"train.jsonl#{i}", r) for i, r in enumerate(arena)) + b"\n"
    )
    (tmp_path / "dialogue").mkdir()
    with gzip.open(tmp_path / "dialogue" / "train.jsonl.gz", "wb") as handle:
        handle.write(b"\n".join(line(f"train.jsonl.gz#{i}", r) for i, r in enumerate(dialogue)) + b"\n")
    for name in debate:
        target = tmp_path / "debate" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if f"{name}#0" in mutated:
            target.write_bytes(b"[" + mutated[f"{name}#0"][2] + b"]")
        else:
            shutil.copy(REAL / "debate" / name, target)

    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "coord_bench.cli", "build", "--no-progress", "--out", str(out),
         "--source-dir", f"chatbot_arena={tmp_path / 'arena'}", "--source-dir", f"debate={tmp_path / 'debate'}",
         "--source-dir", f"multi_character_dialogue={tmp_path / 'dialogue'}"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    manifest = json.loads((out / "build_manifest.json").read_text())
    rejects = [json.loads(r) for r in (out / "rejects.jsonl").read_text().splitlines()]
    for name, count in (("chatbot_arena", len(arena)), ("debate", len(debate)), ("multi_character_dialogue", 9)):
        source = manifest["sources"][name]
        assert source["read"] == count == source["normalized"] + source["rejected"] + source["filtered"], name
    assert len(rejects) == MUTATIONS == manifest["totals"]["rejected"]
    assert {(r["source"], r["locator"]) for r in rejects} == {(s, loc) for loc, (s, _, _) in mutated.items()}
    assert all(r["reason"] for r in rejects)
    kinds = {what for _, what, _ in mutated.values()}
    assert kinds == {"truncate", "wrong_type", "bad_byte", "nul", "deep", "non_finite"}  # the seed covers all
