"""``coord-bench``: argument parsing only; the work is done by build, validate and export."""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import sys
from pathlib import Path

from coord_bench import __version__
from coord_bench.build_folder import DEFAULT_MAX_SHARD_SIZE
from coord_bench.export import FORMATS
from coord_bench.mappers.registry import LAYERS as ANNOTATION_NAMES
from coord_bench.sources import adapter_class


class UsageError(ValueError):
    pass


def _holding(args: argparse.Namespace, *folders: Path) -> contextlib.ExitStack:
    """The locks of the build folders this command writes or reads (see folder_lock), in a fixed order so two
    commands that need the same two folders cannot deadlock."""
    from coord_bench.folder_lock import folder_lock

    stack = contextlib.ExitStack()
    try:
        for folder in sorted({Path(f).resolve() for f in folders}):
            stack.enter_context(folder_lock(folder, args.command, args.wait))
    except BaseException:
        stack.close()
        raise
    return stack


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
    if args.latent_model:
        sets += ["annotations.latents.enabled=true", f"annotations.latents.model_path={json.dumps(args.latent_model)}"]
    if args.limit is not None:
        sets.append(f"output.limit={args.limit}")
    if args.max_shard_size:
        sets.append(f"output.max_shard_size={args.max_shard_size}")
    if args.judge_model:
        sets.append(f"annotations.judge.models={json.dumps(args.judge_model)}")
    if args.max_calls is not None:
        sets.append(f"annotations.judge.max_calls={args.max_calls}")
    if args.max_cost_usd is not None:
        sets.append(f"annotations.judge.max_cost_usd={args.max_cost_usd}")
    if args.annotate is not None:
        wanted = (
            []
            if args.annotate.strip().lower() == "none"
            else [n.strip() for n in args.annotate.split(",") if n.strip()]
        )
        unknown = [n for n in wanted if n not in ANNOTATION_NAMES]
        if unknown:
            raise UsageError(f"unknown annotation(s) {', '.join(unknown)}; known: {', '.join(ANNOTATION_NAMES)}")
        wanted += ["latents"] if args.latent_model else []
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
    from coord_bench.build import build_dataset
    from coord_bench.console import build_summary, where_to_look
    from coord_bench.recipe import (
        apply_overrides,
        default_recipe_path,
        describe_plan,
        load_recipe,
        to_plan,
        validate_recipe,
    )

    engine = _engine(args)
    path = Path(args.recipe) if args.recipe else default_recipe_path()
    recipe = load_recipe(path)
    validate_recipe(recipe, origin=str(path))
    recipe = apply_overrides(_flag_overrides(args, recipe), args.set)
    validate_recipe(recipe, origin=f"{path} with the overrides")
    from coord_bench.lock import lock_for

    lock = lock_for(recipe, path if args.recipe else None, locked=args.locked, update=args.update_lock, say=print)
    if args.dry_run:
        text, failed = describe_plan(recipe, origin=str(path), lock=lock)
        print(text)
        if failed:
            from coord_bench.plan import BuildError

            raise BuildError("the dry run found a source that maps nothing:\n  " + "\n  ".join(failed))
        return 0
    plan = to_plan(recipe, lock=lock)
    if lock is not None:
        lock.save()
        print("\n".join(lock.notes))
    else:
        for spec in plan.sources:
            if spec.revision:
                print(f"{spec.name}: read {spec.dataset} at {spec.revision} (not locked: a recipe file keeps a lock)")
    if args.raise_budget and "judge" in plan.annotations:
        plan.annotations["judge"]["raise_budget"] = True  # a run option: never recorded in the recipe
    with _holding(args, plan.out_dir):
        manifest = build_dataset(plan, not args.no_progress, print, engine)
        print(build_summary(manifest, plan.out_dir))
        if (recipe.get("output") or {}).get("report"):
            from coord_bench.report import main as write_report

            write_report(plan.out_dir)
    print(where_to_look(plan.out_dir, manifest))
    return 0


def _engine(args: argparse.Namespace):
    """The build's engine: None for the local one (no Ray import), else pass 1 on Ray at ``--address``."""
    if args.engine == "local":
        if args.address:
            raise UsageError("--address names a Ray cluster: it goes with --engine ray")
        return None
    from coord_bench.ray_engine import on_ray

    return on_ray(args.address)


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


def cmd_push(args: argparse.Namespace) -> int:
    from coord_bench.publish import push

    with _holding(args, Path(args.dir)):
        result = push(
            Path(args.dir),
            args.repo_id,
            private=args.private,
            revision=args.revision,
            max_shard_bytes=args.max_shard_size,
        )
    where = f"{result.repo_id}@{result.revision}" + (" (private)" if result.private else "")
    if result.resharded:
        print(f"re-sharded under {args.max_shard_size}: {', '.join(result.resharded)}")
    if not result.changed:
        print(f"no changes: {where} already holds {args.dir} (commit {result.commit_sha}); nothing uploaded")
        return 0
    print(
        f"pushed {args.dir} to {where}: {len(result.uploaded)} file(s) uploaded, {len(result.unchanged)} "
        f"unchanged (skipped), {len(result.deleted)} stale file(s) deleted"
    )
    print(f"commit {result.commit_sha}: {result.url}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from coord_bench.build_folder import read_manifest
    from coord_bench.card import write_card
    from coord_bench.label_report import write_labels_report
    from coord_bench.report import main as write_report

    with _holding(args, Path(args.dir)):
        status = write_report(Path(args.dir))
        labels = write_labels_report(Path(args.dir))
        card = write_card(Path(args.dir), read_manifest(Path(args.dir)))
    print(f"wrote {labels}; updated the card: {card}")
    return status


def _judge_params(args: argparse.Namespace, base: dict) -> dict:
    """Judge parameters for `label`: the build's recipe section, then --set, then the flags."""
    import yaml
    from jsonschema import Draft202012Validator

    from coord_bench.schema import load_schema

    params = {k: v for k, v in base.items() if k != "enabled"}
    for item in args.set:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set expects KEY=VALUE (a judge parameter), got {item!r}")
        params[key.strip()] = yaml.safe_load(text) if text.strip() else ""
    flags = {
        "models": args.judge_model or None,
        "max_calls": args.max_calls,
        "max_cost_usd": args.max_cost_usd,
        "base_url": args.base_url,
        "concurrency": args.concurrency,
        "mode": args.mode,
        "api_key_env": args.api_key_env,
        "sample_seed": args.seed,
        "sample_size": args.sample_size,
    }
    params.update({k: v for k, v in flags.items() if v is not None})
    if args.both_orders:
        params["both_orders"] = True
    section = load_schema("recipe.schema.json")["properties"]["annotations"]["properties"]["judge"]
    found = Draft202012Validator(section).iter_errors(params)
    errors = [f"{'.'.join(map(str, e.absolute_path)) or 'judge'}: {e.message}" for e in found]
    if errors:
        raise UsageError("invalid judge parameters: " + "; ".join(errors))
    return params


def cmd_label(args: argparse.Namespace) -> int:
    from coord_bench.console import label_estimate, label_summary
    from coord_bench.label import label_build, recovered_manifest

    with _holding(args, Path(args.dir), *([Path(args.out)] if args.out else [])):
        manifest = recovered_manifest(Path(args.dir), say=print)
        base = (((manifest.get("recipe") or {}).get("annotations") or {}).get("judge")) or {}
        params = _judge_params(args, base)
        if args.raise_budget:
            params["raise_budget"] = True
        result = label_build(
            Path(args.dir), params, out=args.out, dry_run=args.dry_run, progress=not args.no_progress, say=print
        )
    print(label_estimate(result) if args.dry_run else label_summary(args.out or args.dir, result))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from coord_bench.build_folder import read_manifest
    from coord_bench.card import write_card
    from coord_bench.console import benchmark_tables
    from coord_bench.evaluate import BENCHMARK_REPORT, run_benchmark, score_predictions, unknown_tasks

    unknown = unknown_tasks(args.task)
    if unknown:
        from coord_bench.tasks import TASKS

        raise UsageError(f"unknown task(s) {', '.join(unknown)}; tasks: {', '.join(TASKS)}")
    if args.predictions:
        if len(args.task) != 1:
            raise UsageError("--predictions scores one task: give exactly one --task")
        result = score_predictions(Path(args.dir), args.task[0], Path(args.predictions), progress=not args.no_progress)
        entry = {"status": "ok", "reason": None, "splits": result["splits"],
                 "results": [{"predictor": Path(args.predictions).name, **row} for row in result["results"]]}
        print(benchmark_tables({"tasks": {result["task"]: entry}}))
        return 0
    with _holding(args, Path(args.dir)):
        report = run_benchmark(Path(args.dir), args.task or None, progress=not args.no_progress)
        card = write_card(Path(args.dir), read_manifest(Path(args.dir)))  # its Benchmark section follows
    print(benchmark_tables(report))
    print(f"updated the card's Benchmark section: {card}")
    print(f"wrote {Path(args.dir) / BENCHMARK_REPORT}")
    return 0


def cmd_review_sample(args: argparse.Namespace) -> int:
    from coord_bench.review import review_files, review_sample

    count = review_sample(Path(args.dir), Path(args.out), n=args.n, seed=args.seed, judged_only=args.judged_only)
    csv_path, jsonl_path, guide = review_files(args.out)
    print(f"wrote {count} conversations (stratified by source, config and native outcome) to {csv_path} and "
          f"{jsonl_path}; the annotation guide is {guide}")  # fmt: skip
    return 0


def cmd_review_import(args: argparse.Namespace) -> int:
    from coord_bench.label_report import REPORT
    from coord_bench.review_import import STORE, review_import

    with _holding(args, Path(args.dir)):
        manifest = review_import(Path(args.dir), [Path(f) for f in args.files], say=print)
    review = manifest["annotations"]["human_review"]
    print(f"stored the labels of {', '.join(review['annotators'])} on {review['conversations']} conversations: "
          f"{Path(args.dir) / STORE} and annotations.coordination.labels; agreement in {Path(args.dir) / REPORT} "
          "and the card's \"How good are the labels\" section")  # fmt: skip
    return 0


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def _wait_flag(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--wait", nargs="?", type=_seconds, const=float("inf"), metavar="SECONDS",
        help="if another command holds the build folder, wait for it (at most SECONDS); default: stop at once",
    )  # fmt: skip


def _raise_budget_flag(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--raise-budget", action="store_true",
        help="allow judge caps above those this build's budget ledger already holds (spends more, on purpose)",
    )  # fmt: skip


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
    build.add_argument(
        "--locked", action="store_true",
        help="fail unless the recipe's lock file pins every Hub source and the Hub heads have not moved (CI)",
    )
    build.add_argument(
        "--update-lock", action="store_true", help="resolve the Hub sources' revisions afresh and rewrite the lock"
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
    build.add_argument("--latent-model", metavar="PATH",
                       help="apply this fitted latent model (artifacts/latent_model of a build) instead of fitting")
    build.add_argument("--limit", type=int, help="read at most N raw records per source (recipe output.limit)")
    build.add_argument("--max-shard-size", help="largest Parquet shard, e.g. 100MB (recipe output.max_shard_size)")
    build.add_argument("--no-progress", action="store_true", help="no progress bar")
    build.add_argument(
        "--engine", choices=("local", "ray"), default="local",
        help="ray: read, normalize, count tokens and embed on a Ray cluster (the same rows as local, the default)",
    )  # fmt: skip
    build.add_argument("--address", help="the Ray cluster of --engine ray (default: start one on this machine)")
    build.add_argument(
        "--judge-model", action="append", default=[], metavar="MODEL",
        help="judge model (repeatable; recipe annotations.judge.models)",
    )
    build.add_argument("--max-calls", type=int, help="judge hard cap on requests (annotations.judge.max_calls)")
    build.add_argument(
        "--max-cost-usd", type=float, help="judge hard cap on spend in USD (annotations.judge.max_cost_usd)"
    )
    _wait_flag(build)
    _raise_budget_flag(build)
    build.set_defaults(func=cmd_build)

    validate = sub.add_parser("validate", help="check every record of a built folder against the JSON Schema")
    validate.add_argument("dir")
    validate.add_argument("--max-errors", type=int, default=20, help="how many failures to print (default 20)")
    validate.set_defaults(func=cmd_validate)

    export = sub.add_parser("export", help="export the arena config to another layout")
    export.add_argument("dir")
    export.add_argument("--format", choices=FORMATS, required=True)
    export.add_argument("--out", required=True)
    export.add_argument("--config", default="chatbot_arena", help="config to export (default chatbot_arena)")
    export.set_defaults(func=cmd_export)

    label = sub.add_parser("label", help="judge an existing build with an LLM (in place, or into --out)")
    label.add_argument("dir")
    label.add_argument("--out", help="write the labelled build here instead of in place")
    label.add_argument("--judge-model", action="append", default=[], metavar="MODEL", help="judge model (repeatable)")
    label.add_argument("--max-calls", type=int, help="hard cap on requests (retries and re-asks count)")
    label.add_argument("--max-cost-usd", type=float, help="hard cap on spend in USD")
    label.add_argument("--base-url", help="OpenAI-compatible API (default https://openrouter.ai/api/v1)")
    label.add_argument("--api-key-env", help="environment variable holding the key (default OPENROUTER_API_KEY)")
    label.add_argument("--concurrency", type=int, help="requests in flight at most")
    label.add_argument("--mode", choices=["auto", "json_schema", "json_object", "tool", "prompt"])
    label.add_argument("--seed", type=int, help="sample seed (annotations.judge.sample_seed)")
    label.add_argument("--sample-size", type=int, help="conversations to judge (default: what max-calls allows)")
    label.add_argument("--both-orders", action="store_true", help="judge pairwise conversations in both A/B orders")
    label.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="any other judge parameter, e.g. --set timeout_s=30 (repeatable)",
    )
    label.add_argument("--dry-run", action="store_true", help="print the estimated requests, tokens and cost only")
    label.add_argument("--no-progress", action="store_true", help="no progress bar")
    _wait_flag(label)
    _raise_budget_flag(label)
    label.set_defaults(func=cmd_label)

    evaluate = sub.add_parser(
        "evaluate", help="score the benchmark tasks' baselines (or your predictions) on a build's test split"
    )
    evaluate.add_argument("dir")
    evaluate.add_argument("--task", action="append", default=[], metavar="NAME",
                          help="a task to run (repeatable; default: every task)")
    evaluate.add_argument("--predictions", metavar="FILE",
                          help="score these predictions (JSONL or Parquet: id + the task's fields) for one --task")
    evaluate.add_argument("--no-progress", action="store_true", help="no progress bar")
    _wait_flag(evaluate)
    evaluate.set_defaults(func=cmd_evaluate)

    review = sub.add_parser(
        "review-sample", help="export a stratified sample of a build for human review (CSV, JSONL and a guide)"
    )
    review.add_argument("dir")
    review.add_argument("--n", type=int, help="conversations (default: the recipe's review.sample_size, else 30)")
    review.add_argument("--out", required=True, help="CSV file to write (the JSONL and the guide go beside it)")
    review.add_argument("--seed", type=int, help="sample seed (default: the recipe's review.sample_seed, else 0)")
    review.add_argument("--judged-only", action="store_true", help="sample only conversations a judge labelled")
    review.set_defaults(func=cmd_review_sample)

    review_in = sub.add_parser(
        "review-import", help="read annotators' review files back: store the human labels and report agreement"
    )
    review_in.add_argument("dir")
    review_in.add_argument(
        "files", nargs="+", metavar="FILE",
        help="filled-in review files (CSV or JSONL); annotator: the annotator column, else the file name",
    )  # fmt: skip
    _wait_flag(review_in)
    review_in.set_defaults(func=cmd_review_import)

    push = sub.add_parser(
        "push", help="validate a built folder and upload it to a Hub dataset repo (token: HF_TOKEN or `hf auth login`)"
    )
    push.add_argument("dir")
    push.add_argument("--repo-id", required=True, metavar="NS/NAME", help="the dataset repo (created if missing)")
    push.add_argument("--private", action="store_true", help="create the repo private (or make it private)")
    push.add_argument("--revision", metavar="REV", help="branch to push to (created from main if missing)")
    push.add_argument(
        "--max-shard-size", default=DEFAULT_MAX_SHARD_SIZE,
        help=f"largest shard on the Hub; bigger ones are re-sharded ({DEFAULT_MAX_SHARD_SIZE})",
    )
    _wait_flag(push)
    push.set_defaults(func=cmd_push)

    report = sub.add_parser("report", help="write DIR/report/index.html: the build's figures and counts")
    report.add_argument("dir")
    _wait_flag(report)
    report.set_defaults(func=cmd_report)
    return top


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; expected failures print one clear line and exit 2, never a traceback."""
    from coord_bench.folder_lock import FolderBusy
    from coord_bench.locate import SourceLocationError
    from coord_bench.plan import BuildError
    from coord_bench.publish import PushError

    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (SourceLocationError, BuildError, PushError, FolderBusy, OSError, ValueError, sqlite3.Error) as err:
        # ValueError covers UsageError, RecipeError, UnknownSourceError and PredictionError; OSError covers
        # missing files and NotABuildError
        print(f"coord-bench {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
