"""``coord-bench validate``: every record of a built folder against the JSON Schema, plus the manifest's sums."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from coord_bench.build_folder import iter_rows, read_manifest, shard_files
from coord_bench.schema import record_errors


def validation_errors(folder: Path) -> Iterator[str]:
    """Yield one message per problem: the file, row, record id and field of each schema violation."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    for name, source in manifest["sources"].items():
        if source["read"] != source["normalized"] + source["rejected"] + source["filtered"]:
            yield (
                f"{folder}/build_manifest.json: source {name}: read {source['read']} != normalized "
                f"{source['normalized']} + rejected {source['rejected']} + filtered {source['filtered']}"
            )
    for config, info in manifest["configs"].items():
        files = shard_files(folder, config)
        if not files and info["num_rows"]:
            yield f"{folder}/{config}: no Parquet shards for config {config}"
        rows = 0
        for path in files:
            for row_number, record in enumerate(iter_rows(path)):
                rows += 1
                for error in record_errors(record):
                    yield f"{path.relative_to(folder)} row {row_number} (id {record.get('id')!r}): {error}"
        if rows != info["num_rows"]:
            yield f"{folder}/{config}: {rows} rows in the shards, but the manifest says {info['num_rows']}"
