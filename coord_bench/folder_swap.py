"""Where a build writes: a staging folder beside the output, swapped into place only when the build is complete.

A build killed at any point (SIGKILL, power loss) must leave either the previous build or nothing at the
output path, never a half-written folder. So a build writes ``<parent>/.<name>.partial/`` (a marker file
first, so a folder left by a killed run is recognised as ours and replaced by the rerun) and finishes with

    rename <out> -> <parent>/.<name>.old;  rename .partial -> <out>;  move the user's own files back;  delete .old

Each rename is atomic; a kill between them is repaired at the start of the next build (``recover``). The
expensive work of a killed build is kept in the content caches (embeddings, judge), not in the folder.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from coord_bench.build_folder import MANIFEST_FILE, built_by_us

MARKER_FILE = ".coord_bench_partial"  # in a staging folder, written before anything else


class BuildFolderError(RuntimeError):
    """The output folder cannot be used; the message says why and what to do."""


def staging_path(out_dir: Path) -> Path:
    return out_dir.parent / f".{out_dir.name}.partial"


def old_path(out_dir: Path) -> Path:
    return out_dir.parent / f".{out_dir.name}.old"


def recover(out_dir: Path, say: Callable[[str], None]) -> None:
    """Repair what a build killed during its final swap left behind, and refuse folders that are not builds."""
    old = old_path(out_dir)
    if old.exists() and not out_dir.exists():  # killed between the two renames: the previous build goes back
        old.rename(out_dir)
        say(f"restored the previous build at {out_dir} (a build was killed while swapping it out)")
    elif old.exists():  # killed after the swap: finish it
        _carry_user_files(old, out_dir)
        shutil.rmtree(old)
    (out_dir / MARKER_FILE).unlink(missing_ok=True)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MANIFEST_FILE).exists():
        raise BuildFolderError(
            f"{out_dir} exists and is not a coord_bench build (no {MANIFEST_FILE}); choose an empty or new folder"
        )


def start_staging(out_dir: Path, say: Callable[[str], None]) -> Path:
    """A fresh staging folder beside ``out_dir``, marked as ours; one left by a killed build is replaced."""
    staging = staging_path(out_dir)
    if staging.exists():
        if not (staging / MARKER_FILE).exists():
            raise BuildFolderError(
                f"{staging} exists and was not made by coord_bench (no {MARKER_FILE}); move it away and rerun"
            )
        shutil.rmtree(staging)
        say(f"removed the unfinished build of an interrupted run ({staging}); cached work is reused")
    staging.mkdir(parents=True)
    (staging / MARKER_FILE).write_text(json.dumps({"pid": os.getpid(), "out_dir": str(out_dir)}) + "\n")
    return staging


def swap_in(staging: Path, out_dir: Path) -> None:
    """Put the finished staging folder at ``out_dir``; the previous build stays whole until the first rename."""
    old = old_path(out_dir)
    if out_dir.exists():
        out_dir.rename(old)
    staging.rename(out_dir)
    (out_dir / MARKER_FILE).unlink(missing_ok=True)
    if old.exists():
        _carry_user_files(old, out_dir)
        shutil.rmtree(old)
    _sync(out_dir.parent)


def _carry_user_files(old: Path, out_dir: Path) -> None:
    """Move back what the user kept in the previous build's folder (a .git, notes): a rebuild deletes only builds."""
    ours = built_by_us(old) | {MARKER_FILE}
    for entry in old.iterdir():
        if entry.name not in ours and not (out_dir / entry.name).exists():
            entry.rename(out_dir / entry.name)


def _sync(folder: Path) -> None:
    """Flush the renames in ``folder`` to disk where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
