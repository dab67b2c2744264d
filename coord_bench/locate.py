"""Where a source's files come from: the embedded default sample, a local folder, or a Hub dataset repo.

Every location resolves to a local folder in the source's Hub layout; Hub repos are fetched with
``huggingface_hub.snapshot_download`` (resumable, cached), and its errors become messages that say what to do.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from coord_bench.resources import PACKAGE_DIR
from coord_bench.sources import SourceSpec, adapter_class

EMBEDDED_DIR = PACKAGE_DIR / "data"


class SourceLocationError(RuntimeError):
    """A source could not be found or fetched; the message says which and what to do."""


def embedded_source(name: str, adapter: str | None = None) -> SourceSpec:
    """The small sample of a source that ships inside the package, in the source's raw layout."""
    adapter = adapter or name
    adapter_class(adapter)
    root = EMBEDDED_DIR / adapter
    return SourceSpec(name, adapter, root, f"coord_bench embedded sample of {adapter}")


def local_source(name: str, path: str | Path, adapter: str | None = None) -> SourceSpec:
    adapter = adapter or name
    adapter_class(adapter)
    root = Path(path).expanduser()
    if not root.is_dir():
        raise SourceLocationError(f"source '{name}': the folder {root} does not exist (or is not a folder)")
    # provenance names the folder only: a local path is private and must not reach a published card or row
    return SourceSpec(name, adapter, root.resolve(), f"local folder {root.resolve().name}")


def hub_patterns(adapter: str, config_patterns: list[str] | None = None) -> list[str]:
    """The files of a Hub source to download: the adapter's, or only those of the chosen configs."""
    cls = adapter_class(adapter)
    if config_patterns and cls.hub_config_pattern:
        return [cls.hub_config_pattern.format(config=p) for p in config_patterns]
    return list(cls.file_patterns)


@contextlib.contextmanager
def _hub_errors(name: str, repo_id: str, revision: str | None) -> Iterator[None]:
    """Turn huggingface_hub's errors into one line that says what to do."""
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except GatedRepoError:
        raise SourceLocationError(
            f"source '{name}': {repo_id} is gated. Accept its terms at https://huggingface.co/datasets/{repo_id} "
            "with your account, then set HF_TOKEN to a token of that account (or run `hf auth login`)."
        ) from None
    except RepositoryNotFoundError:
        raise SourceLocationError(
            f"source '{name}': the dataset repo {repo_id} was not found, or it is private and no valid token "
            "was given (set HF_TOKEN)."
        ) from None
    except RevisionNotFoundError:
        raise SourceLocationError(f"source '{name}': {repo_id} has no revision {revision!r}.") from None
    except LocalEntryNotFoundError:
        raise SourceLocationError(
            f"source '{name}': cannot reach the Hub to fetch {repo_id} and it is not in the local cache. "
            "Check the network, or point the source at a local copy with --source-dir."
        ) from None
    except (httpx2.ConnectError, httpx2.TimeoutException, OfflineModeIsEnabled):
        raise SourceLocationError(
            f"source '{name}': cannot reach the Hub to ask where {repo_id}@{revision} points. Check the network."
        ) from None
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else "?"
        raise SourceLocationError(f"source '{name}': the Hub refused {repo_id} (HTTP {status}).") from None


def hub_source(
    name: str,
    repo_id: str | None = None,
    revision: str | None = None,
    adapter: str | None = None,
    cache_dir: str | Path | None = None,
    config_patterns: list[str] | None = None,
) -> SourceSpec:
    """Download (or reuse from the cache) the source's data files from the Hub; with ``config_patterns``,
    only the files of the matching configs (for sources that have configs).

    Given a commit sha as ``revision`` (a locked build), a snapshot already in the cache is used without
    asking the Hub: huggingface_hub 2.x caches the tree of a commit, which cannot change."""
    from huggingface_hub import snapshot_download

    cls = adapter_class(adapter or name)
    repo_id = repo_id or cls.hub_repo_id
    if not repo_id:
        raise SourceLocationError(f"source '{name}': adapter {cls.name} has no default Hub repo; give a repo id")
    with _hub_errors(name, repo_id, revision):
        folder = snapshot_download(
            repo_id,
            repo_type="dataset",
            revision=revision,
            cache_dir=cache_dir,
            allow_patterns=hub_patterns(cls.name, config_patterns),
        )
    return SourceSpec(name, cls.name, Path(folder), repo_id, revision=_commit_of(folder))


def hub_head(name: str, repo_id: str, revision: str | None) -> str:
    """The commit a revision (branch, tag or sha) of a Hub dataset repo points at now."""
    from huggingface_hub import HfApi

    with _hub_errors(name, repo_id, revision):
        return HfApi().dataset_info(repo_id, revision=revision).sha


def _commit_of(snapshot_folder: str) -> str | None:
    """snapshot_download returns .../snapshots/<commit sha>: that sha pins what was read."""
    return Path(snapshot_folder).name or None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def snapshot_files(folder: Path, patterns: list[str]) -> list[dict[str, Any]]:
    """Path, size and sha256 of the snapshot's files that match ``patterns`` (what a lock records)."""
    from huggingface_hub.utils import filter_repo_objects

    paths = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return [
        {"path": p, "bytes": (folder / p).stat().st_size, "sha256": file_sha256(folder / p)}
        for p in filter_repo_objects(paths, allow_patterns=patterns)
    ]
