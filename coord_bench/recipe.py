"""Build recipes: YAML files, validated by ``schemas/recipe.schema.json``, that declare what a build makes.

A recipe plus ``--set key.path=value`` overrides resolves to one dict; its canonical JSON hash goes into
the manifest and the card with the resolved recipe itself, so a published dataset can be rebuilt from its
card alone. ``to_plan`` turns a resolved recipe into the ``BuildPlan`` the build runs.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from coord_bench.build_folder import DEFAULT_MAX_SHARD_SIZE, parse_size
from coord_bench.plan import BuildPlan, recipe_hash
from coord_bench.resources import resource_path
from coord_bench.schema import describe_error, validator
from coord_bench.sources import ADAPTERS, check_mapping
from coord_bench.splits import DEFAULT_RATIOS

if TYPE_CHECKING:
    from coord_bench.lock import RecipeLock

SAMPLE_RECIPE = "sample.yaml"
RECIPE_SCHEMA = "recipe.schema.json"


class RecipeError(ValueError):
    """An invalid recipe or override; the message names the key path, what was expected and what was found."""


def default_recipe_path() -> Path:
    return resource_path("builder_scripts") / SAMPLE_RECIPE


def load_recipe(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe {path} does not exist")
    try:
        recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise RecipeError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(recipe, dict):
        raise RecipeError(f"{path}: expected a mapping at the top level, found {type(recipe).__name__}")
    return recipe


def _segment(container: Any, key: str, path: str) -> Any:
    """Step into a dict by key, or into a list by index or by the ``name`` of an item."""
    if isinstance(container, list):
        if key.isdigit() and int(key) < len(container):
            return int(key)
        for i, item in enumerate(container):
            if isinstance(item, dict) and item.get("name") == key:
                return i
        names = [item.get("name") for item in container if isinstance(item, dict)]
        raise RecipeError(f"--set {path}: no item named {key!r} (items: {', '.join(map(str, names))})")
    if isinstance(container, dict):
        return key
    raise RecipeError(f"--set {path}: cannot step into {type(container).__name__} at {key!r}")


def set_value(recipe: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in the recipe, creating missing mappings; list items are picked by name or index."""
    keys = dotted.split(".")
    node: Any = recipe
    for depth, key in enumerate(keys[:-1]):
        step = _segment(node, key, dotted)
        if isinstance(node, dict) and node.get(step) is None:
            node[step] = {}
        elif not isinstance(node[step], (dict, list)):
            where = ".".join(keys[: depth + 1])
            raise RecipeError(
                f"--set {dotted}: {where} is {type(node[step]).__name__} {json.dumps(node[step], default=str)}, "
                f"not a mapping or list, so it has no key {keys[depth + 1]!r}"
            )
        node = node[step]
    node[_segment(node, keys[-1], dotted)] = value


def apply_overrides(recipe: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` strings; values are YAML scalars or lists (``5``, ``true``, ``[a, b]``)."""
    recipe = copy.deepcopy(recipe)
    for item in overrides:
        dotted, sep, text = item.partition("=")
        if not sep or not dotted:
            raise RecipeError(f"--set expects key.path=value, got {item!r}")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as err:
            raise RecipeError(f"--set {dotted}: the value {text!r} is not valid YAML ({err.problem})") from None
        set_value(recipe, dotted.strip(), value)
    return recipe


def validate_recipe(recipe: dict[str, Any], origin: str = "recipe") -> None:
    """Raise ``RecipeError`` listing every problem, each with its key path, the expectation and the value."""
    found = sorted(validator(RECIPE_SCHEMA).iter_errors(recipe), key=lambda e: list(e.path))
    # A mapping section's problems are said by check_mapping (one line each, with close option names); the
    # schema's errors under it are kept only where check_mapping finds nothing, so a disagreement still shows.
    mapping_errors: dict[int, list[str]] = {}
    errors = []
    for error in found:
        path = list(error.absolute_path)
        if path[:1] == ["sources"] and len(path) > 2 and path[2] == "mapping":
            mapping_errors.setdefault(path[1], []).append(describe_error(error))
        else:
            errors.append(describe_error(error))
    # The checks below see only values of the right type: the schema errors above already name the others.
    names = []
    sources = recipe.get("sources")
    for i, source in enumerate(sources if isinstance(sources, list) else []):
        if not isinstance(source, dict):
            continue
        if isinstance(source.get("name"), str):
            names.append(source["name"])
        adapter = source.get("adapter", source.get("name"))
        if isinstance(adapter, str) and adapter not in ADAPTERS:
            errors.append(
                f"sources[{i}].adapter: unknown adapter {adapter!r}; known adapters: {', '.join(sorted(ADAPTERS))}"
            )
        if adapter == "mapping":
            try:
                check_mapping(source.get("mapping"))
            except ValueError as err:
                errors.append(f"sources[{i}].mapping: {err}")
                mapping_errors.pop(i, None)
        errors += mapping_errors.pop(i, [])
        location = source.get("location") or {"embedded": True}
        given = [k for k in ("embedded", "path", "hub") if isinstance(location, dict) and location.get(k)]
        if isinstance(location, dict) and len(given) != 1:
            errors.append(
                f"sources[{i}].location: expected exactly one of embedded, path, hub; found "
                f"{', '.join(given) or 'none'}"
            )
    if len(set(names)) != len(names):
        errors.append(f"sources: names must be unique, found {names}")
    configs = recipe.get("configs")
    for i, config in enumerate(configs if isinstance(configs, list) else []):
        if isinstance(config, dict) and isinstance(config.get("sources"), list):
            unknown = [s for s in config["sources"] if s not in names]
            if unknown:
                errors.append(f"configs[{i}].sources: unknown source(s) {unknown}; sources are {names}")
    if errors:
        raise RecipeError(f"{origin} is invalid:\n  " + "\n  ".join(errors))


def enabled_annotations(recipe: dict[str, Any]) -> list[str]:
    return [name for name, section in (recipe.get("annotations") or {}).items() if section.get("enabled")]


def annotation_params(recipe: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Parameters of the enabled layers and of the layers they need (latents need the embeddings' settings)."""
    from coord_bench.mappers.registry import with_needs

    sections = recipe.get("annotations") or {}
    return {
        name: {k: v for k, v in (sections.get(name) or {}).items() if k != "enabled"}
        for name in with_needs(enabled_annotations(recipe))
    }


def source_location(source: dict[str, Any]) -> dict[str, Any]:
    return source.get("location") or {"embedded": True}


def configs_of(recipe: dict[str, Any]) -> tuple[dict[str, list[str]], str]:
    """The configs (name -> sources) and the default one; by default 'all' plus one per source."""
    names = [s["name"] for s in recipe["sources"]]
    declared = recipe.get("configs")
    if not declared:
        return {"all": names, **{n: [n] for n in names}}, "all"
    default = next((c["name"] for c in declared if c.get("default")), declared[0]["name"])
    return {c["name"]: list(c["sources"]) for c in declared}, default


def to_plan(
    recipe: dict[str, Any], out_dir: str | Path | None = None, lock: RecipeLock | None = None
) -> BuildPlan:
    """Resolve locations (downloading Hub sources) and return the ``BuildPlan`` of a validated recipe.

    With a ``lock``, Hub sources are read at their locked commits (or locked; the caller saves the lock).
    The plan records the recipe with every Hub source pinned to the commit it was read at, so the recipe in
    the manifest and the card rebuilds the same rows."""
    from coord_bench.locate import embedded_source, hub_source, local_source

    recipe = copy.deepcopy(recipe)
    ratios = (recipe.get("splits") or {}).get("ratios")
    specs = []
    for source in recipe["sources"]:
        name, adapter = source["name"], source.get("adapter", source["name"])
        location = source_location(source)
        if location.get("path"):
            spec = local_source(name, location["path"], adapter)
        elif location.get("hub"):
            configs = (source.get("filters") or {}).get("configs")
            if lock is not None:
                spec = lock.resolve(name, location, adapter, configs)
            else:
                spec = hub_source(name, location["hub"], location.get("revision"), adapter, config_patterns=configs)
            if spec.revision:
                location["revision"] = spec.revision
        else:
            spec = embedded_source(name, adapter)
        spec.options.update(
            {"filters": source.get("filters") or {}, "split_group": source.get("split_group", "default")}
        )
        if "mapping" in source:
            spec.options["mapping"] = source["mapping"]
        specs.append(spec)
    output = recipe.get("output") or {}
    configs, default = configs_of(recipe)
    annotations = annotation_params(recipe)  # before the recorded copy is scrubbed: the judge needs its real URL
    judge = (recipe.get("annotations") or {}).get("judge") or {}
    if judge.get("base_url"):
        from coord_bench.mappers.judge.client import public_url

        judge["base_url"] = public_url(judge["base_url"])  # no credentials in the manifest or the card
    return BuildPlan(
        sources=specs,
        out_dir=Path(out_dir or output.get("dir") or "out/coord_bench"),
        configs=configs,
        default_config=default,
        limit=output.get("limit"),
        annotations=annotations,
        max_shard_bytes=parse_size(output.get("max_shard_size", DEFAULT_MAX_SHARD_SIZE)),
        recipe=recipe,
        **({"split_ratios": ratios} if ratios else {}),
    )


PREVIEW_RECORDS = 5


def source_preview(source: dict[str, Any]) -> tuple[str, bool]:
    """(one line, whether it failed) on how a source with local data maps: its first mapped conversation
    (speakers, turns, outcome), or, when none of its first ``PREVIEW_RECORDS`` maps, the first one's reject,
    so a recipe whose paths match nothing fails before a build. A Hub source is not downloaded to preview."""
    from coord_bench.build import outcome_of
    from coord_bench.locate import SourceLocationError, embedded_source, local_source

    location = source_location(source)
    if location.get("hub"):
        return "preview: none (a Hub source is read only by a build)", False
    name, adapter_name = source["name"], source.get("adapter", source["name"])
    first_failure, tried = None, 0
    try:
        if location.get("path"):
            spec = local_source(name, location["path"], adapter_name)
        else:
            spec = embedded_source(name, adapter_name)
        if "mapping" in source:
            spec.options["mapping"] = source["mapping"]
        adapter = ADAPTERS[adapter_name](spec)
        for raw in adapter.iter_raw():
            if tried >= PREVIEW_RECORDS:
                break
            tried += 1
            outcome = outcome_of(adapter, raw)
            if outcome.reject is not None:
                first_failure = first_failure or f"record {raw.locator} is rejected: {outcome.reject.reason}"
                continue
            record = outcome.record
            speakers = ", ".join(a["agent_id"] for a in record["agents"])
            outcome = {k: v for k, v in record["outcome"].items() if v is not None}
            return (f"preview: {record['id']} maps to {record['n_turns']} turns, {record['n_messages']} messages, "
                    f"speakers {speakers}; outcome {json.dumps(outcome, default=str)}"), False  # fmt: skip
    except (OSError, ValueError, SourceLocationError) as err:
        return f"preview: cannot read the source ({err})", True
    if first_failure is None:
        return "preview: the source's files hold no record", True
    return f"preview: none of its first {tried} records maps; {first_failure}", True


def describe_plan(
    recipe: dict[str, Any], origin: str = "recipe", lock: RecipeLock | None = None
) -> tuple[str, list[str]]:
    """What a build of this recipe would download, build and spend, and the sources whose preview failed;
    downloads nothing, spends nothing.

    For Hub sources it says the commit the ``lock`` pins, or that none is locked yet; a source with local data
    gets a preview of its first records (``source_preview``)."""
    from coord_bench.locate import hub_patterns

    lines = [f"recipe {origin} (resolved sha256 {recipe_hash(recipe)[:16]})", "sources:"]
    failed = []
    for source in recipe["sources"]:
        cls = ADAPTERS[source.get("adapter", source["name"])]
        location = source_location(source)
        locked = None
        preview, preview_failed = source_preview(source)
        if preview_failed:
            failed.append(f"source '{source['name']}': {preview.removeprefix('preview: ')}")
        if location.get("hub"):
            configs = (source.get("filters") or {}).get("configs")
            files = ", ".join(hub_patterns(cls.name, configs))
            where = f"download Hub dataset {location['hub']}@{location.get('revision', 'main')} files {files}"
            if "gated" in cls.license:
                where += "  (gated: needs HF_TOKEN of an account that accepted the terms)"
            locked = (
                lock.describe(source["name"], location, cls.name, configs)
                if lock is not None
                else "none (only a recipe file keeps a lock, beside it)"
            )
        elif location.get("path"):
            where = f"read local folder {location['path']}"
        else:
            where = "read the embedded sample (offline)"
        filters = source.get("filters")
        lines.append(f"  {source['name']:<26} adapter {cls.name:<26} {where}")
        if locked:
            lines.append(f"  {'':<26} lock: {locked}")
        lines.append(f"  {'':<26} {preview}")
        if filters:
            lines.append(f"  {'':<26} filters {json.dumps(filters)}")
    configs, default = configs_of(recipe)
    lines.append(
        "configs: "
        + "; ".join(f"{n}{' (default)' if n == default else ''} = {', '.join(s)}" for n, s in configs.items())
    )
    ratios = (recipe.get("splits") or {}).get("ratios") or DEFAULT_RATIOS
    lines.append("splits: " + ", ".join(f"{k} {v}" for k, v in ratios.items()))
    annotations = recipe.get("annotations") or {}
    for name, section in annotations.items():
        if not section.get("enabled"):
            continue
        params = {k: v for k, v in section.items() if k != "enabled"}
        lines.append(f"annotation {name}: {json.dumps(params)}")
    judge = annotations.get("judge") or {}
    if judge.get("enabled"):
        from coord_bench.mappers.judge import DEFAULTS as JUDGE_DEFAULTS
        from coord_bench.mappers.judge import JudgeConfig

        judge = {**JUDGE_DEFAULTS, **judge}
        shape = JudgeConfig.from_params({k: v for k, v in judge.items() if k in ("tasks", "both_orders")})
        per_row = len(judge.get("models", [])) * shape.requests_per_row
        lines.append(
            f"judge spend: at most {judge.get('max_calls', 0)} calls in all ({per_row} per sampled conversation) "
            f"and at most ${judge.get('max_cost_usd', 0):.2f}, hard caps; key from ${judge.get('api_key_env', '')}"
        )
    else:
        lines.append("judge spend: none (the judge is not enabled)")
    output = recipe.get("output") or {}
    lines.append(
        f"output: {output.get('dir', 'out/coord_bench')}, "
        f"shards up to {output.get('max_shard_size', DEFAULT_MAX_SHARD_SIZE)}"
        + (f", at most {output['limit']} records per source" if output.get("limit") else "")
    )
    if recipe.get("publish", {}).get("repo_id"):
        lines.append(f"publish: {recipe['publish']['repo_id']} (private: {recipe['publish'].get('private', False)})")
    lines.append("dry run: nothing was downloaded, built or spent")
    return "\n".join(lines), failed
