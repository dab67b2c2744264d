"""The staging folder and the final swap: the previous build stays until the new one is complete, and a kill
between the renames is repaired by the next build."""

from __future__ import annotations

import json
import os

import pytest

from coord_bench.build_folder import write_manifest
from coord_bench.folder_swap import (
    MARKER_FILE,
    BuildFolderError,
    old_path,
    recover,
    staging_path,
    start_staging,
    swap_in,
)


def a_build(folder, configs=("all",), note="old"):
    """A finished build folder: a manifest naming ``configs``, one file per config."""
    folder.mkdir(parents=True, exist_ok=True)
    for config in configs:
        (folder / config).mkdir(exist_ok=True)
        (folder / config / "train-00000-of-00001.parquet").write_text(note)
    write_manifest(folder, {"configs": {c: {} for c in configs}, "note": note})
    return folder


def test_staging_and_old_folders_are_hidden_beside_the_output(tmp_path):
    out = tmp_path / "runs" / "coord_bench"
    assert staging_path(out) == tmp_path / "runs" / ".coord_bench.partial"
    assert old_path(out) == tmp_path / "runs" / ".coord_bench.old"


def test_start_staging_marks_the_folder_as_ours(tmp_path):
    out = tmp_path / "out"
    messages = []
    staging = start_staging(out, messages.append)
    assert staging == staging_path(out) and not out.exists()
    assert json.loads((staging / MARKER_FILE).read_text()) == {"pid": os.getpid(), "out_dir": str(out)}
    assert messages == []


def test_start_staging_replaces_the_leftover_of_a_killed_build(tmp_path):
    out = tmp_path / "out"
    staging = start_staging(out, print)
    (staging / "half-written.parquet").write_text("x")
    messages = []
    assert start_staging(out, messages.append) == staging
    assert sorted(p.name for p in staging.iterdir()) == [MARKER_FILE]
    assert messages == [f"removed the unfinished build of an interrupted run ({staging}); cached work is reused"]


def test_start_staging_refuses_a_folder_without_the_marker(tmp_path):
    staging = staging_path(tmp_path / "out")
    staging.mkdir()
    with pytest.raises(BuildFolderError, match=r"\.out\.partial exists and was not made by coord_bench"):
        start_staging(tmp_path / "out", print)


def test_swap_keeps_the_previous_build_until_the_new_one_is_complete(tmp_path):
    out = a_build(tmp_path / "out", configs=("all", "debate"))
    (out / "notes.txt").write_text("the user's")
    (out / ".git").mkdir()
    staging = start_staging(out, print)
    a_build(staging, note="new")
    assert json.loads((out / "build_manifest.json").read_text())["note"] == "old"  # untouched while staging
    assert (out / "debate").is_dir()

    swap_in(staging, out)
    assert json.loads((out / "build_manifest.json").read_text())["note"] == "new"
    assert (out / "all" / "train-00000-of-00001.parquet").read_text() == "new"
    assert not (out / "debate").exists()  # a config of the old build only is not kept
    assert (out / "notes.txt").read_text() == "the user's" and (out / ".git").is_dir()
    assert not (out / MARKER_FILE).exists() and not staging.exists() and not old_path(out).exists()


def test_swap_into_a_new_folder(tmp_path):
    out = tmp_path / "out"
    staging = start_staging(out, print)
    a_build(staging, note="new")
    swap_in(staging, out)
    assert sorted(p.name for p in out.iterdir()) == ["all", "build_manifest.json"]


def test_recover_after_a_kill_between_the_renames_puts_the_previous_build_back(tmp_path):
    out = tmp_path / "out"
    a_build(old_path(out))  # the first rename happened, the second did not
    messages = []
    recover(out, messages.append)
    assert json.loads((out / "build_manifest.json").read_text())["note"] == "old"
    assert not old_path(out).exists()
    assert messages == [f"restored the previous build at {out} (a build was killed while swapping it out)"]


def test_recover_after_a_kill_after_the_swap_finishes_it(tmp_path):
    out = a_build(tmp_path / "out", note="new")
    (out / MARKER_FILE).write_text("{}")  # killed before the marker was removed
    old = a_build(old_path(out))
    (old / "notes.txt").write_text("the user's")
    messages = []
    recover(out, messages.append)
    assert not old.exists() and not (out / MARKER_FILE).exists()
    assert (out / "notes.txt").read_text() == "the user's"
    assert json.loads((out / "build_manifest.json").read_text())["note"] == "new"
    assert messages == []


def test_recover_refuses_a_folder_that_is_not_a_build_and_accepts_an_empty_one(tmp_path):
    out = tmp_path / "out"
    recover(out, print)  # nothing there: nothing to do
    out.mkdir()
    recover(out, print)
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(BuildFolderError, match="exists and is not a coord_bench build"):
        recover(out, print)
    assert (out / "precious.txt").read_text() == "keep me"
