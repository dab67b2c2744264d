"""The dataset card: ``dataset_card.md`` filled from the build manifest, with the YAML ``datasets`` reads.

The YAML's ``configs`` tell ``load_dataset`` which Parquet files make each config and split; its
``dataset_info`` carries the features and the row counts. No number in the card is typed by hand.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from pathlib import Path
from typing import Any

import datasets
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard

from coord_bench.build_folder import CARD_FILE, shard_files, shard_split
from coord_bench.labels import MODES_BY_ID, mast_markdown
from coord_bench.markdown import table
from coord_bench.report.latent_quality import quality_markdown
from coord_bench.resources import resource_path
from coord_bench.schema import features, load_schema
from coord_bench.sources import adapter_class


def _size_category(rows: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if rows < limit:
            return label
    return "n>1M"


def _columns(node: dict[str, Any], prefix: str = "") -> list[list[str]]:
    """One row per column path, with its JSON type and description, walking nested objects and lists."""
    rows = []
    for name, child in node.get("properties", {}).items():
        path = f"{prefix}{name}"
        kind = child.get("type", "enum" if "enum" in child else "")
        kind = " or ".join(kind) if isinstance(kind, list) else kind
        if "enum" in child:
            kind = "one of " + ", ".join("null" if v is None else f"`{v}`" for v in child["enum"])
        rows.append([f"`{path}`", kind, child.get("description", "")])
        if "properties" in child:
            rows += _columns(child, path + ".")
        items = child.get("items", {})
        if "properties" in items:
            rows += _columns(items, path + "[].")  # lists of objects inside them too (turns[].messages[])
    return rows


def _field_map(adapters: list[str]) -> str:
    parts = []
    for name in adapters:
        cls = adapter_class(name)
        rows = [[f"`{k}`", "column", v] for k, v in cls.FIELD_MAP.items()]
        rows += [[f"`{k}`", "extras", v] for k, v in cls.KEPT_IN_EXTRAS.items()]
        rows += [[f"`{k}`", "dropped", v] for k, v in cls.DROPPED.items()]
        parts.append(
            f"### {name} ({cls.hub_repo_id or cls.SUMMARY})\n\n"
            + table(["source field", "goes to", "how / why"], rows)
            + "\n\nAny other field of a record is kept in `extras` (a JSON object)."
        )
    return "\n\n".join(parts)


def _method(layer: str) -> str:
    """A layer's method and formulas as the card publishes them: a text of its own, so that editing code or a
    docstring never changes a published card by accident."""
    from importlib.resources import files

    return files("coord_bench").joinpath("card_methods", f"{layer}.md").read_text(encoding="utf-8").strip()


def _annotations_section(manifest: dict[str, Any]) -> str:
    """One subsection per layer that ran: its method and formulas, its settings, and its results."""
    layers = manifest.get("annotations") or {}
    if not layers:
        return "No annotation layer ran in this build: the `annotations` columns and `n_tokens` are null."
    parts = []
    for name, info in layers.items():
        settings = _without_local_paths({k: v for k, v in info.items() if k not in ("quality", "agreement")})
        text = f"### {name}\n\n{_method(name)}\n\nSettings and counts of this build: `{json.dumps(settings)}`"
        if name == "embeddings" and info.get("precision"):
            text += f"\n\nVectors of this build: {info['backend']}, {info['reason']}."
        if name == "latents" and info.get("quality"):
            text += "\n\n" + quality_markdown(info["quality"])
        if name == "judge" and (info.get("budget") or {}).get("ledger"):
            text += "\n\n" + _judge_budget(info["budget"]["ledger"])
        if info.get("agreement"):
            text += f"\n\nAgreement: `{json.dumps(info['agreement'])}`"
        parts.append(text)
    if "rules" in layers or "failure_modes" in (layers.get("judge") or {}).get("tasks", {}):
        parts.append(_failure_modes_section())
    return "\n\n".join(parts)


def _failure_modes_section() -> str:
    """The MAST taxonomy (from ``coord_bench.labels``) and which modes the rules decide (from their table)."""
    from coord_bench.mappers.rules import MAST_RULES, RULES_CANNOT_JUDGE

    rules = table(
        ["rule", "evidences", "mode"],
        [[f"`{r.name}`", f"`mast:{r.mode}`", MODES_BY_ID[r.mode].name] for r in MAST_RULES],
    )
    cannot = ", ".join(f"`mast:{i}` ({MODES_BY_ID[i].name})" for i in RULES_CANNOT_JUDGE)
    return (
        f"### Failure modes (MAST)\n\n{mast_markdown()}\n\nRules that fill a mode from native evidence "
        f"(provenance `rule:...`; the judge's `failure_modes` task answers every mode):\n\n{rules}\n\n"
        f"The rules cannot judge, and never emit: {cannot}."
    )


def _load_examples(manifest: dict[str, Any], repo_id: str) -> str:
    """``load_dataset`` lines for exactly the configs this build has rows in, the default one first."""
    default = manifest["default_config"]
    loadable = [name for name, info in manifest["configs"].items() if info["num_rows"]]
    lines = []
    for name in sorted(loadable, key=lambda n: n != default):
        info = manifest["configs"][name]
        split = next(s for s, count in info["splits"].items() if count)
        variable = "ds_" + re.sub(r"\W", "_", name)
        if name == default:
            lines.append(f'ds = load_dataset("{repo_id}", "{name}")  # {", ".join(info["sources"])}; every split')
            lines.append(f'stream = load_dataset("{repo_id}", "{name}", split="{split}", streaming=True)')
        else:
            lines.append(f'{variable} = load_dataset("{repo_id}", "{name}", split="{split}")')
    return "\n".join(lines)


PATH_KEYS = ("path", "dir", "cache_dir", "model_path")  # recipe and layer settings that hold local paths


def _without_local_paths(value: Any) -> Any:
    """``value`` as a card may show it: every local path (a source folder, the output folder, a cache, a model
    file) by its last name only, since a path on the maintainer's machine is private."""
    if isinstance(value, dict):
        return {
            key: Path(item).name if key in PATH_KEYS and isinstance(item, str) else _without_local_paths(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_without_local_paths(item) for item in value]
    return value


def _judge_budget(ledger: dict[str, Any]) -> str:
    """The judge's spending over every run on this build, from its budget ledger."""
    return (
        f"Judge budget (a ledger keyed by {ledger['keyed_by']}, over {ledger['runs']} run(s) that sent requests): "
        f"{ledger['calls_sent']} calls sent, {ledger['answered']} answered, {ledger['failed']} failed, "
        f"{ledger['lost_in_crash']} lost in a crash (sent or about to be when a run was killed; counted as spent "
        f"at their estimate, since a provider may have billed them); ${ledger['spent_usd']:.4f} spent. Remaining: "
        f"{ledger['calls_remaining']} of {ledger['max_calls']} calls and ${ledger['usd_remaining']:.4f} of "
        f"${ledger['max_cost_usd']:g}."
    )


def _recipe_block(manifest: dict[str, Any]) -> str:
    """The resolved recipe: with it, `coord-bench build recipe.yaml` rebuilds this dataset."""
    import yaml

    if manifest.get("recipe") is None:
        return "This build was made without a recipe (through the Python API)."
    recipe = manifest["recipe"]
    local = [s["name"] for s in recipe.get("sources", []) if (s.get("location") or {}).get("path")]
    note = (
        f"\n\nLocal source folders ({', '.join(local)}) are shown by their folder name only: point "
        "`location.path` at your copy."
        if local
        else ""
    ) + (
        "\n\nThe output folder (`output.dir`), caches (`cache_dir`) and model files (`model_path`) are shown by "
        "their name only."
    )
    return (
        f"Save this resolved recipe (sha256 `{manifest['recipe_hash']}`) as `recipe.yaml` and run "
        "`coord-bench build recipe.yaml`:\n\n```yaml\n"
        + yaml.safe_dump(_without_local_paths(recipe), sort_keys=False, allow_unicode=True)
        + "```"
        + note
    )


def _shard_stats(folder: Path, config: str, split: str) -> tuple[int, int, list[str]]:
    """(uncompressed bytes, file bytes, sha256 of each file) of one config's split, from the files on disk."""
    import pyarrow.parquet as pq

    from coord_bench.locate import file_sha256

    data_bytes = file_bytes = 0
    digests = []
    for path in (p for p in shard_files(folder, config) if shard_split(p) == split):
        meta = pq.ParquetFile(path).metadata
        data_bytes += sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        file_bytes += path.stat().st_size
        digests.append(file_sha256(path))
    return data_bytes, file_bytes, digests


def card_metadata(manifest: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The YAML ``configs``, ``dataset_info`` and size category of the build in ``folder``.

    ``load_dataset(folder, config)`` caches by a hash of the card's ``configs`` and ``dataset_info``, not of
    the files: a rebuild whose card looked the same would be served from the cache of the previous build. So
    each config's ``dataset_info`` carries its real byte sizes, and its ``description`` (a builder-config
    field, hashed too) a fingerprint of the shards' contents: new content, new cache entry.
    """
    from huggingface_hub import DatasetCardData

    card_data = DatasetCardData()
    loadable = {name: info for name, info in manifest["configs"].items() if info["num_rows"]}
    stats = {
        (name, split): _shard_stats(Path(folder), name, split)
        for name, info in loadable.items()
        for split, count in info["splits"].items()
        if count
    }

    def fingerprint(name: str) -> str:
        digests = [
            f"{split}:{digest}"
            for (config, split), (_, _, shard_digests) in sorted(stats.items())
            if config == name
            for digest in shard_digests
        ]
        return hashlib.sha256("\n".join(digests).encode()).hexdigest()[:16]

    configs = MetadataConfigs(
        {
            name: {
                "data_files": [
                    {"split": split, "path": f"{name}/{split}-*.parquet"}
                    for split, count in info["splits"].items()
                    if count
                ],
                "description": f"coord_bench config {name}: {', '.join(info['sources'])}; "
                f"shard content sha256 {fingerprint(name)}",
                **({"default": True} if name == manifest["default_config"] else {}),
            }
            for name, info in loadable.items()
        }
    )
    configs.to_dataset_card_data(card_data)
    infos = DatasetInfosDict()
    for name, info in loadable.items():
        splits = [
            {"name": split, "num_examples": count, "num_bytes": stats[name, split][0]}
            for split, count in info["splits"].items()
            if count
        ]
        infos[name] = datasets.DatasetInfo(
            features=features(),
            config_name=name,
            dataset_name="coord_bench",
            splits=datasets.SplitDict.from_split_dict(splits),
            download_size=sum(stats[name, s["name"]][1] for s in splits),
            dataset_size=sum(s["num_bytes"] for s in splits),
        )
    infos.to_dataset_card_data(card_data)
    total = max((c["num_rows"] for c in manifest["configs"].values()), default=0)
    card_data["size_categories"] = [_size_category(total)]
    return card_data.to_dict()


def render_card(manifest: dict[str, Any], repo_id: str, out_dir: Path) -> str:
    """The full README.md text: the template's YAML merged with the build's, and its body filled in.

    With ``out_dir`` holding a ``report/`` (``coord-bench report``), its figures fill the Figures section;
    the YAML's sizes and fingerprints come from its shards.
    """
    from coord_bench.evaluate import card_section as benchmark_section
    from coord_bench.label_report import card_section as labels_section
    from coord_bench.report import card_figures

    template = DatasetCard(resource_path("dataset_card.md").read_text(encoding="utf-8"))
    metadata = {**template.data.to_dict(), **card_metadata(manifest, out_dir)}
    sources = manifest["sources"]
    adapters = sorted({s["adapter"] for s in sources.values()})
    source_adapters = {name: s["adapter"] for name, s in sources.items()}
    source_tags = [tag for a in adapters for tag in adapter_class(a).TAGS]
    metadata["tags"] = list(dict.fromkeys([*metadata.get("tags", []), *source_tags]))
    metadata["multilinguality"] = (
        "multilingual" if any(adapter_class(a).MULTILINGUAL for a in adapters) else "monolingual"
    )
    metadata["license_details"] = (
        "Each row keeps the license of its source (column provenance.source_license): "
        + "; ".join(f"{name} ({s['dataset']}): {s['license']}" for name, s in sources.items())
        + ". The annotations added by coord_bench are Apache-2.0."
    )
    body = string.Template(template.text).substitute(
        builder_version=manifest["coord_bench_version"],
        schema_version=manifest["schema_version"],
        built_at=manifest["built_at"],
        load_examples=_load_examples(manifest, repo_id),
        split_ratios=", ".join(f"{k} {v}" for k, v in manifest["split_method"]["ratios"].items()),
        configs_table=table(
            ["config", "sources", *manifest["split_method"]["ratios"], "rows"],
            [
                [f"`{name}`", ", ".join(info["sources"]), *info["splits"].values(), info["num_rows"]]
                for name, info in manifest["configs"].items()
            ],
        ),
        sources_table=table(
            ["source", "adapter", "read from", "revision", "read", "normalized", "rejected", "filtered"],
            [
                [name, s["adapter"], s["dataset"], s["revision"] or "-", s["read"], s["normalized"], s["rejected"],
                 s["filtered"]]
                for name, s in sources.items()
            ],
        ),
        licenses_table=table(
            ["source", "adapter", "read from", "license"],
            [[name, s["adapter"], s["dataset"], s["license"]] for name, s in sources.items()],
        ),
        columns_table=table(["column", "type", "meaning"], _columns(load_schema())),
        field_map=_field_map(adapters),
        recipe_block=_recipe_block(manifest),
        annotations_section=_annotations_section(manifest),
        source_summary="; ".join(f"{adapter_class(a).SUMMARY} as `{n}`" for n, a in source_adapters.items()),
        source_notes="\n".join(f"- **{n}** ({sources[n]['dataset']}): " + "; ".join(adapter_class(a).CAVEATS) + "."
                                for n, a in source_adapters.items()),
        group_keys="\n".join(f"- **{n}**: {adapter_class(a).GROUP_KEY}" for n, a in source_adapters.items()),
        source_limitations="\n".join(f"- {n}: {adapter_class(a).CAVEATS[-1]}." for n, a in source_adapters.items()),
        figures=card_figures(out_dir),
        benchmark=benchmark_section(out_dir),
        labels=labels_section(out_dir),
    )
    import yaml

    return "---\n" + yaml.safe_dump(metadata, sort_keys=False, allow_unicode=True) + "---\n\n" + body.lstrip()


def write_card(out_dir: Path, manifest: dict[str, Any], load_path: str | None = None) -> Path:
    """Write the card of the build in ``out_dir``. Its load snippets name ``load_path`` (default: the folder
    by its name, relative to where it sits), never an absolute local path; ``push`` re-renders it for the repo."""
    path = Path(out_dir) / CARD_FILE
    path.write_text(render_card(manifest, load_path or f"./{Path(out_dir).name}", out_dir), encoding="utf-8")
    return path
