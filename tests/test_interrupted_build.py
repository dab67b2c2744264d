"""A build killed with SIGKILL at any point reruns in place with the same result, and never costs the last build.

Each test runs the real CLI in a subprocess on the real arena records (tokens, embeddings and the latent model,
cold caches) and kills it at one point of the build. The point is found by watching what the build writes:
the staging folder's marker, the rows of the embedding cache, the shard files. While it looks, the test holds
the build with SIGSTOP, so what it sees is still true when SIGKILL lands.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
from realdata import REAL

from coord_bench.cli import main
from coord_bench.folder_swap import MARKER_FILE, staging_path

FLAGS = ["--sources", "chatbot_arena", "--source-dir", f"chatbot_arena={REAL / 'chatbot_arena'}",
         "--annotate", "tokens,embeddings,latents"]
WAIT_S = 180  # bound on any one build


def build_command(out: Path) -> list[str]:
    return [sys.executable, "-m", "coord_bench.cli", "build", "--no-progress", "--out", str(out), *FLAGS]


def run_build(out: Path, cache: Path) -> str:
    """An uninterrupted build in a subprocess; its console output."""
    done = subprocess.run(build_command(out), env=_env(cache), capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def kill_when(out: Path, cache: Path, condition) -> None:
    """Start a build and SIGKILL it at the first moment ``condition()`` holds (checked with the build stopped)."""
    proc = subprocess.Popen(build_command(out), env=_env(cache), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + WAIT_S
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the build ended (exit {proc.returncode}) before the kill point: "
                            f"{proc.stderr.read().decode()[-2000:]}")
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                if condition():
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=30)
                    return
            finally:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGCONT)
            time.sleep(0.005)
        pytest.fail("the kill point was not reached in time")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "COORD_BENCH_CACHE": str(cache), "TOKENIZERS_PARALLELISM": "false"}


def cached_embeddings(cache: Path) -> int:
    """Committed rows of the embedding cache (0 before it exists); -1 while a commit holds it locked."""
    files = list((cache / "embeddings").glob("*.sqlite"))
    if not files:
        return 0
    try:
        db = sqlite3.connect(f"file:{files[0]}?mode=ro", uri=True, timeout=0)
        try:
            return db.execute("SELECT count(*) FROM vectors").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return -1


def shards_being_written(out: Path) -> bool:
    staging = staging_path(out)  # the config folders, not .staging (the corpus between the two passes)
    shards = [p for config in ("all", "chatbot_arena") for p in (staging / config).glob("*.parquet")]
    return bool(shards) and not (staging / "build_manifest.json").exists()


def rows(out: Path) -> dict[str, tuple[str, str]]:
    """id -> (content hash, annotations) of every row of the build's 'all' config."""
    found = {}
    for shard in sorted((out / "all").glob("*.parquet")):
        for row in pq.read_table(shard).to_pylist():
            found[row["id"]] = (row["provenance"]["content_hash"], json.dumps(row["annotations"], sort_keys=True))
    return found


def latent_hash(out: Path) -> str:
    return json.loads((out / "build_manifest.json").read_text())["annotations"]["latents"]["model_hash"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted build from a cold cache: what every interrupted build must end up equal to."""
    root = tmp_path_factory.mktemp("reference")
    run_build(root / "out", root / "cache")
    manifest = json.loads((root / "out" / "build_manifest.json").read_text())
    return {"out": root / "out", "texts": manifest["annotations"]["embeddings"]["distinct_texts"]}


def assert_same_build(out: Path, reference: dict) -> None:
    assert rows(out) == rows(reference["out"])
    assert latent_hash(out) == latent_hash(reference["out"])
    assert not staging_path(out).exists()
    assert main(["validate", str(out)]) == 0


@pytest.mark.parametrize("point", ["before embedding", "during embedding", "after embedding", "during shard write"])
def test_a_killed_build_reruns_to_the_same_result(tmp_path, reference, point, capsys):
    out, cache = tmp_path / "out", tmp_path / "cache"
    condition = {
        "before embedding": lambda: (staging_path(out) / MARKER_FILE).exists(),
        "during embedding": lambda: cached_embeddings(cache) > 0,
        "after embedding": lambda: cached_embeddings(cache) == reference["texts"],
        "during shard write": lambda: shards_being_written(out),
    }[point]
    kill_when(out, cache, condition)
    assert not out.exists()  # nothing at the output path until a build is complete
    assert (staging_path(out) / MARKER_FILE).exists()
    kept = cached_embeddings(cache)
    if point == "before embedding":
        assert kept == 0
    elif point == "during embedding":
        assert 0 < kept < reference["texts"]
    else:
        assert kept == reference["texts"]

    console = run_build(out, cache)
    assert f"removed the unfinished build of an interrupted run ({staging_path(out)})" in console
    assert f"embeddings: reused {kept} cached, encoded {reference['texts'] - kept}" in console
    assert_same_build(out, reference)  # the same rows, annotations and latent model hash


@pytest.mark.parametrize("point", ["during embedding", "during shard write"])
def test_a_killed_rebuild_keeps_the_previous_build(tmp_path, reference, point):
    out, cache = tmp_path / "out", tmp_path / "cache"
    shutil.copytree(reference["out"], out)  # a finished earlier build
    (out / "notes.txt").write_text("the user's own file")
    before = (out / "build_manifest.json").read_bytes()
    condition = {"during embedding": lambda: cached_embeddings(cache) > 0,
                 "during shard write": lambda: shards_being_written(out)}[point]
    kill_when(out, cache, condition)

    assert (out / "build_manifest.json").read_bytes() == before
    assert main(["validate", str(out)]) == 0
    loaded = datasets.load_dataset(str(out), "all", cache_dir=str(tmp_path / "hf"))
    assert sorted(r["id"] for split in loaded.values() for r in split) == sorted(rows(reference["out"]))

    run_build(out, cache)
    assert_same_build(out, reference)
    assert (out / "notes.txt").read_text() == "the user's own file"  # a rebuild replaces only the build


def test_a_build_killed_between_the_two_renames_gets_the_previous_build_back(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["build", "--no-progress", "--out", str(out), "--sources", "debate"]) == 0
    before = (out / "build_manifest.json").read_text()
    out.rename(tmp_path / ".out.old")  # the first rename of the swap happened, the second did not
    (tmp_path / ".out.partial").mkdir()
    (tmp_path / ".out.partial" / MARKER_FILE).write_text("{}")
    assert main(["build", "--no-progress", "--out", str(out), "--sources", "debate"]) == 0
    console = capsys.readouterr().out
    assert f"restored the previous build at {out}" in console
    assert not (tmp_path / ".out.old").exists() and not (tmp_path / ".out.partial").exists()
    after = json.loads((out / "build_manifest.json").read_text())
    assert after["totals"] == json.loads(before)["totals"]


def test_a_staging_folder_that_is_not_ours_is_left_alone(tmp_path, capsys):
    (tmp_path / ".out.partial").mkdir()
    (tmp_path / ".out.partial" / "data.txt").write_text("someone else's")
    assert main(["build", "--no-progress", "--out", str(tmp_path / "out"), "--sources", "debate"]) == 2
    assert "was not made by coord_bench" in capsys.readouterr().err
    assert (tmp_path / ".out.partial" / "data.txt").read_text() == "someone else's"
