"""Recipe locks: the commit each Hub source of a recipe was read at, so that later builds read the same bytes.

A recipe may ask for ``revision: main``. The first build that reads a Hub source resolves it and writes
``<recipe stem>.lock.json`` beside the recipe (``schemas/recipe_lock.schema.json``): per source the repo, the
requested revision, the resolved commit, the file patterns downloaded, and every file with its size and
sha256. Later builds read the locked commit (from the cache without asking the Hub, when it is there) and
check every file against the lock. An entry whose repo, revision or patterns no longer match the recipe is
stale: the recipe changed, so the source is locked again. ``--locked`` (CI, maintainers) fails instead, and
also when the Hub head of the requested revision has moved; ``--update-lock`` moves the lock on purpose.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coord_bench.locate import hub_head, hub_patterns, hub_source, snapshot_files
from coord_bench.schema import describe_error, validator
from coord_bench.sources import SourceSpec

LOCK_SCHEMA = "recipe_lock.schema.json"
LOCK_VERSION = 1
MAX_PROBLEMS_SHOWN = 5


class LockError(ValueError):
    """A lock is missing, stale, invalid or contradicted by the files; the message names the lock file."""


def lock_path(recipe_path: str | Path) -> Path:
    """``builder_scripts/coord_bench.yaml`` -> ``builder_scripts/coord_bench.lock.json``."""
    recipe_path = Path(recipe_path)
    return recipe_path.with_name(recipe_path.stem + ".lock.json")


def _check(data: Any, path: Path) -> None:
    found = sorted(validator(LOCK_SCHEMA).iter_errors(data), key=lambda e: list(e.absolute_path))
    if found:
        raise LockError(f"lock file {path} is invalid:\n  " + "\n  ".join(describe_error(e) for e in found))


def read_lock(path: Path) -> dict[str, dict[str, Any]]:
    """The lock's entries by source name; a lock that is not valid JSON or breaks the schema is an error."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise LockError(
            f"lock file {path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg}); "
            "fix it, or delete it and build again to lock the recipe afresh"
        ) from None
    except UnicodeDecodeError:
        raise LockError(f"lock file {path} is not UTF-8 text; delete it and build again") from None
    _check(data, path)
    return data["sources"]


@dataclass
class RecipeLock:
    """The lock of one recipe file, read once, consulted per Hub source, written back if anything moved."""

    path: Path
    locked: bool = False  # --locked: fail rather than lock anything, and fail if the Hub head moved
    update: bool = False  # --update-lock: re-resolve every Hub source that is built
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    exists: bool = False
    changed: bool = False
    notes: list[str] = field(default_factory=list)  # one line per Hub source, for the build's output

    @classmethod
    def beside(cls, recipe_path: str | Path, *, locked: bool = False, update: bool = False) -> RecipeLock:
        path = lock_path(recipe_path)
        if locked and update:
            raise LockError("--locked and --update-lock contradict each other: give one of them")
        exists = path.is_file()
        return cls(path, locked, update, read_lock(path) if exists else {}, exists)

    def stale_reason(self, name: str, repo: str, revision: str, patterns: list[str]) -> str | None:
        """Why the lock does not cover this source as the recipe asks for it; None when it does."""
        if not self.exists:
            return f"no lock file {self.path} yet"
        entry = self.sources.get(name)
        if entry is None:
            return f"source '{name}' is not in the lock yet"
        for key, wanted in (("repo", repo), ("revision", revision), ("patterns", patterns)):
            if entry[key] != wanted:
                return f"the recipe asks for {key} {wanted!r} of '{name}', the lock holds {entry[key]!r}"
        return None

    def resolve(self, name: str, location: dict[str, Any], adapter: str, configs: list[str] | None) -> SourceSpec:
        """Fetch a Hub source at its locked commit, or lock it (first build, stale entry, ``--update-lock``)."""
        repo, revision = location["hub"], location.get("revision", "main")
        patterns = hub_patterns(adapter, configs)
        stale = self.stale_reason(name, repo, revision, patterns)
        if stale and self.locked:
            raise LockError(f"--locked: {stale}; build once without --locked (or with --update-lock) to lock it")
        if stale or self.update:
            return self._lock(name, repo, revision, adapter, configs, stale or "--update-lock")
        entry = self.sources[name]
        commit = entry["commit"]
        if self.locked:
            head = hub_head(name, repo, revision)
            if head != commit:
                raise LockError(
                    f"--locked: {repo}@{revision} (source '{name}') has moved on the Hub from the locked commit "
                    f"{commit} to {head}; rebuild with --update-lock to move {self.path} on purpose"
                )
        spec = hub_source(name, repo, commit, adapter, config_patterns=configs)
        self._verify(name, entry, spec.root)
        self.notes.append(f"{name}: {repo}@{revision} read at the locked commit {commit}")
        return spec

    def _lock(
        self, name: str, repo: str, revision: str, adapter: str, configs: list[str] | None, why: str
    ) -> SourceSpec:
        spec = hub_source(name, repo, revision, adapter, config_patterns=configs)
        patterns = hub_patterns(adapter, configs)
        entry = {"repo": repo, "revision": revision, "commit": spec.revision, "patterns": patterns}
        entry["files"] = snapshot_files(spec.root, patterns)
        before = (self.sources.get(name) or {}).get("commit")
        self.changed |= self.sources.get(name) != entry
        self.sources[name] = entry
        moved = f" (was {before})" if before and before != spec.revision else ""
        self.notes.append(f"{name}: locked {repo}@{revision} at {spec.revision}{moved}: {why}")
        return spec

    def _verify(self, name: str, entry: dict[str, Any], folder: Path) -> None:
        """Every locked file is there with its size and sha256, and nothing else matches the patterns."""
        found = {f["path"]: f for f in snapshot_files(folder, entry["patterns"])}
        problems = []
        for want in entry["files"]:
            got = found.pop(want["path"], None)
            if got is None:
                problems.append(f"{want['path']} is missing")
            elif (got["bytes"], got["sha256"]) != (want["bytes"], want["sha256"]):
                problems.append(
                    f"{want['path']} has {got['bytes']} bytes, sha256 {got['sha256']}; the lock says "
                    f"{want['bytes']} bytes, sha256 {want['sha256']}"
                )
        problems += [f"{path} is not in the lock" for path in sorted(found)]
        if problems:
            more = len(problems) - MAX_PROBLEMS_SHOWN
            raise LockError(
                f"lock file {self.path}: source '{name}' at commit {entry['commit']}: the files do not match the "
                f"lock: {'; '.join(problems[:MAX_PROBLEMS_SHOWN])}{f'; and {more} more' if more > 0 else ''}. "
                f"A damaged local Hub cache? Delete {folder} and build again."
            )

    def describe(self, name: str, location: dict[str, Any], adapter: str, configs: list[str] | None) -> str:
        """The dry run's word on a Hub source: its locked commit, or why the next build will lock it."""
        repo, revision = location["hub"], location.get("revision", "main")
        stale = self.stale_reason(name, repo, revision, hub_patterns(adapter, configs))
        if stale:
            return f"none usable ({stale}): the next build locks it; --locked fails"
        return f"commit {self.sources[name]['commit']} ({self.path})"

    def save(self) -> None:
        """Write the lock (validated) if a source was locked or moved; atomically, so no half-written lock."""
        if not self.changed:
            return
        data = {"lock_version": LOCK_VERSION, "sources": dict(sorted(self.sources.items()))}
        _check(data, self.path)
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            temporary.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError as err:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise LockError(
                f"cannot write the lock file {self.path} ({err.strerror}): the lock lives beside the recipe, so its "
                "folder must be writable; copy the recipe to a folder you can write to and build from there"
            ) from None
        self.exists, self.changed = True, False


def lock_for(
    recipe: dict[str, Any], recipe_path: Path | None, *, locked: bool, update: bool, say: Callable[[str], None]
) -> RecipeLock | None:
    """The lock of a build: beside its recipe file when the recipe reads a Hub source, else none (``recipe_path``
    None: the default recipe, which keeps no lock, so ``locked`` and ``update`` cannot be honoured)."""
    from coord_bench.recipe import source_location

    if not any(source_location(s).get("hub") for s in recipe["sources"]):
        if locked or update:
            say("no Hub source in this build: nothing to lock")
        return None
    if recipe_path is None:
        if locked or update:
            raise LockError(
                "--locked and --update-lock need a recipe file: the lock lives beside it (the default recipe "
                "keeps none); save the recipe to a file and build that"
            )
        return None
    return RecipeLock.beside(recipe_path, locked=locked, update=update)

