"""One writer per build folder: ``build``, ``label``, ``report`` and ``push`` hold an exclusive lock on it.

The lock is ``<parent>/.<name>.lock`` beside the folder, never inside it (a build may replace the whole
folder), taken with ``filelock`` (``flock`` on Linux and macOS; filelock falls back to a marker file with its own
stale-owner check where a filesystem has no ``flock``). Beside it, ``.<name>.lock.json`` names the holder: the
command, pid, host and start time, so a second command can say who is in the way. ``flock`` dies with its
process, so a killed holder never blocks the folder: the next command takes the lock at once, finds the dead
holder's record (its pid no longer alive on this host) and replaces it, warning that the killed command may
have left the folder half-written. A live holder makes the second command stop at once with a clear message,
or, with ``--wait``, wait for it (at most ``--wait SECONDS``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout


class FolderBusy(RuntimeError):
    """Another command holds the build folder's lock."""


def lock_paths(folder: Path) -> tuple[Path, Path]:
    """(lock file, holder record) of ``folder``: beside it, in its parent."""
    folder = Path(folder).resolve()
    return folder.parent / f".{folder.name}.lock", folder.parent / f".{folder.name}.lock.json"


def read_holder(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads(lock_paths(folder)[1].read_text(encoding="utf-8"))
    except (OSError, ValueError):  # no record, or one cut short by a kill
        return None


def alive(holder: dict[str, Any]) -> bool:
    """Whether the recorded holder still runs (a holder on another host is taken to)."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except (KeyError, TypeError, ValueError, OverflowError):
        return False
    return True


def describe(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another process (it left no record of itself)"
    return (
        f"`coord-bench {holder.get('command')}` (pid {holder.get('pid')} on {holder.get('host')}, "
        f"started {holder.get('started')})"
    )


@contextlib.contextmanager
def folder_lock(folder: Path, command: str, wait: float | None = None) -> Iterator[None]:
    """Hold ``folder``'s lock for ``command``. ``wait`` None: stop at once if it is held; a number: wait at most
    that many seconds (``inf``: as long as it takes). Raises ``FolderBusy`` naming the holder."""
    lock_file, record = lock_paths(folder)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_file)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = read_holder(folder)
        if wait is None:
            raise FolderBusy(
                f"{folder} is in use by {describe(holder)}; run this again when it is done, or add --wait "
                "to wait for it"
            ) from None
        print(f"coord-bench {command}: waiting for {describe(holder)} to release {folder}", file=sys.stderr)
        try:
            lock.acquire(timeout=-1 if wait == float("inf") else wait, poll_interval=0.2)
        except Timeout:
            raise FolderBusy(f"{folder} is still in use by {describe(read_holder(folder))} after {wait:g} s") from None
    try:
        stale = read_holder(folder)
        if stale and not alive(stale):
            print(
                f"coord-bench {command}: note: {describe(stale)} was killed while it held {folder}; its lock was "
                "released with it and is taken over (what it was writing is redone or discarded)",
                file=sys.stderr,
            )
        holder = {
            "command": command,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        partial = record.with_name(record.name + f".{os.getpid()}.part")
        partial.write_text(json.dumps(holder), encoding="utf-8")
        os.replace(partial, record)  # whole or absent, even if this process is killed now
        yield
    finally:
        with contextlib.suppress(OSError):
            if (read_holder(folder) or {}).get("pid") == os.getpid():
                record.unlink()
        lock.release()
