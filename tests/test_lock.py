"""Recipe locks on the loopback Hub: the first build locks, later builds reuse, --locked catches drift,
--update-lock moves the lock, and a damaged cache or lock is a clear error."""

import hashlib
import json
import shutil

import yaml
from realdata import REAL

from coord_bench.cli import main
from coord_bench.lock import lock_path
from coord_bench.resources import resource_path

REPO = "Multi-Agent-LLMs/DEBATE"
CONFIG = "reasoning_nopersona_relay_simple_voting"
FILE = f"data/{CONFIG}/{CONFIG}.json"


def write_recipe(folder, revision="main"):
    """A recipe with one Hub source that keeps `revision` as it is, as a maintainer would write it."""
    folder.mkdir(exist_ok=True)
    recipe = {
        "name": "locked",
        "sources": [
            {
                "name": "debate",
                "location": {"hub": REPO, "revision": revision},
                "filters": {"configs": ["reasoning_*"]},
            }
        ],
        "output": {"dir": str(folder / "out")},
    }
    path = folder / "locked.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def build(recipe, *flags):
    return main(["build", str(recipe), "--no-progress", "--annotate", "none", *flags])


def built(recipe):
    """The revision the build read and its record count, from the manifest."""
    source = json.loads((recipe.parent / "out" / "build_manifest.json").read_text())["sources"]["debate"]
    return source["revision"], source["read"]


def read_lock(recipe):
    return json.loads(lock_path(recipe).read_text())


def move_head(hub_server, tmp_path, revision="main"):
    """Push a second commit onto `revision`: the CONFIG file gains one more debate (a copy under a new id)."""
    rows = json.loads((REAL / "debate" / "hub" / FILE).read_text())
    rows.append({**rows[0], "exampleId": "00000000-0000-4000-8000-000000000001"})
    folder = tmp_path / "v2"
    (folder / "data" / CONFIG).mkdir(parents=True)
    (folder / FILE).write_text(json.dumps(rows))
    return hub_server.add_dataset_repo(REPO, folder, revision=revision)


def test_first_build_writes_the_lock_and_later_builds_read_the_locked_commit(hub_server, tmp_path, capsys):
    v1 = hub_server.add_dataset_repo(REPO, REAL / "debate" / "hub")
    recipe = write_recipe(tmp_path / "r")
    assert build(recipe) == 0
    assert f"debate: locked {REPO}@main at {v1}" in capsys.readouterr().out

    lock = read_lock(recipe)
    assert lock_path(recipe) == recipe.parent / "locked.lock.json"
    [(name, entry)] = lock["sources"].items()
    assert name == "debate" and entry["repo"] == REPO and entry["revision"] == "main" and entry["commit"] == v1
    served = {p: d for p, d in hub_server.files(REPO).items() if p.startswith("data/reasoning_")}
    assert len(served) == 3
    assert entry["files"] == [
        {"path": p, "bytes": len(d), "sha256": hashlib.sha256(d).hexdigest()} for p, d in sorted(served.items())
    ]
    assert built(recipe) == (v1, 3)
    assert yaml.safe_load(recipe.read_text())["sources"][0]["location"]["revision"] == "main"  # recipe untouched

    # The head moves; a plain rebuild reads the locked commit from the cache without asking the Hub.
    v2 = move_head(hub_server, tmp_path)
    asked = len(hub_server.requests)
    assert build(recipe) == 0
    assert f"debate: {REPO}@main read at the locked commit {v1}" in capsys.readouterr().out
    assert hub_server.requests[asked:] == []
    assert built(recipe) == (v1, 3) and read_lock(recipe) == lock

    # On a machine without the cache, the locked commit is downloaded, not the new head.
    shutil.rmtree(tmp_path / "hf_home" / "hub")
    assert build(recipe) == 0
    assert built(recipe) == (v1, 3) and read_lock(recipe) == lock
    assert v2 not in "".join(path for _, path in hub_server.requests[asked:])


def test_locked_fails_without_a_lock_and_downloads_nothing(hub_server, tmp_path, capsys):
    hub_server.add_dataset_repo(REPO, REAL / "debate" / "hub")
    recipe = write_recipe(tmp_path / "r")
    asked = len(hub_server.requests)
    assert build(recipe, "--locked") == 2
    err = capsys.readouterr().err
    assert f"--locked: no lock file {lock_path(recipe)} yet" in err and "Traceback" not in err
    assert hub_server.requests[asked:] == [] and not lock_path(recipe).exists()


def test_locked_detects_drift_and_update_lock_moves_the_lock(hub_server, tmp_path, capsys):
    v1 = hub_server.add_dataset_repo(REPO, REAL / "debate" / "hub")
    recipe = write_recipe(tmp_path / "r")
    assert build(recipe) == 0
    assert build(recipe, "--locked") == 0  # the head has not moved
    assert built(recipe) == (v1, 3)

    v2 = move_head(hub_server, tmp_path)
    capsys.readouterr()
    assert build(recipe, "--locked") == 2
    err = capsys.readouterr().err
    assert f"{REPO}@main (source 'debate') has moved on the Hub from the locked commit {v1} to {v2}" in err
    assert "--update-lock" in err
    assert read_lock(recipe)["sources"]["debate"]["commit"] == v1

    assert build(recipe, "--update-lock") == 0
    assert f"debate: locked {REPO}@main at {v2} (was {v1})" in capsys.readouterr().out
    entry = read_lock(recipe)["sources"]["debate"]
    assert entry["commit"] == v2
    changed = next(f for f in entry["files"] if f["path"] == FILE)
    assert changed["sha256"] == hashlib.sha256(hub_server.files(REPO)[FILE]).hexdigest()
    assert built(recipe) == (v2, 4)
    assert build(recipe, "--locked") == 0 and built(recipe) == (v2, 4)


def test_a_changed_revision_in_the_recipe_relocks_and_fails_under_locked(hub_server, tmp_path, capsys):
    v1 = hub_server.add_dataset_repo(REPO, REAL / "debate" / "hub")
    recipe = write_recipe(tmp_path / "r")
    assert build(recipe) == 0
    dev = move_head(hub_server, tmp_path, revision="dev")
    assert hub_server.head(REPO) == v1 != dev
    write_recipe(tmp_path / "r", revision="dev")
    capsys.readouterr()
    assert build(recipe, "--locked") == 2
    assert "the recipe asks for revision 'dev' of 'debate', the lock holds 'main'" in capsys.readouterr().err
    assert build(recipe) == 0
    entry = read_lock(recipe)["sources"]["debate"]
    assert (entry["revision"], entry["commit"]) == ("dev", dev) and built(recipe) == (dev, 4)


def test_a_damaged_cached_file_is_caught_by_the_lock(hub_server, tmp_path, capsys):
    v1 = hub_server.add_dataset_repo(REPO, REAL / "debate" / "hub")
    recipe = write_recipe(tmp_path / "r")
    assert build(recipe) == 0
    [cached] = (tmp_path / "hf_home" / "hub").rglob(f"snapshots/{v1}/{FILE}")
    cached.write_bytes(cached.read_bytes()[:-1] + b" ")  # same size, different bytes
    capsys.readouterr()
    assert build(recipe) == 2
    err = capsys.readouterr().err
    assert f"lock file {lock_path(recipe)}: source 'debate' at commit {v1}: the files do not match" in err
    assert f"{FILE} has {cached.stat().st_size} bytes, sha256 {hashlib.sha256(cached.read_bytes()).hexdigest()}" in err


def test_an_invalid_lock_names_the_file_and_the_field(hub_server, tmp_path, capsys):
    hub_server.add_dataset_repo(REPO, REAL / "debate" / "hub")
    recipe = write_recipe(tmp_path / "r")
    assert build(recipe) == 0
    lock = read_lock(recipe)
    lock["sources"]["debate"]["commit"] = "main"
    lock_path(recipe).write_text(json.dumps(lock))
    capsys.readouterr()
    assert build(recipe) == 2
    err = capsys.readouterr().err
    assert f"lock file {lock_path(recipe)} is invalid" in err and "sources.debate.commit: 'main' does not match" in err
    lock_path(recipe).write_text("{")
    assert build(recipe, "--dry-run") == 2
    assert f"lock file {lock_path(recipe)} is not valid JSON (line 1" in capsys.readouterr().err


def test_dry_run_says_what_is_locked(hub_server, tmp_path, capsys):
    v1 = hub_server.add_dataset_repo(REPO, REAL / "debate" / "hub")
    recipe = write_recipe(tmp_path / "r")
    assert build(recipe, "--dry-run") == 0
    expected = f"lock: none usable (no lock file {lock_path(recipe)} yet): the next build locks it; --locked fails"
    assert expected in capsys.readouterr().out
    assert build(recipe) == 0
    capsys.readouterr()
    asked = len(hub_server.requests)
    assert build(recipe, "--dry-run") == 0
    assert f"lock: commit {v1} ({lock_path(recipe)})" in capsys.readouterr().out
    assert hub_server.requests[asked:] == []


def test_the_published_recipe_is_not_locked_yet(capsys):
    """No invented shas: the published recipe asks for main and no lock sits beside it until a real build."""
    recipe = resource_path("builder_scripts") / "coord_bench.yaml"
    assert not lock_path(recipe).exists()
    assert {s["location"]["revision"] for s in yaml.safe_load(recipe.read_text())["sources"]} == {"main"}
    assert main(["build", str(recipe), "--dry-run"]) == 0
    assert capsys.readouterr().out.count(f"lock: none usable (no lock file {lock_path(recipe)} yet)") == 3


def test_builds_of_the_default_recipe_keep_no_lock(hub_server, tmp_path, capsys):
    v1 = hub_server.add_dataset_repo(REPO, REAL / "debate" / "hub")
    default_folder = resource_path("builder_scripts")
    before = sorted(p.name for p in default_folder.iterdir())
    out = tmp_path / "out"
    args = ["build", "--no-progress", "--annotate", "none", "--out", str(out), "--sources", "debate"]
    assert main([*args, "--from-hub", "debate", "--set", "sources.debate.filters.configs=[reasoning_*]"]) == 0
    assert f"debate: read {REPO} at {v1} (not locked" in capsys.readouterr().out
    assert sorted(p.name for p in default_folder.iterdir()) == before
    assert main([*args, "--from-hub", "debate", "--locked"]) == 2
    assert "--locked and --update-lock need a recipe file" in capsys.readouterr().err


def test_a_lock_that_cannot_be_written_is_a_clear_error(hub_server, tmp_path, capsys):
    hub_server.add_dataset_repo(REPO, REAL / "debate" / "hub")
    recipe = write_recipe(tmp_path / "r")
    lock_path(recipe).mkdir()  # stands in for a read-only folder: root may write anywhere
    assert build(recipe) == 2
    err = capsys.readouterr().err
    assert f"cannot write the lock file {lock_path(recipe)}" in err and "folder must be writable" in err
    assert "Traceback" not in err and [p.name for p in recipe.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_locked_and_update_lock_exclude_each_other(hub_server, tmp_path, capsys):
    hub_server.add_dataset_repo(REPO, REAL / "debate" / "hub")
    assert build(write_recipe(tmp_path / "r"), "--locked", "--update-lock") == 2
    assert "--locked and --update-lock contradict each other" in capsys.readouterr().err


def test_offline_a_lock_is_enough_but_locked_needs_the_hub(hub_server, tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    v1 = hub_server.add_dataset_repo(REPO, REAL / "debate" / "hub")
    recipe = write_recipe(tmp_path / "r")
    assert build(recipe) == 0
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    capsys.readouterr()
    asked = len(hub_server.requests)
    assert build(recipe) == 0 and built(recipe) == (v1, 3)
    assert build(recipe, "--locked") == 2
    assert f"cannot reach the Hub to ask where {REPO}@main points" in capsys.readouterr().err
    assert hub_server.requests[asked:] == []
