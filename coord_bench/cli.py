"""``coord-bench``: argument parsing only; the work is done by build, validate and export."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from coord_bench import __version__
from coord_bench.sources import ADAPTERS, UnknownSourceError

ANNOTATIONS: tuple[str, ...] = ()  # the mappers this version can run; grows with the annotation layers


class UsageError(ValueError):
    pass


def _size(text: str) -> int:
    units = {"KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "B": 1}
    for unit, factor in units.items():
        if text.upper().endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name:
            raise UsageError(f"{flag} expects NAME=VALUE, got {value!r}")
        out[name] = rest
    return out


def _annotations(text: str) -> list[str]:
    if text.strip().lower() == "none":
        return []
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ANNOTATIONS]
    if unknown:
        available = ", ".join(ANNOTATIONS) or "none yet"
        raise UsageError(f"unknown annotation(s) {', '.join(unknown)}; available in this version: {available}")
    return names


def _source_specs(args: argparse.Namespace) -> list:
    from coord_bench.locate import embedded_source, hub_source, local_source

    names = [n.strip() for n in args.sources.split(",") if n.strip()] if args.sources else list(ADAPTERS)
    dirs = _pairs(args.source_dir, "--source-dir")
    hubs = dict(item.partition("=")[::2] for item in args.from_hub)
    for name in [*names, *dirs, *hubs]:
        if name not in ADAPTERS:
            raise UnknownSourceError(f"unknown source {name!r}; known sources: {', '.join(ADAPTERS)}")
    specs = []
    for name in names:
        if name in dirs:
            specs.append(local_source(name, dirs[name]))
        elif name in hubs:
            repo, _, revision = hubs[name].partition("@")
            specs.append(hub_source(name, repo or None, revision or None))
        else:
            specs.append(embedded_source(name))
    return specs


def cmd_build(args: argparse.Namespace) -> int:
    from coord_bench.build import BuildPlan, run_build

    plan = BuildPlan(
        sources=_source_specs(args),
        out_dir=Path(args.out),
        limit=args.limit,
        annotate=_annotations(args.annotate),
        max_shard_bytes=_size(args.max_shard_size),
    )
    manifest = run_build(plan, progress=not args.no_progress)
    print(f"wrote {plan.out_dir}")
    print(f"{'source':<28}{'read':>8}{'normalized':>12}{'rejected':>10}   train/validation/test")
    for name, s in manifest["sources"].items():
        splits = "/".join(str(v) for v in s["splits"].values())
        print(f"{name:<28}{s['read']:>8}{s['normalized']:>12}{s['rejected']:>10}   {splits}")
    t = manifest["totals"]
    print(f"{'total':<28}{t['read']:>8}{t['normalized']:>12}{t['rejected']:>10}")
    if t["rejected"]:
        print(f"rejected records and their reasons: {plan.out_dir / 'rejects.jsonl'}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from coord_bench.validate import validation_errors

    shown = 0
    for error in validation_errors(Path(args.dir)):
        shown += 1
        if shown <= args.max_errors:
            print(error, file=sys.stderr)
    if shown:
        print(
            f"INVALID: {shown} problem(s) in {args.dir}"
            + (f" (first {args.max_errors} shown)" if shown > args.max_errors else ""),
            file=sys.stderr,
        )
        return 1
    print(f"valid: every record in {args.dir} matches the schema and the manifest's counts add up")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from coord_bench.export import export_seed_json

    count = export_seed_json(Path(args.dir), Path(args.out), config=args.config)
    print(f"wrote {count} examples to {args.out}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="coord-bench", description=__doc__)
    top.add_argument("--version", action="version", version=f"coord_bench {__version__}")
    sub = top.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="build the dataset folder (default: every source's embedded sample)")
    build.add_argument("--sources", help=f"comma-separated sources to build (default: {','.join(ADAPTERS)})")
    build.add_argument(
        "--source-dir",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="read source NAME from a local folder in its Hub layout (repeatable)",
    )
    build.add_argument(
        "--from-hub",
        action="append",
        default=[],
        metavar="NAME[=REPO[@REV]]",
        help="read source NAME from the Hub (default repo of the source; HF_TOKEN for gated ones)",
    )
    build.add_argument("--out", default="out/coord_bench", help="output folder (default: out/coord_bench)")
    build.add_argument("--annotate", default="none", help="comma-separated annotation layers, or 'none'")
    build.add_argument("--limit", type=int, help="read at most N raw records per source")
    build.add_argument("--max-shard-size", default="100MB", help="largest Parquet shard (default: 100MB)")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.set_defaults(func=cmd_build)

    validate = sub.add_parser("validate", help="check every record of a built folder against the JSON Schema")
    validate.add_argument("dir")
    validate.add_argument("--max-errors", type=int, default=20, help="how many failures to print (default 20)")
    validate.set_defaults(func=cmd_validate)

    export = sub.add_parser("export", help="export the arena config to another layout")
    export.add_argument("dir")
    export.add_argument("--format", choices=["seed-json"], required=True)
    export.add_argument("--out", required=True)
    export.add_argument("--config", default="chatbot_arena", help="config to export (default chatbot_arena)")
    export.set_defaults(func=cmd_export)
    return top


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; expected failures print one clear line and exit 2, never a traceback."""
    from coord_bench.build import BuildError
    from coord_bench.dataset_dir import NotABuildError
    from coord_bench.locate import SourceLocationError

    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (
        UsageError,
        UnknownSourceError,
        SourceLocationError,
        BuildError,
        NotABuildError,
        FileNotFoundError,
        ValueError,
    ) as err:
        print(f"coord-bench {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
