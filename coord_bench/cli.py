"""``coord-bench``: argument parsing only; the work is done by build, validate and export."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from coord_bench import __version__
from coord_bench.sources import UnknownSourceError, adapter_class

ANNOTATION_NAMES = ("tokens", "embeddings", "latents", "rules", "judge")


class UsageError(ValueError):
    pass


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name:
            raise UsageError(f"{flag} expects NAME=VALUE, got {value!r}")
        out[name] = rest
    return out


def _flag_overrides(args: argparse.Namespace, recipe: dict) -> dict:
    """The build flags are shorthands for recipe fields: apply them to a copy of the recipe."""
    from coord_bench.recipe import apply_overrides

    known = [s["name"] for s in recipe["sources"]]
    sets: list[str] = []

    def check(name: str) -> None:
        if name not in known:
            raise UsageError(f"unknown source {name!r}; known sources: {', '.join(known)}")

    for name, path in _pairs(args.source_dir, "--source-dir").items():
        check(name)
        sets.append(f"sources.{name}.location={json.dumps({'path': path})}")
    for item in args.from_hub:
        name, _, target = item.partition("=")
        check(name)
        repo, _, revision = target.partition("@")
        repo = (
            repo
            or adapter_class(next(s.get("adapter", name) for s in recipe["sources"] if s["name"] == name)).hub_repo_id
        )
        location = {"hub": repo, **({"revision": revision} if revision else {})}
        sets.append(f"sources.{name}.location={json.dumps(location)}")
    if args.out:
        sets.append(f"output.dir={json.dumps(args.out)}")
    if args.limit is not None:
        sets.append(f"output.limit={args.limit}")
    if args.max_shard_size:
        sets.append(f"output.max_shard_size={args.max_shard_size}")
    if args.annotate is not None:
        wanted = (
            []
            if args.annotate.strip().lower() == "none"
            else [n.strip() for n in args.annotate.split(",") if n.strip()]
        )
        unknown = [n for n in wanted if n not in ANNOTATION_NAMES]
        if unknown:
            raise UsageError(f"unknown annotation(s) {', '.join(unknown)}; known: {', '.join(ANNOTATION_NAMES)}")
        sets += [f"annotations.{n}.enabled={'true' if n in wanted else 'false'}" for n in ANNOTATION_NAMES]
    recipe = apply_overrides(recipe, sets)
    if args.sources:
        keep = [n.strip() for n in args.sources.split(",") if n.strip()]
        for name in keep:
            check(name)
        recipe["sources"] = [s for s in recipe["sources"] if s["name"] in keep]
        configs = [{**c, "sources": [s for s in c["sources"] if s in keep]} for c in recipe.get("configs", [])]
        recipe["configs"] = [c for c in configs if c["sources"]]
    return recipe


def cmd_build(args: argparse.Namespace) -> int:
    from coord_bench.build import run_build
    from coord_bench.recipe import (
        apply_overrides,
        check_runnable,
        default_recipe_path,
        describe_plan,
        load_recipe,
        to_plan,
        validate_recipe,
    )

    path = Path(args.recipe) if args.recipe else default_recipe_path()
    recipe = load_recipe(path)
    validate_recipe(recipe, origin=str(path))
    recipe = apply_overrides(_flag_overrides(args, recipe), args.set)
    validate_recipe(recipe, origin=f"{path} with the overrides")
    if args.dry_run:
        print(describe_plan(recipe, origin=str(path)))
        return 0
    check_runnable(recipe)
    plan = to_plan(recipe)
    manifest = run_build(plan, progress=not args.no_progress)
    print(f"wrote {plan.out_dir}")
    print(f"{'source':<28}{'read':>8}{'normalized':>12}{'rejected':>10}{'filtered':>10}   train/validation/test")
    for name, s in manifest["sources"].items():
        splits = "/".join(str(v) for v in s["splits"].values())
        print(f"{name:<28}{s['read']:>8}{s['normalized']:>12}{s['rejected']:>10}{s['filtered']:>10}   {splits}")
    t = manifest["totals"]
    print(f"{'total':<28}{t['read']:>8}{t['normalized']:>12}{t['rejected']:>10}{t['filtered']:>10}")
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

    build = sub.add_parser(
        "build", help="build the dataset folder from a recipe (default: builder_scripts/sample.yaml)"
    )
    build.add_argument("recipe", nargs="?", help="a YAML recipe (default: the embedded sample recipe)")
    build.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a recipe field, e.g. --set output.limit=10 (repeatable)",
    )
    build.add_argument(
        "--dry-run", action="store_true", help="print what would be downloaded, built and spent; do nothing"
    )
    build.add_argument("--sources", help="comma-separated sources of the recipe to build (default: all)")
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
    build.add_argument("--out", help="output folder (recipe output.dir; default out/coord_bench)")
    build.add_argument("--annotate", help="comma-separated annotation layers to enable, or 'none'")
    build.add_argument("--limit", type=int, help="read at most N raw records per source (recipe output.limit)")
    build.add_argument("--max-shard-size", help="largest Parquet shard, e.g. 100MB (recipe output.max_shard_size)")
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
