"""The Ray engine on a local Ray instance (loopback, 2 CPUs): the same rows, rejects and counts as the local
engine, on the real records with every layer that works offline, and on a source with bad records in it."""

from __future__ import annotations

import gzip
import json
import os

# Ray on Linux binds the machine's own address, even for 127.0.0.1; without cluster support (read when ray
# is imported) a local instance stays on the loopback interface
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
import ray  # noqa: E402
import yaml  # noqa: E402
from mapping_examples import FIXTURES, example_recipe  # noqa: E402
from realdata import REAL, build_realdata  # noqa: E402

from coord_bench.cli import main  # noqa: E402

LAYERS = ["--annotate", "latents,rules", "--limit", "20"]  # latents and rules need tokens and embeddings
SMALL_FIT = ["--set", "annotations.latents.k=2", "--set", "annotations.latents.max_iter=5"]  # fewer fits to run


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    assert [node["NodeManagerAddress"] for node in ray.nodes()] == ["127.0.0.1"]
    yield
    ray.shutdown()


def shards(out):
    """Every Parquet shard's path and rows, in the order written."""
    return {p.relative_to(out).as_posix(): pq.read_table(p).to_pylist() for p in sorted(out.glob("*/*.parquet"))}


def manifest(out):
    return json.loads((out / "build_manifest.json").read_text())


@pytest.fixture(scope="module")
def both_engines(tmp_path_factory, local_ray):
    """The realdata build on each engine, each with a cache of its own: the Ray actors encode every text."""
    builds = {}
    for engine in ("local", "ray"):
        folder = tmp_path_factory.mktemp(engine)
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("COORD_BENCH_CACHE", str(folder / "cache"))
            builds[engine] = build_realdata(folder / "out", *LAYERS, *SMALL_FIT, "--engine", engine)
    return builds["local"], builds["ray"]


def test_the_ray_engine_writes_the_local_engines_rows(both_engines):
    local, on_ray = both_engines
    rows, ray_rows = shards(local), shards(on_ray)
    assert list(rows) == list(ray_rows)  # the same shards
    for name, records in rows.items():
        assert [(r["id"], r["provenance"]["content_hash"]) for r in ray_rows[name]] == [
            (r["id"], r["provenance"]["content_hash"]) for r in records
        ], name
        assert ray_rows[name] == records, name  # and every annotation, to the last bit of every latent state
    written = [r for name, records in rows.items() if name.startswith("all/") for r in records]
    assert {r["source"] for r in written} == {"chatbot_arena", "debate", "multi_character_dialogue"}
    assert all(r["annotations"]["token_usage"] and r["annotations"]["latents"] for r in written)
    assert all(r["annotations"]["coordination"]["rules"] for r in written)


def test_the_ray_engine_accounts_for_the_records_and_the_embeddings_as_the_local_one(both_engines):
    local, on_ray = both_engines
    built, ray_built = manifest(local), manifest(on_ray)
    assert ray_built["sources"] == built["sources"] and ray_built["totals"] == built["totals"]
    assert ray_built["configs"] == built["configs"]
    assert ray_built["annotations"] == built["annotations"]  # the same model, precision, texts encoded
    assert ray_built["annotations"]["embeddings"]["texts_encoded"] > 0
    assert (on_ray / "rejects.jsonl").read_text() == (local / "rejects.jsonl").read_text()


def dialogue_with_bad_records(folder):
    """The real dialogue rows with an unreadable line, a wrong type, a second copy of a row and a record
    the schema refuses inserted, then an empty file."""
    lines = gzip.decompress((REAL / "multi_character_dialogue" / "train.jsonl.gz").read_bytes()).decode().splitlines()
    broken = json.loads(lines[1])
    broken["conversation"] = "not a list"
    bad = [lines[0], '{"setting": "cut off', lines[1], "[1, 2]", lines[0], json.dumps(broken), *lines[2:]]
    folder.mkdir(parents=True)
    (folder / "a.jsonl").write_text("\n".join(bad) + "\n")
    (folder / "b.jsonl").write_text("")
    return folder


def test_bad_records_land_in_rejects_the_same_way_on_ray(tmp_path, local_ray, monkeypatch):
    monkeypatch.setenv("COORD_BENCH_CACHE", str(tmp_path / "cache"))
    source = dialogue_with_bad_records(tmp_path / "dialogue")
    outs = {}
    for engine in ("local", "ray"):
        outs[engine] = tmp_path / engine
        assert main(["build", "--no-progress", "--out", str(outs[engine]), "--sources", "multi_character_dialogue",
                     "--source-dir", f"multi_character_dialogue={source}", "--annotate", "tokens",
                     "--set", "output.report=false", "--engine", engine]) == 0  # fmt: skip
    rejects = [json.loads(line) for line in (outs["ray"] / "rejects.jsonl").read_text().splitlines()]
    assert [(r["locator"], r["kind"]) for r in rejects] == [
        ("a.jsonl#1", "unreadable"),
        ("a.jsonl#3", "wrong_type"),
        ("a.jsonl#4", "duplicate"),
        ("a.jsonl#5", "wrong_type"),
    ]
    assert rejects[3]["field"] == "conversation" and rejects[3]["raw"]["conversation"] == "not a list"
    assert (outs["ray"] / "rejects.jsonl").read_text() == (outs["local"] / "rejects.jsonl").read_text()
    entry = manifest(outs["ray"])["sources"]["multi_character_dialogue"]
    assert entry == manifest(outs["local"])["sources"]["multi_character_dialogue"]
    assert entry["read"] == len(rejects) + entry["normalized"] and entry["empty_files"] == ["b.jsonl"]
    assert shards(outs["ray"]) == shards(outs["local"])


def test_an_address_without_the_ray_engine_is_refused(capsys):
    assert main(["build", "--address", "127.0.0.1:6379", "--dry-run"]) == 2
    assert "--address names a Ray cluster: it goes with --engine ray" in capsys.readouterr().err


def test_repeats_numbered_across_files_get_the_local_engines_ids_on_ray(tmp_path, local_ray, monkeypatch):
    """``duplicate_ids: number`` counts repeats read before, in any file: Ray reads such a source in order."""
    monkeypatch.setenv("COORD_BENCH_CACHE", str(tmp_path / "cache"))
    lines = (FIXTURES / "trials" / "runs.jsonl").read_text().splitlines()
    folder = tmp_path / "runs"
    folder.mkdir()
    (folder / "a.jsonl").write_text(lines[0] + "\n")  # t1 once here, again in b.jsonl
    (folder / "b.jsonl").write_text("\n".join(lines[1:]) + "\n")
    recipe = example_recipe("trials")
    recipe["sources"][0]["location"] = {"path": str(folder)}
    ids, counts = {}, {}
    for engine in ("local", "ray"):
        recipe["output"] = {"dir": str(tmp_path / engine), "report": False}
        path = tmp_path / f"{engine}.yaml"
        path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
        assert main(["build", str(path), "--no-progress", "--engine", engine]) == 0
        ids[engine] = [r["source_id"] for rows in shards(tmp_path / engine).values() for r in rows]
        counts[engine] = manifest(tmp_path / engine)["sources"]["runs"]
    assert ids["ray"] == ids["local"] and "t1#2" in ids["ray"]
    assert counts["ray"] == counts["local"] and counts["ray"]["top_level_values"] == len(lines)
