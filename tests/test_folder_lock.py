"""One writer per build folder: a second command stops (or waits) with the holder named; a killed holder's lock
is taken over at once. Holders are real processes; every wait is bounded."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from realdata import source_dir_args

from coord_bench.cli import main
from coord_bench.folder_lock import lock_paths, read_holder

HOLD = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from coord_bench.folder_lock import folder_lock\n"
    "with folder_lock(Path(sys.argv[1]), sys.argv[2]):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(float(sys.argv[3]))\n"
)


def hold(folder: Path, command: str = "label", seconds: float = 60) -> subprocess.Popen:
    """A real process that holds ``folder``'s lock for ``seconds``; returns once it holds it."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), command, str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "held"
    return process


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lock") / "build"
    sources = ("chatbot_arena", "multi_character_dialogue")
    args = ["build", "--no-progress", "--out", str(out), "--limit", "3", "--sources", ",".join(sources)]
    args += ["--annotate", "none", "--set", "output.report=false"]  # no report/: a refused `report` writes none
    assert main(args + source_dir_args(sources)) == 0
    return out


def test_the_lock_lies_beside_the_folder_not_inside_it(build):
    lock_file, record = lock_paths(build)
    assert lock_file.parent == record.parent == build.parent.resolve()
    assert lock_file.name == ".build.lock" and record.name == ".build.lock.json"
    assert not list(build.glob("*.lock*"))


def test_a_second_command_stops_at_once_naming_the_holder(build, capsys):
    holder = hold(build, "label")
    try:
        started = time.monotonic()
        assert main(["report", str(build)]) == 2
        assert time.monotonic() - started < 5
        err = capsys.readouterr().err
        recorded = read_holder(build)
        assert recorded["pid"] == holder.pid and recorded["command"] == "label"
        assert f"is in use by `coord-bench label` (pid {holder.pid} on {socket.gethostname()}, started " in err
        assert "--wait" in err and "Traceback" not in err
        assert not (build / "report").exists()  # nothing was written
    finally:
        stop(holder)


def test_wait_with_a_timeout_gives_up_with_the_holder_named(build, capsys):
    holder = hold(build, "push")
    try:
        started = time.monotonic()
        assert main(["report", str(build), "--wait", "1"]) == 2
        assert time.monotonic() - started >= 1
        err = capsys.readouterr().err
        assert "waiting for `coord-bench push`" in err and "still in use by `coord-bench push`" in err
        assert "after 1 s" in err
    finally:
        stop(holder)


def test_wait_runs_the_command_once_the_holder_is_done(build, capsys):
    holder = hold(build, "label", seconds=1.5)
    try:
        assert main(["report", str(build), "--wait"]) == 0
        assert holder.wait(timeout=30) == 0  # it finished on its own first: the report waited for it
        assert (build / "report" / "index.html").is_file()
        assert read_holder(build) is None  # released: no record of a holder left
    finally:
        stop(holder)


def test_a_lock_left_by_a_killed_process_is_taken_over_at_once(build, capsys):
    holder = hold(build, "build")
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    stale = read_holder(build)
    assert stale["pid"] == holder.pid  # the killed holder's record is still there
    started = time.monotonic()
    assert main(["report", str(build)]) == 0
    assert time.monotonic() - started < 60
    err = capsys.readouterr().err
    assert f"`coord-bench build` (pid {holder.pid}" in err and "was killed while it held" in err
    assert read_holder(build) is None


def test_two_builds_into_one_folder_the_second_refuses(tmp_path, capsys):
    out = tmp_path / "build"
    sources = ("chatbot_arena", "debate", "multi_character_dialogue")
    args = ["build", "--no-progress", "--out", str(out), "--limit", "40", *source_dir_args(sources)]
    log = tmp_path / "first.log"
    with open(log, "wb") as handle:
        first = subprocess.Popen([sys.executable, "-m", "coord_bench.cli", *args], stdout=handle, stderr=handle)
    try:
        deadline = time.monotonic() + 120
        while (read_holder(out) or {}).get("pid") != first.pid and time.monotonic() < deadline:
            assert first.poll() is None, log.read_text()
            time.sleep(0.01)
        assert read_holder(out)["command"] == "build", log.read_text()
        assert main(args) == 2
        err = capsys.readouterr().err
        assert f"is in use by `coord-bench build` (pid {first.pid}" in err
        assert first.wait(timeout=300) == 0, log.read_text()
    finally:
        stop(first)
    assert main(["validate", str(out)]) == 0
    manifest = json.loads((out / "build_manifest.json").read_text())
    assert manifest["totals"]["read"] == manifest["totals"]["normalized"] + manifest["totals"]["rejected"] + (
        manifest["totals"]["filtered"]
    )


def test_wait_refuses_a_negative_timeout(build, capsys):
    with pytest.raises(SystemExit):
        main(["report", str(build), "--wait", "-1"])
    assert "seconds >= 0" in capsys.readouterr().err


def test_one_process_cannot_take_a_folder_twice(build):
    from coord_bench.folder_lock import FolderBusy, folder_lock

    errors = []
    with folder_lock(build, "label"):

        def second() -> None:
            try:
                with folder_lock(build, "report"):
                    pass
            except FolderBusy as err:
                errors.append(str(err))

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(timeout=30)
    assert errors and "`coord-bench label`" in errors[0]
