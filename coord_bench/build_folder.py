"""A build folder's layout, in one place: its files, its folders, its shard names, its manifest and its records.

    <folder>/build_manifest.json    what was built (a folder with one is a finished build)
    <folder>/rejects.jsonl          every record not kept, with the reason
    <folder>/README.md              the dataset card (its YAML declares the configs to ``datasets``)
    <folder>/<config>/<split>-00000-of-00002.parquet    the shards, named the way ``datasets`` and the Hub expect
    <folder>/artifacts/, reports/, report/              the latent model, its quality report, the HTML report

Configs overlap (``all`` repeats every other config), so "every record once" means reading each source from
the first config that holds it, the default config first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MANIFEST_FILE = "build_manifest.json"
REJECTS_FILE = "rejects.jsonl"
CARD_FILE = "README.md"
BUILD_FILES = (MANIFEST_FILE, REJECTS_FILE, CARD_FILE)
BUILD_FOLDERS = ("artifacts", "reports", "report", ".staging")  # written by a build or its report; replaced
DEFAULT_MAX_SHARD_SIZE = "100MB"  # the recipe's output.max_shard_size, and push's re-shard limit
SHARD_NAME = re.compile(r"(?P<split>.+)-(?P<index>\d{5})-of-(?P<total>\d{5})\.parquet")
READ_BATCH_ROWS = 200


class NotABuildError(FileNotFoundError):
    pass


def shard_name(split: str, index: int, total: int) -> str:
    return f"{split}-{index:05d}-of-{total:05d}.parquet"


def shard_split(path: Path) -> str | None:
    """The split a shard belongs to, from its name (None for a file not named like a shard)."""
    found = SHARD_NAME.fullmatch(Path(path).name)
    return found["split"] if found else None


def parse_size(text: str | int) -> int:
    """``100MB`` -> bytes (KB, MB and GB are powers of 1024, as in the recipe's ``output.max_shard_size``)."""
    if isinstance(text, int):
        return text
    value = str(text).strip().upper()
    try:
        for unit, factor in (("KB", 1 << 10), ("MB", 1 << 20), ("GB", 1 << 30), ("B", 1)):
            if value.endswith(unit):
                return int(float(value[: -len(unit)]) * factor)
        return int(float(value))
    except ValueError:
        raise ValueError(f"invalid size {text!r}: expected e.g. 100MB, 512KB or a number of bytes") from None


DEFAULT_MAX_SHARD_BYTES = parse_size(DEFAULT_MAX_SHARD_SIZE)


def built_by_us(folder: Path) -> set[str]:
    """The entries of a finished build that a rebuild replaces: its configs, its files and folders."""
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = {}
    return set(manifest.get("configs") or {}) | set(BUILD_FILES) | set(BUILD_FOLDERS)


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        raise NotABuildError(f"{folder} is not a coord_bench build: {MANIFEST_FILE} is missing")
    return json.loads(path.read_text(encoding="utf-8"))


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    text = json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"
    (Path(folder) / MANIFEST_FILE).write_text(text, encoding="utf-8")


def max_shard_bytes(manifest: dict[str, Any]) -> int:
    """The shard limit the build was made with (its recipe's, else the default)."""
    output = (manifest.get("recipe") or {}).get("output") or {}
    return parse_size(output.get("max_shard_size", DEFAULT_MAX_SHARD_SIZE))


def shard_files(folder: Path, config: str) -> list[Path]:
    """A config's shards in name order (split, then index); hidden files (a writer's parts) are not shards."""
    return sorted(p for p in (Path(folder) / config).glob("*.parquet") if not p.name.startswith("."))


def iter_rows(path: Path, batch_size: int = 256) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size):
        yield from batch.to_pylist()


def configs_covering(manifest: dict[str, Any]) -> list[tuple[str, set[str]]]:
    """(config, the sources first read from it): every source once, the default config first."""
    configs = manifest.get("configs", {})
    order = sorted(configs, key=lambda name: (name != manifest.get("default_config"), name))
    covered: set[str] = set()
    plan = []
    for name in order:
        fresh = set(configs[name].get("sources", [])) - covered
        if fresh:
            plan.append((name, fresh))
            covered |= fresh
    return plan


def iter_record_batches(
    folder: Path, manifest: dict[str, Any], columns: list[str] | None = None, batch_size: int = READ_BATCH_ROWS
) -> Iterator[list[dict[str, Any]]]:
    """Every record of the build once, a batch at a time; only ``columns`` (and ``source``) when given, and
    only the columns a shard has. Rows of one source and split keep their order."""
    import pyarrow.parquet as pq

    for config, sources in configs_covering(manifest):
        for path in shard_files(folder, config):
            file = pq.ParquetFile(path)
            read = None
            if columns is not None:
                available = {file.schema.column(i).path for i in range(len(file.schema))}
                wanted = [*columns, *([] if "source" in columns else ["source"])]
                read = [c for c in wanted if any(p == c or p.startswith(c + ".") for p in available)]
            for batch in file.iter_batches(batch_size=batch_size, columns=read):
                rows = [row for row in batch.to_pylist() if row.get("source") in sources]
                if rows:
                    yield rows
