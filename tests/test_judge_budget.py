"""The judge's budget is the build folder's, on disk: it holds across kills, reruns and concurrent runs.

Behind a slow fault proxy (so a kill finds requests in flight), at concurrency 8, a `label` run is SIGKILLed
before its first request, in the middle of its requests and while its labelled shards are written; the rerun
then finishes with the rows of an uninterrupted run (content hashes) and the server never receives more
requests than the cap. The row comparison runs against a server whose verdict is a function of the
conversation: llama.cpp at temperature 0 is not (its answer to a prompt shifts with the prompt it served
before, whose prefix it reuses, and concurrent requests reach it in any order). The real llama.cpp server runs
the measured scenario of the issue (cap 10, concurrency 8, a kill with requests in flight, two reruns) and the
two concurrent runs. Every wait is bounded; 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from judge_helpers import assert_adds_up, cached, kill_when, label_args, ledger_of, start_label
from llm_server import FakeChatServer, FaultProxy, conversation_id, judgement
from realdata import source_dir_args

from coord_bench.cli import main
from coord_bench.folder_lock import read_holder
from coord_bench.folder_swap import MARKER_FILE, staging_path
from coord_bench.mappers.judge.budget import LEDGER_FILE, Budget, BudgetRaiseRefused

LATENCY = 1.0  # seconds the proxy holds every request: a slow provider


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    """16 short real conversations (8 arena, 8 dialogue), no annotations."""
    out = tmp_path_factory.mktemp("budget") / "build"
    sources = ("chatbot_arena", "multi_character_dialogue")
    args = ["build", "--no-progress", "--out", str(out), "--limit", "8", "--sources", ",".join(sources)]
    args += ["--annotate", "none", "--set", "output.report=false"]
    assert main(args + source_dir_args(sources)) == 0
    return out


def verdict(request: dict) -> dict:
    """A judgement that depends on the conversation only: swapped or repeated labels would show in the rows."""
    h = int(hashlib.sha256((conversation_id(request) or "").encode()).hexdigest(), 16)
    return judgement(success=h % 11, level=("full", "partial", "none")[h % 3], efficiency=(h // 11) % 11)


@pytest.fixture(scope="module")
def judge_server():
    server = FakeChatServer(latency=0.3, responder=verdict, models=("smollm2",)).start()
    yield server
    server.stop()




def rows_hash(folder: Path) -> str:
    """sha256 of every config's rows in shard order, without the two judge fields that describe the run that
    made a label rather than the label (``calls``: requests this run paid for it; ``cached``)."""
    digest = hashlib.sha256()
    manifest = json.loads((folder / "build_manifest.json").read_text())
    for config in sorted(manifest["configs"]):
        for path in sorted((folder / config).glob("*.parquet")):
            for row in pq.read_table(path).to_pylist():
                for judge in row["annotations"]["coordination"]["judges"]:
                    judge.pop("calls"), judge.pop("cached")
                digest.update(json.dumps(row, sort_keys=True, default=str).encode())
    return digest.hexdigest()












@pytest.fixture(scope="module")
def reference(judge_server, build, tmp_path_factory) -> str:
    """The rows of an uninterrupted run (same seed, sample and server)."""
    root = tmp_path_factory.mktemp("reference")
    folder = shutil.copytree(build, root / "build")
    received = judge_server.received
    assert main(label_args(folder, root / "cache", judge_server.base_url)) == 0
    judge = json.loads((folder / "build_manifest.json").read_text())["annotations"]["judge"]
    assert judge["rows"]["ok"] == 4 and judge_server.received - received == 4
    return rows_hash(folder)


# -- kill at each point, rerun, same rows, cap held (slow proxy) --------------------------------------------------


@pytest.mark.parametrize("kill_point", ["before_first_request", "mid_requests", "writing_shards"])
def test_a_killed_label_reruns_to_the_rows_of_an_uninterrupted_run(
    judge_server, build, reference, tmp_path, kill_point
):
    folder = shutil.copytree(build, tmp_path / "build")
    cache = tmp_path / "cache"
    proxy = FaultProxy(judge_server.base_url, latency=LATENCY).start()
    if kill_point == "mid_requests":  # one request outlasts the others, so one is cached while it is in flight
        proxy.add_fault("slow", delay=15.0)
    log = tmp_path / "killed.log"
    try:
        process = start_label(label_args(folder, cache, proxy.base_url), log)
        ready = {
            "before_first_request": lambda: proxy.listed >= 1,  # the price lookup, just before the first request
            "mid_requests": lambda: cached(cache) >= 1 and proxy.received - proxy.answered >= 1,
            "writing_shards": lambda: (staging_path(folder) / "all").exists(),  # made after the judge's pass
        }[kill_point]
        kill_when(process, ready, log)
        sent_before_kill = proxy.received
        done_before_kill = cached(cache)
        if kill_point == "before_first_request":
            assert sent_before_kill == 0 and done_before_kill == 0
        elif kill_point == "writing_shards":
            assert done_before_kill == 4
        assert "judge" not in json.loads((folder / "build_manifest.json").read_text())["annotations"]

        rerun_from = proxy.received
        assert main(label_args(folder, cache, proxy.base_url)) == 0
        rerun_sent = proxy.received - rerun_from
    finally:
        proxy.stop()
    assert rows_hash(folder) == reference
    assert not staging_path(folder).exists()
    assert main(["validate", str(folder)]) == 0
    assert rerun_sent == 4 - done_before_kill  # what the cache holds is never asked again
    ledger = ledger_of(folder)
    assert_adds_up(ledger)
    assert proxy.received <= ledger["calls_sent"] <= 12  # never over the cap (a reservation may not have left)
    assert ledger["runs"] == (2 if kill_point == "mid_requests" else 1)  # the runs that sent requests
    if kill_point == "mid_requests":
        assert ledger["lost_in_crash"] >= 1 and ledger["answered"] >= 4
    else:
        assert ledger["lost_in_crash"] == 0


def test_the_issue_scenario_max_calls_10_concurrency_8_kill_and_rerun_stays_within_10(llama, build, tmp_path):
    """The measured bug: killed with requests in flight, then rerun with the same cap, 16-18 requests reached
    the server for a cap of 10."""
    folder = shutil.copytree(build, tmp_path / "build")
    cache = tmp_path / "cache"
    proxy = FaultProxy(llama.base_url, latency=LATENCY).start()
    args = label_args(folder, cache, proxy.base_url, calls=10, sample=None)  # the sample fills the cap: 10 rows
    log = tmp_path / "killed.log"
    try:
        process = start_label(args, log)
        kill_when(process, lambda: cached(cache) >= 1 and proxy.received - proxy.answered >= 2, log)
        in_flight_at_kill = proxy.received - cached(cache)
        assert main(args) == 0
    finally:
        proxy.stop()
    ledger = ledger_of(folder)
    assert proxy.received <= ledger["calls_sent"] <= 10
    assert_adds_up(ledger)
    assert ledger["lost_in_crash"] >= 1 and ledger["calls_remaining"] == 10 - ledger["calls_sent"]
    assert in_flight_at_kill >= 1
    judge = json.loads((folder / "build_manifest.json").read_text())["annotations"]["judge"]
    rows = judge["rows"]
    assert rows.get("ok", 0) + rows.get("failed", 0) + rows.get("over_budget", 0) == 10  # every sampled row told
    assert rows.get("over_budget", 0) >= 1  # the lost calls were paid for: not every row could be judged
    card = (folder / "README.md").read_text()
    assert (
        f"{ledger['calls_sent']} calls sent, {ledger['answered']} answered, {ledger['failed']} failed, "
        f"{ledger['lost_in_crash']} lost in a crash" in card
    )
    assert f"Remaining: {ledger['calls_remaining']} of 10 calls" in card

    again = FaultProxy(llama.base_url).start()  # a third run, same cap, another endpoint: nothing left to spend
    try:
        assert main(label_args(folder, cache, again.base_url, calls=10, sample=None)) == 0
    finally:
        again.stop()
    assert again.received <= 10 - ledger["calls_sent"]
    assert ledger_of(folder)["calls_sent"] <= 10


# -- two runs at once (llama.cpp + slow proxy) -------------------------------------------------------------------


def test_a_second_label_on_the_same_folder_refuses_or_waits_and_the_cap_holds(llama, build, tmp_path, capsys):
    folder = shutil.copytree(build, tmp_path / "build")
    cache = tmp_path / "cache"
    proxy = FaultProxy(llama.base_url, latency=LATENCY).start()
    args = label_args(folder, cache, proxy.base_url)
    log = tmp_path / "first.log"
    try:
        first = start_label(args, log)
        kill_when_ready = time.monotonic() + 120
        while (read_holder(folder) or {}).get("pid") != first.pid:
            assert first.poll() is None and time.monotonic() < kill_when_ready, log.read_text()[-2000:]
            time.sleep(0.01)
        assert main(args) == 2  # at once: the holder is named
        err = capsys.readouterr().err
        assert f"is in use by `coord-bench label` (pid {first.pid}" in err and "--wait" in err
        waited = threading.Thread(target=lambda: outcome.append(main([*args, "--wait", "300"])))
        outcome: list[int] = []
        waited.start()  # waits for the first to finish, then finds every answer cached
        assert first.wait(timeout=300) == 0, log.read_text()[-2000:]
        waited.join(timeout=300)
        assert outcome == [0]
    finally:
        if first.poll() is None:
            first.kill()
        proxy.stop()
    assert "waiting for `coord-bench label`" in capsys.readouterr().err
    assert proxy.received == 4 <= 12  # the second run sent nothing: the cache had every answer
    judge = json.loads((folder / "build_manifest.json").read_text())["annotations"]["judge"]
    assert judge["requests"]["judgements_cached"] == 4 and judge["requests"]["sent"] == 0  # the first run's labels
    ledger = ledger_of(folder)
    assert ledger["calls_sent"] == 4 and ledger["runs"] == 1 and ledger["lost_in_crash"] == 0


# -- the ledger itself (no server) -------------------------------------------------------------------------------


RESERVE_AND_DIE = (
    "import os, signal, sys\n"
    "from coord_bench.mappers.judge.budget import Budget\n"
    "budget = Budget(10, 1.0, path=sys.argv[1], key='k')\n"
    "budget.start()\n"
    "a, b, c = (budget.reserve(0.05) for _ in range(3))\n"
    "budget.settle(a, 0.01)\n"
    "budget.settle(b, 0.0, 'failed')\n"
    "os.kill(os.getpid(), signal.SIGKILL)  # c is in flight: reserved, never settled\n"
)


def test_a_reservation_a_killed_process_never_settled_counts_as_spent(tmp_path):
    path = tmp_path / LEDGER_FILE
    process = subprocess.run([sys.executable, "-c", RESERVE_AND_DIE, str(path)], timeout=60)
    assert process.returncode == -signal.SIGKILL
    budget = Budget(10, 1.0, path=path, key="k")
    totals = budget.totals()
    assert (totals["calls_sent"], totals["answered"], totals["failed"], totals["lost_in_crash"]) == (3, 1, 1, 1)
    assert totals["spent_usd"] == pytest.approx(0.01 + 0.05)  # the lost one at its estimate
    granted = [r for r in (budget.reserve(0.05) for _ in range(20)) if r is not None]
    assert len(granted) == 7 and "max_calls 10 reached" in budget.refusal  # only the remainder
    other = Budget(10, 1.0, path=path, key="another folder")
    assert other.totals()["calls_sent"] == 0  # ledgers are per key


def test_raising_the_cap_needs_the_flag_lowering_does_not(tmp_path):
    path = tmp_path / LEDGER_FILE
    first = Budget(5, 0.5, path=path, key="k")
    first.start()
    assert first.reserve(0.1) is not None
    with pytest.raises(BudgetRaiseRefused, match="max_calls 5, max_cost_usd 0.5.*asks for max_calls 8.*--raise-budget"):
        Budget(8, 0.5, path=path, key="k")
    with pytest.raises(BudgetRaiseRefused, match="--raise-budget"):
        Budget(5, 0.9, path=path, key="k")
    lower = Budget(3, 0.5, path=path, key="k")
    lower.start()
    assert sum(lower.reserve(0.0) is not None for _ in range(5)) == 2  # 3 in all, with the first run's
    raised = Budget(8, 0.5, path=path, key="k", raise_cap=True)
    raised.start()
    assert sum(raised.reserve(0.0) is not None for _ in range(9)) == 5
    assert Budget(8, 0.5, path=path, key="k").max_calls == 8  # the raise is the new ceiling


RESERVE_MANY = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from coord_bench.mappers.judge.budget import Budget\n"
    "budget = Budget(50, 0.9, path=sys.argv[1], key='k')\n"
    "budget.start()\n"
    "while not Path(sys.argv[2]).exists():  # all start together\n"
    "    time.sleep(0.001)\n"
    "for _ in range(40):\n"
    "    reservation = budget.reserve(0.01)\n"
    "    if reservation is not None:\n"
    "        budget.settle(reservation, 0.01)\n"
    "print(budget.calls)\n"
)


def test_processes_reserving_at_once_never_overshoot(tmp_path):
    path, go = tmp_path / LEDGER_FILE, tmp_path / "go"
    workers = [
        subprocess.Popen([sys.executable, "-c", RESERVE_MANY, str(path), str(go)], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    time.sleep(3)  # let them all reach the starting line (a late one only competes less)
    go.touch()
    granted = [int(w.communicate(timeout=120)[0]) for w in workers]
    totals = Budget(50, 0.9, path=path, key="k").totals()
    assert sum(granted) == totals["calls_sent"] == 50  # 160 tries by 4 processes, 50 granted, not one more
    assert sum(g > 0 for g in granted) >= 2  # they competed (one alone could take at most 40)
    assert totals["spent_usd"] == pytest.approx(0.5)


# -- the labelled shards are swapped in safely (fake server: only the file steps matter here) ---------------------


def test_a_label_interrupted_at_any_step_of_writing_and_swapping_is_finished_by_the_rerun(
    build, tmp_path, monkeypatch
):
    server = FakeChatServer().start()
    cache = tmp_path / "cache"

    def args(folder: Path) -> list[str]:
        return [
            "label", str(folder), "--base-url", server.base_url, "--judge-model", "fake-judge", "--max-calls", "6",
            "--no-progress", "--set", f"cache_dir={cache}",
        ]  # fmt: skip

    class Killed(BaseException):
        """Stands for SIGKILL at one exact step: nothing after it runs (no cleanup: BaseException)."""

    steps = {"n": 0, "kill_at": None}
    real_replace, real_rename, real_os_replace = Path.replace, Path.rename, os.replace

    def counted(replace):
        def step(*a, **k):
            if steps["kill_at"] is not None and steps["n"] == steps["kill_at"]:
                raise Killed
            steps["n"] += 1
            return replace(*a, **k)

        return step

    monkeypatch.setattr(Path, "replace", counted(real_replace))
    monkeypatch.setattr(Path, "rename", counted(real_rename))
    monkeypatch.setattr(os, "replace", counted(real_os_replace))
    try:
        reference = shutil.copytree(build, tmp_path / "reference")
        assert main(args(reference)) == 0
        total_steps, expected = steps["n"], rows_hash(reference)
        assert total_steps >= 4  # the shards' final names, the swap's two renames, the user's files moved back
        for kill_at in range(total_steps):
            folder = shutil.copytree(build, tmp_path / f"killed_{kill_at}")
            steps.update(n=0, kill_at=kill_at)
            with pytest.raises(Killed):
                main(args(folder))
            steps.update(kill_at=None)
            received = server.received
            assert main(args(folder)) == 0, kill_at
            assert server.received == received  # every answer is cached: the rerun asks nothing
            assert rows_hash(folder) == expected, kill_at
            assert not staging_path(folder).exists()
            assert main(["validate", str(folder)]) == 0
    finally:
        server.stop()


def test_an_unfinished_label_left_over_from_an_older_run_is_discarded_not_applied(build, tmp_path):
    server = FakeChatServer().start()
    try:
        folder = shutil.copytree(build, tmp_path / "build")
        cache = tmp_path / "cache"
        args = [
            "label", str(folder), "--base-url", server.base_url, "--judge-model", "fake-judge", "--max-calls", "6",
            "--no-progress", "--set", f"cache_dir={cache}",
        ]  # fmt: skip
        stale = staging_path(folder) / "all"  # a killed run's half-written output, a manifest and all
        stale.mkdir(parents=True)
        (stale / "train-00000-of-00001.parquet").write_bytes(b"not parquet")
        (staging_path(folder) / "build_manifest.json").write_text("{}")
        (staging_path(folder) / MARKER_FILE).write_text("{}")
        assert main(args) == 0
    finally:
        server.stop()
    assert main(["validate", str(folder)]) == 0
    assert not staging_path(folder).exists()


def test_a_raise_of_the_cap_on_the_cli_needs_raise_budget(build, tmp_path, capsys):
    server = FakeChatServer().start()
    try:
        folder = shutil.copytree(build, tmp_path / "build")
        base = [
            "label", str(folder), "--base-url", server.base_url, "--judge-model", "fake-judge", "--no-progress",
            "--set", f"cache_dir={tmp_path / 'cache'}", "--sample-size", "8",
        ]  # fmt: skip
        assert main([*base, "--max-calls", "3"]) == 0
        assert server.received == 3 and ledger_of(folder)["calls_remaining"] == 0
        assert main([*base, "--max-calls", "6"]) == 2
        err = capsys.readouterr().err
        assert "max_calls 3" in err and "asks for max_calls 6" in err and "--raise-budget" in err
        assert server.received == 3  # refused before any request
        assert main([*base, "--max-calls", "6", "--raise-budget"]) == 0
        assert server.received == 6
        ledger = ledger_of(folder)
        assert ledger["max_calls"] == 6 and ledger["calls_sent"] == 6 and ledger["runs"] == 2
        out = capsys.readouterr().out
        assert "(2 run(s) that sent requests): 6 calls sent, 6 answered, 0 failed, 0 lost in a crash" in out
        manifest = json.loads((folder / "build_manifest.json").read_text())
        assert "raise_budget" not in json.dumps(manifest)  # a run option, never recorded for later runs
    finally:
        server.stop()


def test_a_build_that_judges_and_a_later_label_share_the_folder_budget(tmp_path, capsys):
    """The build writes into a staging folder and swaps it in: its judge budget is still the named folder's."""
    server = FakeChatServer().start()
    try:
        out = tmp_path / "judged"
        sources = ("chatbot_arena",)
        judge = ["--base-url", server.base_url, "--judge-model", "fake-judge"]
        build_args = [
            "build", "--no-progress", "--out", str(out), "--limit", "8", "--sources", "chatbot_arena",
            "--annotate", "judge", "--judge-model", "fake-judge", "--max-calls", "3",
            "--set", f"annotations.judge.base_url={server.base_url}", "--set", "output.report=false",
            "--set", f"annotations.judge.cache_dir={tmp_path / 'cache'}",
        ]  # fmt: skip
        assert main(build_args + source_dir_args(sources)) == 0
        assert server.received == 3 and ledger_of(out)["calls_remaining"] == 0
        label = ["label", str(out), *judge, "--no-progress", "--max-calls", "3", "--sample-size", "8",
                 "--set", f"cache_dir={tmp_path / 'cache'}"]
        assert main(label) == 0
        assert server.received == 3  # the build's 3 calls spent the folder's cap of 3: label sends none
        assert ledger_of(out)["calls_sent"] == 3
    finally:
        server.stop()


def test_a_labelled_build_loads_its_new_rows_and_its_card_names_no_local_path(build, tmp_path):
    """`label` rewrites the shards: the card's fingerprint must follow (else `load_dataset` serves the unlabelled
    rows from its cache), its load lines name the folder by name, and no setting's local path shows."""
    import datasets
    from huggingface_hub import DatasetCard

    server = FakeChatServer().start()
    try:
        folder = shutil.copytree(build, tmp_path / "labelled")
        cache = tmp_path / "hf_cache"

        def judges(rows):
            return sorted((r["id"], len((r["annotations"]["coordination"] or {}).get("judges") or [])) for r in rows)

        def loaded_judges():
            return judges(datasets.load_dataset(str(folder), "all", cache_dir=str(cache))["train"])

        before = loaded_judges()
        assert all(n == 0 for _, n in before)
        assert main(["label", str(folder), "--base-url", server.base_url, "--judge-model", "fake-judge",
                     "--no-progress", "--max-calls", "4", "--sample-size", "4",
                     "--set", f"cache_dir={tmp_path / 'judge_cache'}"]) == 0
        after = loaded_judges()
        shards = sorted((folder / "all").glob("train-*.parquet"))
        on_disk = judges(row for shard in shards for row in pq.read_table(shard).to_pylist())
        assert after == on_disk and after != before
        card = (folder / "README.md").read_text(encoding="utf-8")
        assert str(tmp_path) not in card  # not the folder, not the judge's cache_dir
        assert 'load_dataset("./labelled", "all")' in card
        # into --out: the card describes the shards written there (real sizes), not an empty folder
        assert main(["label", str(folder), "--out", str(tmp_path / "copy"), "--base-url", server.base_url,
                     "--judge-model", "fake-judge", "--no-progress", "--max-calls", "4", "--sample-size", "4",
                     "--set", f"cache_dir={tmp_path / 'judge_cache'}"]) == 0
        infos = DatasetCard.load(tmp_path / "copy" / "README.md").data.to_dict()["dataset_info"]
        assert all(split["num_bytes"] > 0 for info in infos for split in info["splits"])
    finally:
        server.stop()
