"""`coord-bench push` against the loopback Hub (tests/hub_server.py), driven by the real huggingface_hub client,
and read back with the real `datasets` client: both upload paths (plain LFS, local xet), interruptions,
idempotent re-pushes, tokens, private repos, branches and invalid builds."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import secrets
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard, HfApi, constants, list_repo_refs, snapshot_download
from huggingface_hub.errors import RepositoryNotFoundError

from coord_bench.cli import main
from coord_bench.publish import PushError, _check_no_token, _local_file, push

REPO = "ns/name"
# huggingface_hub's own LFS PUT passes a file object as `data=`; httpx2 warns about it on every upload.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("build") / "coord_bench"
    base_only = ["--annotate", "none", "--set", "output.report=false"]
    assert main(["build", "--out", str(out), "--no-progress", *base_only]) == 0
    return out


@pytest.fixture
def token(hub_server, monkeypatch) -> str:
    """A write token for namespace `ns`, exported as HF_TOKEN (as a user would)."""
    value = "hf_" + secrets.token_hex(20)
    hub_server.add_token(value, "ns")
    monkeypatch.setenv("HF_TOKEN", value)
    return value


@pytest.fixture
def xet(hub_server, monkeypatch):
    """Turn the xet upload/download path on (the fixture disables it) with a fresh hf_xet session."""
    pytest.importorskip("hf_xet")
    from huggingface_hub.utils import _xet

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "0")
    monkeypatch.setenv("HF_XET_TELEMETRY_ENABLED", "0")
    monkeypatch.setattr(_xet, "_GLOBAL_XET_HOLDER", _xet.XetSessionHolder())  # reads the env of this test
    return hub_server.xet_dir


def copy_build(build_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "build"
    shutil.copytree(build_dir, out)
    return out


def row_key(row: dict) -> tuple[str, str, str]:
    """id, the record's own content hash, and a hash of the whole decoded row."""
    whole = hashlib.sha256(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest()
    return row["id"], row["provenance"]["content_hash"], whole


def parquet_ids(folder: Path, config: str, split: str) -> list[tuple[str, str]]:
    rows = []
    for path in sorted((folder / config).glob(f"{split}-*.parquet")):
        rows += pq.read_table(path, columns=["id", "provenance"]).to_pylist()
    return [(r["id"], r["provenance"]["content_hash"]) for r in rows]


def splits_of(folder: Path) -> dict[str, list[str]]:
    manifest = json.loads((folder / "build_manifest.json").read_text())
    return {name: [s for s, n in info["splits"].items() if n] for name, info in manifest["configs"].items()}


def assert_hub_matches(folder: Path, repo_id: str = REPO, **kwargs) -> None:
    """Every config and split, loaded from the Hub (normal and streaming), equals the local build."""
    import datasets

    for config, splits in splits_of(folder).items():
        local = datasets.load_dataset(str(folder), config)
        remote = datasets.load_dataset(repo_id, config, **kwargs)
        streamed = datasets.load_dataset(repo_id, config, streaming=True, **kwargs)
        assert sorted(remote) == sorted(splits) == sorted(streamed), config
        for split in splits:
            expected = [row_key(r) for r in local[split]]
            assert [k[:2] for k in expected] == parquet_ids(folder, config, split)
            assert [row_key(r) for r in remote[split]] == expected, (config, split)
            assert [row_key(r) for r in streamed[split]] == expected, (config, split)


def shard_paths(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.glob("*/*.parquet"))


def writes(hub_server, start: int = 0) -> list[tuple[str, str]]:
    """Requests that change something (or prepare a change) on the server."""
    return [(m, p) for m, p in hub_server.requests[start:] if m in ("POST", "PUT") and "paths-info" not in p]


# -- round trips ---------------------------------------------------------------------------------------------


def test_push_round_trip_plain_lfs(hub_server, token, build_dir, capsys):
    assert constants.HF_HUB_DISABLE_XET  # the fixture's default: the plain LFS path

    assert main(["push", str(build_dir), "--repo-id", REPO]) == 0

    out = capsys.readouterr().out
    expected_files = [*shard_paths(build_dir), "README.md", "build_manifest.json", "rejects.jsonl"]
    assert f"pushed {build_dir} to {REPO}@main: {len(expected_files)} file(s) uploaded" in out
    head = hub_server.head(REPO)
    assert f"commit {head}" in out
    remote = hub_server.files(REPO)
    assert sorted(remote) == sorted([".gitattributes", *expected_files])
    for path in shard_paths(build_dir) + ["build_manifest.json", "rejects.jsonl"]:
        assert remote[path] == (build_dir / path).read_bytes()
    # One commit on top of the repo's initial one; LFS objects went through batch + PUT, never through xet.
    manifest = json.loads(remote["build_manifest.json"])
    assert [c.title for c in HfApi(token=token).list_repo_commits(REPO, repo_type="dataset")] == [
        f"Upload coord_bench {manifest['coord_bench_version']} build of {manifest['built_at']}",
        "initial commit",
    ]
    requests = hub_server.requests
    assert ("POST", f"/datasets/{REPO}.git/info/lfs/objects/batch") in requests
    assert ("POST", f"/datasets/{REPO}.git/info/lfs/objects/verify") in requests
    assert ("POST", "/api/validate-yaml") in requests  # the client checks the card's YAML before uploading
    assert not [p for _, p in requests if "xet" in p]
    distinct = {hashlib.sha256((build_dir / p).read_bytes()).hexdigest() for p in shard_paths(build_dir)}
    assert sorted(u.oid for u in hub_server.lfs_uploads) == sorted(distinct)  # each object sent once

    # The card names the real repo, parses as a Hub card, and `datasets` reads its configs (the loads below).
    card = DatasetCard(remote["README.md"].decode())
    assert f'load_dataset("{REPO}", "all")' in card.text
    assert {c["config_name"] for c in card.data.configs} == set(splits_of(build_dir))
    assert (build_dir / "README.md").read_text() != remote["README.md"].decode()  # the local card is untouched
    assert_hub_matches(build_dir)
    assert hub_server.outbound_attempts == []


def test_push_round_trip_local_xet(hub_server, token, xet, build_dir):
    result = push(build_dir, REPO)

    requests = hub_server.requests
    assert ("GET", f"/api/datasets/{REPO}/xet-write-token/main") in requests
    assert not [p for _, p in requests if "/lfs/" in p or p.startswith("/lfs-upload/")]  # no LFS batch, no PUT
    repo = hub_server.repos[("dataset", REPO)]
    shards = shard_paths(build_dir)
    assert {hashlib.sha256((build_dir / p).read_bytes()).hexdigest() for p in shards} <= set(repo.xet_hashes)
    assert list(Path(xet).rglob("*.mdb"))  # hf_xet wrote its shards into the server's local CAS
    assert result.changed and sorted(result.uploaded) == sorted(
        [*shards, "README.md", "build_manifest.json", "rejects.jsonl"]
    )
    tree = {f.path: f for f in HfApi().list_repo_tree(REPO, repo_type="dataset", recursive=True)}
    assert all(tree[p].xet_hash for p in shards)

    start = len(hub_server.requests)
    assert_hub_matches(build_dir)
    # Reads went through xet too: the client asked for read tokens and hf_xet reconstructed the files.
    assert any("/xet-read-token/" in p for _, p in hub_server.requests[start:])
    assert hub_server.outbound_attempts == []


# -- interruptions -------------------------------------------------------------------------------------------


@pytest.fixture
def fast_retries(monkeypatch):
    """The client retries a failed PUT 5 times over ~23 s; keep the retries, drop the waiting."""
    import huggingface_hub.lfs as lfs

    monkeypatch.setattr(lfs, "http_backoff", functools.partial(lfs.http_backoff, base_wait_time=0, max_wait_time=0))


def test_interrupted_push_resumes_without_resending(hub_server, token, build_dir, fast_retries):
    victim = "all/train-00000-of-00001.parquet"
    victim_oid = hashlib.sha256((build_dir / victim).read_bytes()).hexdigest()
    # Every upload of that object dies after 4 KB, retries included: the push fails mid-upload.
    hub_server.drop_connection_after_bytes(4096, route=victim_oid, times=None)

    with pytest.raises(PushError) as exc:
        push(build_dir, REPO)

    assert "run the same push again to resume" in str(exc.value)
    assert token not in str(exc.value)
    initial = hub_server.head(REPO)
    assert sorted(hub_server.files(REPO)) == [".gitattributes"]  # nothing committed
    first = list(hub_server.lfs_uploads)
    assert {u.oid for u in first if not u.completed} == {victim_oid}
    assert all(u.received <= 4096 for u in first if u.oid == victim_oid)
    done = {u.oid for u in first if u.completed}
    assert done and victim_oid not in done

    hub_server.clear_faults()
    result = push(build_dir, REPO)

    second = hub_server.lfs_uploads[len(first) :]
    assert [(u.oid, u.completed) for u in second] == [(victim_oid, True)]  # only what was missing was sent
    assert result.changed and hub_server.head(REPO) != initial
    assert_hub_matches(build_dir)


def test_transient_drop_is_retried_within_the_push(hub_server, token, build_dir, fast_retries):
    victim_oid = hashlib.sha256((build_dir / "debate/train-00000-of-00001.parquet").read_bytes()).hexdigest()
    hub_server.drop_connection_after_bytes(1000, route=victim_oid, times=1)

    result = push(build_dir, REPO)

    attempts = [(u.completed, u.received <= 1000) for u in hub_server.lfs_uploads if u.oid == victim_oid]
    assert attempts == [(False, True), (True, False)]
    assert len(result.new_commits) == 1


def test_failed_commit_resumes_with_nothing_to_upload_again_xet(hub_server, token, xet, build_dir):
    hub_server.fail_next(r"/commit/main$", times=1, status=500)

    with pytest.raises(PushError, match="run the same push again"):
        push(build_dir, REPO)

    assert sorted(hub_server.files(REPO)) == [".gitattributes"]
    xorbs = sorted(p for p in Path(xet).rglob("default.*") if not p.name.endswith(".tagset"))
    assert xorbs  # the data reached the CAS before the commit failed
    push(build_dir, REPO)
    # The re-run deduplicated every chunk against the CAS: no new xorb was written.
    assert sorted(p for p in Path(xet).rglob("default.*") if not p.name.endswith(".tagset")) == xorbs
    assert_hub_matches(build_dir)


# -- idempotence and incremental pushes ----------------------------------------------------------------------


def test_identical_repush_makes_no_commit(hub_server, token, build_dir, tmp_path, capsys):
    folder = copy_build(build_dir, tmp_path)
    first = push(folder, REPO)
    api = HfApi(token=token)
    commits = [c.commit_id for c in api.list_repo_commits(REPO, repo_type="dataset")]
    start = len(hub_server.requests)

    assert main(["push", str(folder), "--repo-id", REPO]) == 0

    assert "no changes" in capsys.readouterr().out
    assert [c.commit_id for c in api.list_repo_commits(REPO, repo_type="dataset")] == commits
    assert writes(hub_server, start) == []  # no preupload, no LFS batch, no PUT, no commit
    again = push(folder, REPO)
    assert not again.changed and again.commit_sha == first.commit_sha and again.uploaded == []
    assert sorted(again.unchanged) == sorted(first.uploaded)

    # A new report is the only file sent by the next push; a stale one is deleted in the same commit.
    (folder / "reports").mkdir()
    (folder / "reports" / "quality.json").write_text('{"agreement": 0.5}\n')
    (folder / "artifacts" / "latent_model").mkdir(parents=True)
    (folder / "artifacts" / "latent_model" / "model.json").write_text('{"k": 4}\n')
    third = push(folder, REPO)
    assert sorted(third.uploaded) == ["artifacts/latent_model/model.json", "reports/quality.json"]
    (folder / "reports" / "quality.json").unlink()
    fourth = push(folder, REPO)
    assert fourth.uploaded == [] and fourth.deleted == ["reports/quality.json"]
    assert "reports/quality.json" not in hub_server.files(REPO)
    assert hub_server.files(REPO)["artifacts/latent_model/model.json"] == b'{"k": 4}\n'
    assert len(api.list_repo_commits(REPO, repo_type="dataset")) == len(commits) + 2


# -- tokens --------------------------------------------------------------------------------------------------


def test_missing_token_is_a_clear_error_and_stored_login_works(hub_server, build_dir, capsys):
    hub_server.add_token("hf_stored_login_token", "ns")

    assert main(["push", str(build_dir), "--repo-id", REPO]) == 2

    err = capsys.readouterr().err.strip()
    assert err == (
        "coord-bench push: error: no Hugging Face token: set HF_TOKEN to a token with write access, "
        "or run `hf auth login`"
    )
    assert hub_server.requests == [] and hub_server.repos == {}
    # The stored login (what `hf auth login` writes) is used when HF_TOKEN is unset.
    Path(constants.HF_TOKEN_PATH).parent.mkdir(parents=True, exist_ok=True)
    Path(constants.HF_TOKEN_PATH).write_text("hf_stored_login_token")
    assert push(build_dir, REPO).changed


def test_invalid_token_is_a_clear_error(hub_server, build_dir, monkeypatch, capsys):
    bad = "hf_" + secrets.token_hex(20)
    monkeypatch.setenv("HF_TOKEN", bad)

    assert main(["push", str(build_dir), "--repo-id", REPO]) == 2

    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("coord-bench push: error: the Hub rejected the token (401")
    assert "HF_TOKEN" in lines[0] and "hf auth login" in lines[0]
    assert bad not in captured.err + captured.out
    assert hub_server.repos == {}  # nothing created


def test_token_is_never_printed_logged_or_pushed(
    hub_server, token, xet, build_dir, tmp_path, tmp_path_factory, capfd, caplog
):
    import huggingface_hub.utils.logging as hf_logging

    caplog.set_level(logging.DEBUG)  # every logger, huggingface_hub's and httpx2's included
    hf_logging.set_verbosity_debug()
    try:
        assert main(["push", str(build_dir), "--repo-id", REPO, "--private"]) == 0
        hub_server.fail_next(r"/commit/", times=1, status=500)
        folder = copy_build(build_dir, tmp_path)
        (folder / "reports").mkdir()
        (folder / "reports" / "r.json").write_text("{}")
        assert main(["push", str(folder), "--repo-id", REPO]) == 2  # a failure message, checked below too
        assert main(["push", str(folder), "--repo-id", REPO]) == 0
    finally:
        hf_logging.set_verbosity_warning()

    captured = capfd.readouterr()
    assert "coord-bench push: error: push to ns/name@main failed" in captured.err
    assert "About to commit to the hub" in caplog.text  # huggingface_hub's debug logs were captured
    assert token not in captured.out + captured.err + caplog.text
    snapshot = Path(snapshot_download(REPO, repo_type="dataset", token=token, cache_dir=tmp_path / "dl"))
    pushed = [p for p in snapshot.rglob("*") if p.is_file()]
    assert len(pushed) == len(hub_server.files(REPO))
    assert not [p for p in pushed if token.encode() in p.read_bytes()]
    # Nor in any file the clients left on disk: caches, the server's xet CAS, and hf_xet's logs, which go to the
    # HF_HOME of the first test that started hf_xet in this process: all under pytest's base temp folder.
    roots = [tmp_path_factory.getbasetemp(), Path(hub_server.xet_dir)]
    leaked = [p for root in roots for p in root.rglob("*") if p.is_file() and token.encode() in p.read_bytes()]
    assert leaked == []


def test_a_file_holding_the_token_is_refused(hub_server, token, build_dir, tmp_path):
    folder = copy_build(build_dir, tmp_path)
    (folder / "reports").mkdir()
    (folder / "reports" / "env.txt").write_text(f"HF_TOKEN={token}\n")

    with pytest.raises(PushError) as exc:
        push(folder, REPO)

    assert "reports/env.txt contains your Hub token" in str(exc.value) and token not in str(exc.value)
    assert hub_server.requests == []


def test_a_file_holding_the_judge_api_key_is_refused(hub_server, token, build_dir, tmp_path, monkeypatch):
    folder = copy_build(build_dir, tmp_path)
    (folder / "reports").mkdir()
    notes = folder / "reports" / "notes.txt"
    default_key = "sk-or-v1-" + secrets.token_hex(16)
    monkeypatch.setenv("OPENROUTER_API_KEY", default_key)  # the judge's default api_key_env
    notes.write_text(f"judge: {default_key}\n")

    with pytest.raises(PushError) as exc:
        push(folder, REPO)
    assert "reports/notes.txt contains the judge's API key ($OPENROUTER_API_KEY)" in str(exc.value)
    assert default_key not in str(exc.value) and token not in str(exc.value)

    # the variable the manifest's annotations.judge names instead
    manifest = json.loads((folder / "build_manifest.json").read_text())
    manifest.setdefault("annotations", {})["judge"] = {"api_key_env": "MY_JUDGE_KEY"}
    (folder / "build_manifest.json").write_text(json.dumps(manifest))
    own_key = "sk-" + secrets.token_hex(16)
    monkeypatch.setenv("MY_JUDGE_KEY", own_key)
    notes.write_text(f"judge: {own_key}\n")
    with pytest.raises(PushError) as exc:
        push(folder, REPO)
    assert "reports/notes.txt contains the judge's API key ($MY_JUDGE_KEY)" in str(exc.value)
    assert own_key not in str(exc.value)
    assert hub_server.requests == []


def test_secret_scan_finds_a_key_across_read_chunks_and_skips_an_unset_variable(tmp_path, monkeypatch):
    key = "sk-" + secrets.token_hex(16)
    monkeypatch.setenv("OPENROUTER_API_KEY", key)
    big = tmp_path / "big.bin"
    big.write_bytes(b"a" * ((1 << 20) - 10) + key.encode() + b"b" * 100)  # split by the 1 MiB reads
    files = [_local_file("ok.txt", b"nothing to see"), _local_file("big.bin", big)]
    with pytest.raises(PushError, match=r"big.bin contains the judge's API key \(\$OPENROUTER_API_KEY\)"):
        _check_no_token(files, "hf_" + secrets.token_hex(20), {})
    with pytest.raises(PushError, match="big.bin contains your Hub token"):
        _check_no_token(files, key, {})  # the same value as both: named as the Hub token
    monkeypatch.setenv("OPENROUTER_API_KEY", "")  # set but empty: nothing to look for
    _check_no_token(files, "hf_" + secrets.token_hex(20), {})
    monkeypatch.delenv("OPENROUTER_API_KEY")
    _check_no_token(files, "hf_" + secrets.token_hex(20), {"annotations": {"judge": {"api_key_env": "UNSET_VAR"}}})


# -- visibility, branches, validity, shard size --------------------------------------------------------------


def test_private_repo(hub_server, token, build_dir, monkeypatch):
    import datasets

    result = push(build_dir, REPO, private=True)

    assert result.private and hub_server.repos[("dataset", REPO)].private
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(RepositoryNotFoundError):
        HfApi().dataset_info(REPO)
    with pytest.raises(datasets.exceptions.DatasetNotFoundError):
        datasets.load_dataset(REPO, "debate")
    assert HfApi(token=token).dataset_info(REPO).private
    assert_hub_matches(build_dir, token=token)


def test_private_flag_makes_an_existing_public_repo_private(hub_server, token, build_dir):
    push(build_dir, REPO)
    assert not hub_server.repos[("dataset", REPO)].private
    result = push(build_dir, REPO, private=True)
    assert result.private and not result.changed and hub_server.repos[("dataset", REPO)].private


def test_push_to_a_revision(hub_server, token, build_dir, tmp_path, capsys):
    import datasets

    main_sha = push(build_dir, REPO).commit_sha
    folder = copy_build(build_dir, tmp_path)
    (folder / "reports").mkdir()
    (folder / "reports" / "judge.json").write_text('{"calls": 0}\n')

    assert main(["push", str(folder), "--repo-id", REPO, "--revision", "v2"]) == 0

    assert f"to {REPO}@v2" in capsys.readouterr().out
    refs = {b.name: b.target_commit for b in list_repo_refs(REPO, repo_type="dataset").branches}
    assert refs["main"] == main_sha and refs["v2"] != main_sha
    assert "reports/judge.json" in hub_server.files(REPO, "v2")
    assert "reports/judge.json" not in hub_server.files(REPO, "main")
    ds = datasets.load_dataset(REPO, "debate", split="train", revision="v2")
    assert [r["id"] for r in ds] == [i for i, _ in parquet_ids(folder, "debate", "train")]
    assert_hub_matches(folder, revision="v2")
    # A branch on a brand-new repo starts from its initial commit.
    assert push(build_dir, "ns/other", revision="dev").changed
    assert sorted(hub_server.files("ns/other", "main")) == [".gitattributes"]


def test_invalid_build_is_refused_and_nothing_is_pushed(hub_server, token, build_dir, tmp_path, capsys):
    folder = copy_build(build_dir, tmp_path)
    manifest = json.loads((folder / "build_manifest.json").read_text())
    manifest["configs"]["debate"]["num_rows"] += 1
    (folder / "build_manifest.json").write_text(json.dumps(manifest))

    assert main(["push", str(folder), "--repo-id", REPO]) == 2

    err = capsys.readouterr().err
    assert err.startswith(f"coord-bench push: error: refusing to push {folder}: it is not a valid build, 1 problem")
    assert "the manifest says" in err and "nothing was pushed" in err
    assert hub_server.requests == [] and hub_server.repos == {}
    assert main(["push", str(tmp_path), "--repo-id", REPO]) == 2  # not a build at all
    assert "is not a coord_bench build" in capsys.readouterr().err
    assert main(["push", str(build_dir), "--repo-id", "no-namespace"]) == 2
    assert "invalid repo id 'no-namespace'" in capsys.readouterr().err


def test_oversized_shards_are_resharded_by_row_groups(hub_server, token, build_dir, tmp_path):
    folder = copy_build(build_dir, tmp_path)
    shard = folder / "all" / "train-00000-of-00001.parquet"
    table = pq.read_table(shard)
    pq.write_table(table, shard, row_group_size=3, compression="zstd")  # same rows, several row groups
    limit = int(shard.stat().st_size * 0.75)
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    result = push(folder, REPO, max_shard_bytes=limit)

    assert result.resharded == ["all/train"]
    remote = hub_server.files(REPO)
    parts = sorted(p for p in remote if p.startswith("all/train-"))
    assert len(parts) >= 2 and parts[0].endswith(f"-of-{len(parts):05d}.parquet")
    assert all(len(remote[p]) <= limit for p in parts)
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before  # the build is untouched
    assert_hub_matches(folder)
    # Re-sharding is deterministic: the same push again changes nothing.
    assert not push(folder, REPO, max_shard_bytes=limit).changed
    # Back to one shard (a bigger limit): the extra remote shards are deleted, not left to leak into the config.
    wide = push(folder, REPO)
    assert wide.deleted == parts and "all/train-00000-of-00001.parquet" in wide.uploaded
    assert sorted(p for p in hub_server.files(REPO) if p.startswith("all/train-")) == [
        "all/train-00000-of-00001.parquet"
    ]
    assert_hub_matches(folder)


def test_a_row_group_over_the_limit_is_refused(hub_server, token, build_dir, capsys):
    assert main(["push", str(build_dir), "--repo-id", REPO, "--max-shard-size", "10KB"]) == 2

    err = capsys.readouterr().err
    assert "under the shard limit of 10240 bytes: one row group alone makes a" in err
    assert "larger --max-shard-size" in err
    assert hub_server.requests == []
