"""``coord-bench push``: publish a built folder to the Hugging Face Hub: validated, resumable and idempotent.

What is uploaded: every config's Parquet shards (``<config>/<split>-0000i-of-0000n.parquet``), the card
(``README.md``, re-rendered so that its load snippets name the real repo), ``build_manifest.json``,
``rejects.jsonl`` and every file under ``artifacts/``, ``reports/`` and ``report/``. Hidden files and folders
(``.staging``, half-written shards) and anything else in the folder stay local.

How:

- The folder is validated first (``coord-bench validate``); an invalid build is refused and nothing is sent.
- Shards above ``max_shard_bytes`` are re-sharded by row groups into a temporary staging folder (the build
  folder is never modified); a single row group above the limit is refused with a clear message.
- The remote tree of the branch is compared with the local files (sha256 for LFS files, git blob id
  otherwise). Unchanged files are not uploaded; if nothing changed, no commit is made. Remote Parquet files and
  artifact files that the build no longer has are deleted in the same commit, so stale shards never leak into
  a config.
- Everything goes in one ``create_commit`` (split into several only past the Hub's per-commit file limit; the
  card comes last, so it never points at missing data). The commit names the branch head it started from as
  its parent: a branch moved by someone else during the push fails instead of being overwritten.
- Resumable: an interrupted push commits nothing. Run it again: LFS objects the Hub already holds are not sent
  again (the LFS batch API answers them without an upload action; with xet, chunks already in the CAS are
  deduplicated), and only the commit is left to make.
- The token comes from the ``token`` argument, else ``HF_TOKEN``, else the stored login (``hf auth login``).
  It is never printed, logged or written to a file: the files to upload are even checked not to contain it,
  nor the judge's API key (the value of the environment variable the manifest's ``annotations.judge``
  names in ``api_key_env``, default ``OPENROUTER_API_KEY``, when it is set).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from coord_bench import __version__
from coord_bench.build_folder import (
    CARD_FILE,
    DEFAULT_MAX_SHARD_BYTES,
    MANIFEST_FILE,
    REJECTS_FILE,
    parse_size,
    read_manifest,
    shard_files,
    shard_name,
    shard_split,
)
from coord_bench.card import render_card
from coord_bench.validate import validation_errors

logger = logging.getLogger(__name__)

DEFAULT_JUDGE_KEY_ENV = "OPENROUTER_API_KEY"  # the judge's default api_key_env (coord_bench.mappers.judge)
ARTIFACT_DIRS = ("artifacts", "reports", "report")
MAX_FILES_PER_COMMIT = 20_000  # the Hub takes up to 25k LFS files in one commit
SHOWN_PROBLEMS = 10
_REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")


class PushError(Exception):
    """An expected failure of a push, with a message that says what to do (it never holds the token)."""


@dataclass
class PushResult:
    repo_id: str
    revision: str
    commit_sha: str  # the branch head after the push (the old head when nothing changed)
    url: str
    private: bool
    new_commits: list[str] = field(default_factory=list)
    uploaded: list[str] = field(default_factory=list)  # paths added or changed by the push
    unchanged: list[str] = field(default_factory=list)  # paths already on the Hub with the same content
    deleted: list[str] = field(default_factory=list)  # stale remote shards / artifacts removed
    resharded: list[str] = field(default_factory=list)  # "config/split" rewritten under the shard limit

    @property
    def changed(self) -> bool:
        return bool(self.new_commits)


@dataclass
class _LocalFile:
    path_in_repo: str
    source: Path | bytes
    size: int
    sha256: str
    git_oid: str


def resolve_token(token: str | None = None) -> str:
    """The token argument, else HF_TOKEN, else the stored login; a clear error when there is none."""
    from huggingface_hub import get_token

    token = token or get_token()
    if not token:
        raise PushError("no Hugging Face token: set HF_TOKEN to a token with write access, or run `hf auth login`")
    return token


def push(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    max_shard_bytes: int | str = DEFAULT_MAX_SHARD_BYTES,
    token: str | None = None,
) -> PushResult:
    """Publish the built ``folder`` to the dataset repo ``repo_id`` (created if missing, private if asked).

    ``revision`` is a branch (created from main if missing). Shards over ``max_shard_bytes`` are re-sharded by
    row groups in a staging folder. Raises ``PushError`` (or ``NotABuildError``) on expected failures.
    """
    folder = Path(folder)
    if not _REPO_ID.fullmatch(repo_id or ""):
        raise PushError(f"invalid repo id {repo_id!r}: expected NAMESPACE/NAME")
    try:
        limit = parse_size(max_shard_bytes)
    except ValueError as err:
        raise PushError(str(err)) from None
    if limit <= 0:
        raise PushError("--max-shard-size must be positive")
    manifest = read_manifest(folder)
    _check_valid(folder)
    token = resolve_token(token)
    with tempfile.TemporaryDirectory(prefix="coord_bench_push_") as staging:
        files, resharded = _collect(folder, manifest, repo_id, limit, Path(staging))
        _check_no_token(files, token, manifest)
        committed: list[str] = []
        try:
            return _push_files(files, resharded, repo_id, private, revision or "main", token, manifest, committed)
        except PushError:
            raise
        except Exception as err:  # every client failure becomes one clear, token-free message
            raise _client_error(err, repo_id, revision or "main", token, committed) from err


# -- validation and the file list ----------------------------------------------------------------------------


def _check_valid(folder: Path) -> None:
    problems, count = [], 0
    for problem in validation_errors(folder):
        count += 1
        if count <= SHOWN_PROBLEMS:
            problems.append(problem)
    if count:
        more = f" (first {SHOWN_PROBLEMS} shown)" if count > SHOWN_PROBLEMS else ""
        raise PushError(
            f"refusing to push {folder}: it is not a valid build, {count} problem(s){more}; nothing was pushed. "
            f"Fix or rebuild it (`coord-bench validate {folder}` lists them all):\n  " + "\n  ".join(problems)
        )


def _collect(
    folder: Path, manifest: dict[str, Any], repo_id: str, limit: int, staging: Path
) -> tuple[list[_LocalFile], list[str]]:
    files: list[_LocalFile] = []
    resharded: list[str] = []
    for config in manifest["configs"]:
        by_split: dict[str, list[Path]] = {}
        for shard in shard_files(folder, config):
            by_split.setdefault(shard_split(shard) or shard.name, []).append(shard)
        for split, paths in sorted(by_split.items()):
            if all(p.stat().st_size <= limit for p in paths):
                files += [_local_file(f"{config}/{p.name}", p) for p in paths]
                continue
            if not all(shard_split(p) for p in paths):
                raise PushError(f"{folder / config / split} is over the shard limit and not a shard this build wrote")
            out_dir = staging / config
            out_dir.mkdir(parents=True, exist_ok=True)
            new = reshard(paths, out_dir, split, limit)
            logger.info("re-sharded %s/%s into %d shard(s) under %d bytes", config, split, len(new), limit)
            resharded.append(f"{config}/{split}")
            files += [_local_file(f"{config}/{p.name}", p) for p in new]
    card = render_card(manifest, repo_id, folder).encode("utf-8")  # folder: its report figures, if any
    files.append(_local_file(CARD_FILE, card))
    for name in (MANIFEST_FILE, REJECTS_FILE):
        if (folder / name).is_file():
            files.append(_local_file(name, folder / name))
    for top in ARTIFACT_DIRS:
        for path in sorted((folder / top).rglob("*")) if (folder / top).is_dir() else []:
            rel = path.relative_to(folder)
            if path.is_file() and not any(part.startswith(".") for part in rel.parts):
                files.append(_local_file(rel.as_posix(), path))
    return files, resharded


def _local_file(path_in_repo: str, source: Path | bytes) -> _LocalFile:
    sha256 = hashlib.sha256()
    if isinstance(source, bytes):
        size = len(source)
        sha256.update(source)
        git = hashlib.sha1(b"blob %d\0" % size + source)
    else:
        size = source.stat().st_size
        git = hashlib.sha1(b"blob %d\0" % size)
        with open(source, "rb") as f:
            while chunk := f.read(1 << 20):
                sha256.update(chunk)
                git.update(chunk)
    return _LocalFile(path_in_repo, source, size, sha256.hexdigest(), git.hexdigest())


def _judge_key(manifest: dict[str, Any]) -> tuple[str, str] | None:
    """(variable name, value) of the judge's API key, when that variable is set and not empty."""
    judge = (manifest.get("annotations") or {}).get("judge") or {}
    name = judge.get("api_key_env") or (judge.get("params") or {}).get("api_key_env") or DEFAULT_JUDGE_KEY_ENV
    value = os.environ.get(str(name))
    return (str(name), value) if value else None


def _check_no_token(files: list[_LocalFile], token: str, manifest: dict[str, Any] | None = None) -> None:
    """Refuse to publish a file that contains the Hub token or the judge's API key (it would be public); the
    message never shows either."""
    needles = {token.encode(): "your Hub token"}
    judge_key = _judge_key(manifest or {})
    if judge_key is not None:
        needles.setdefault(judge_key[1].encode(), f"the judge's API key (${judge_key[0]})")
    overlap = max(len(n) for n in needles) - 1  # bytes kept across chunks, so a secret split by a read is found
    for f in files:
        found = None
        if isinstance(f.source, bytes):
            found = next((n for n in needles if n in f.source), None)
        else:
            tail = b""
            with open(f.source, "rb") as stream:
                while found is None and (chunk := stream.read(1 << 20)):
                    window = tail + chunk
                    found = next((n for n in needles if n in window), None)
                    tail = window[-overlap:] if overlap else b""
        if found is not None:
            raise PushError(f"{f.path_in_repo} contains {needles[found]}; refusing to push it (nothing was pushed)")


# -- re-sharding ---------------------------------------------------------------------------------------------


def reshard(shards: list[Path], out_dir: Path, split: str, limit: int) -> list[Path]:
    """Rewrite a split's shards into ``<split>-0000i-of-0000n.parquet`` files of at most ``limit`` bytes each,
    moving whole row groups (rows keep their order; schema, its metadata and the codec are kept)."""
    first = pq.ParquetFile(shards[0])
    schema = first.schema_arrow
    codec = first.metadata.row_group(0).column(0).compression.lower() if first.metadata.num_row_groups else "zstd"
    empty = io.BytesIO()
    pq.ParquetWriter(empty, schema, compression=codec).close()
    fixed = len(empty.getvalue())  # magic bytes + a footer with the schema and no row group
    groups: list[tuple[Path, int, int]] = []  # (shard, row group, estimated bytes in a new file)
    for shard in shards:
        md = pq.ParquetFile(shard).metadata
        per_group_footer = max(0, md.serialized_size + 8 - fixed) / max(md.num_row_groups, 1)
        for i in range(md.num_row_groups):
            rg = md.row_group(i)
            data = sum(rg.column(c).total_compressed_size for c in range(rg.num_columns))
            groups.append((shard, i, int(data + per_group_footer) + 1))
    target = limit
    for _ in range(8):
        packs: list[list[tuple[Path, int, int]]] = [[]]
        size = fixed
        for group in groups:
            if packs[-1] and size + group[2] > target:
                packs.append([])
                size = fixed
            packs[-1].append(group)
            size += group[2]
        for old in out_dir.glob(f"{split}-*.parquet"):
            old.unlink()
        written = []
        for index, pack in enumerate(packs):
            path = out_dir / shard_name(split, index, len(packs))
            with pq.ParquetWriter(path, schema, compression=codec) as writer:
                for shard, i, _ in pack:
                    writer.write_table(pq.ParquetFile(shard).read_row_group(i))
            written.append(path)
        too_big = [(p, pack) for p, pack in zip(written, packs, strict=True) if p.stat().st_size > limit]
        if not too_big:
            return written
        if any(len(pack) == 1 for _, pack in too_big):
            path = too_big[0][0]
            raise PushError(
                f"cannot split {shards[0].parent.name}/{split} under the shard limit of {limit} bytes: one row "
                f"group alone makes a {path.stat().st_size}-byte shard. Push with a larger --max-shard-size"
            )
        target = int(target * 0.9)  # the footer estimate was short: pack tighter
    raise PushError(f"could not re-shard {shards[0].parent.name}/{split} under {limit} bytes")


# -- the Hub side --------------------------------------------------------------------------------------------


def _push_files(
    files: list[_LocalFile],
    resharded: list[str],
    repo_id: str,
    private: bool,
    revision: str,
    token: str,
    manifest: dict[str, Any],
    committed: list[str],
) -> PushResult:
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import RepositoryNotFoundError
    from huggingface_hub.hf_api import RepoFile

    api = HfApi(token=token, library_name="coord_bench", library_version=__version__)
    user = api.whoami()  # a bad token fails here, before anything is created
    logger.info("pushing as %s to dataset %s@%s", user.get("name"), repo_id, revision)
    try:
        info = api.dataset_info(repo_id)
    except RepositoryNotFoundError:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        info = api.dataset_info(repo_id)
    if private and not info.private:
        api.update_repo_settings(repo_id, repo_type="dataset", private=True)
    is_private = bool(private or info.private)
    if revision != "main":
        branches = {b.name for b in api.list_repo_refs(repo_id, repo_type="dataset").branches}
        if revision not in branches:
            api.create_branch(repo_id, repo_type="dataset", branch=revision, exist_ok=True)
    head = api.dataset_info(repo_id, revision=revision).sha
    remote = {
        f.path: f
        for f in api.list_repo_tree(repo_id, repo_type="dataset", revision=head, recursive=True)
        if isinstance(f, RepoFile)
    }

    url = f"{api.endpoint}/datasets/{repo_id}" + (f"/tree/{revision}" if revision != "main" else "")
    result = PushResult(repo_id, revision, head, url, is_private, resharded=resharded)
    changed = []
    for f in files:
        r = remote.get(f.path_in_repo)
        same = (
            r is not None
            and r.size == f.size
            and (r.lfs.sha256 == f.sha256 if r.lfs is not None else r.blob_id == f.git_oid)
        )
        if same:
            result.unchanged.append(f.path_in_repo)
        else:
            changed.append(f)
    local_paths = {f.path_in_repo for f in files}
    stale = sorted(
        path
        for path in remote
        if path not in local_paths and (path.endswith(".parquet") or path.split("/")[0] in ARTIFACT_DIRS)
    )
    if not changed and not stale:
        logger.info("no changes: %s@%s already holds this build (%s)", repo_id, revision, head)
        return result

    # Data first, in as few commits as the Hub allows; the card, manifest and deletions close the last one.
    last_names = {CARD_FILE, MANIFEST_FILE}
    data = [f for f in changed if f.path_in_repo not in last_names]
    final = [f for f in changed if f.path_in_repo in last_names]
    batches = [data[i : i + MAX_FILES_PER_COMMIT] for i in range(0, len(data), MAX_FILES_PER_COMMIT)] or [[]]
    if len(batches[-1]) + len(final) + len(stale) > MAX_FILES_PER_COMMIT:
        batches.append([])
    batches[-1] += final
    built = f"coord_bench {manifest.get('coord_bench_version', __version__)} build of {manifest.get('built_at')}"
    for n, batch in enumerate(batches, start=1):
        operations: list[Any] = []
        for f in batch:
            source = f.source if isinstance(f.source, bytes) else str(f.source)
            op = CommitOperationAdd(path_in_repo=f.path_in_repo, path_or_fileobj=source)
            op.upload_info.sha256 = bytes.fromhex(f.sha256)  # already hashed: spare the client a second read
            operations.append(op)
        if n == len(batches):
            operations += [CommitOperationDelete(path_in_repo=path) for path in stale]
        part = f" (part {n}/{len(batches)})" if len(batches) > 1 else ""
        logger.info("committing %d file(s)%s to %s@%s", len(operations), part, repo_id, revision)
        commit = api.create_commit(
            repo_id,
            operations,
            repo_type="dataset",
            revision=revision,
            commit_message=f"Upload {built}{part}",
            commit_description=f"recipe sha256 {manifest.get('recipe_hash')}" if manifest.get("recipe_hash") else "",
            parent_commit=result.commit_sha,
        )
        result.commit_sha = commit.oid
        result.new_commits.append(commit.oid)
        committed.append(commit.oid)
    result.uploaded = [f.path_in_repo for f in changed]
    result.deleted = stale
    return result


def _client_error(err: Exception, repo_id: str, revision: str, token: str, committed: list[str]) -> PushError:
    """One clear line for a failure of the Hub client; the token is scrubbed from whatever it says."""
    response = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    if status == 401:
        return PushError(
            "the Hub rejected the token (401 Unauthorized): it is invalid or expired. Set HF_TOKEN to a valid "
            "token with write access, or run `hf auth login --force`"
        )
    if status == 403:
        return PushError(f"the token may not write to dataset {repo_id} (403 Forbidden): use a token with write access")
    if status == 412:
        return PushError(f"{repo_id}@{revision} moved while pushing (412): someone else committed; run the push again")
    cause = f"{type(err).__name__}: {err}"
    if err.__cause__ is not None and str(err.__cause__) not in str(err):
        cause += f" ({type(err.__cause__).__name__}: {err.__cause__})"
    cause = " ".join(cause.split()).replace(token, "***")
    done = f"{len(committed)} commit(s) of this push were made" if committed else "nothing was committed"
    return PushError(
        f"push to {repo_id}@{revision} failed: {cause}. So far {done}; run the same push again to resume "
        "(files the Hub already received are not sent again)"
    )
