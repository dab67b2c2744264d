"""What a build or a label prints for a person: the counts per source, the latent quality, the judge's spend and
where to look next.

A newcomer's first build should show the product, not only counts: the card, the report, and one row with
its token log, latent states and labels, read back from the shards that were just written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from coord_bench.build_folder import CARD_FILE, shard_files


def build_summary(manifest: dict[str, Any], out_dir: Path) -> str:
    """The table of records read, normalized, rejected and filtered per source, and the latent quality."""
    lines = [f"wrote {out_dir}"]
    lines.append(f"{'source':<28}{'read':>8}{'normalized':>12}{'rejected':>10}{'filtered':>10}   train/validation/test")
    for name, s in manifest["sources"].items():
        splits = "/".join(str(v) for v in s["splits"].values())
        lines.append(f"{name:<28}{s['read']:>8}{s['normalized']:>12}{s['rejected']:>10}{s['filtered']:>10}   {splits}")
    t = manifest["totals"]
    lines.append(f"{'total':<28}{t['read']:>8}{t['normalized']:>12}{t['rejected']:>10}{t['filtered']:>10}")
    if t["rejected"]:
        lines.append(f"rejected records and their reasons: {out_dir / 'rejects.jsonl'}")
    for name, s in manifest["sources"].items():
        lines += [f"empty file (no records in it): {name}: {empty}" for empty in s["empty_files"]]
        if s.get("top_level_values", s["read"]) != s["read"]:
            lines.append(f"{name}: read {s['read']} conversations from {s['top_level_values']} top-level values")
        lines += [f"WARNING: source {name}: {warning}" for warning in s.get("warnings", [])]
    embeddings = manifest["annotations"].get("embeddings")
    if embeddings:
        reused, encoded = embeddings["texts_from_cache"], embeddings["texts_encoded"]
        used = f" ({embeddings['backend']} {embeddings['precision']})" if embeddings.get("precision") else ""
        lines.append(f"embeddings: reused {reused} cached, encoded {encoded}{used}")
    if "latents" in manifest["annotations"]:
        from coord_bench.report.latent_quality import quality_table, read_quality

        _, quality, problem = read_quality(out_dir, manifest)
        lines.append(quality_table(quality) if quality is not None else f"latent quality: {problem}")
    return "\n".join(lines)


def _example_row(out_dir: Path, manifest: dict[str, Any]) -> dict[str, Any] | None:
    """A row of the default config's first shard with the most annotation layers, agents and turns."""
    shards = shard_files(out_dir, manifest["default_config"])
    if not shards:
        return None

    def richness(row: dict[str, Any]) -> tuple[int, int, int]:
        layers = row["annotations"] or {}
        filled = sum(layers.get(name) is not None for name in ("token_usage", "latents", "coordination"))
        return filled, row["n_agents"], row["n_turns"]

    return max(pq.read_table(shards[0]).to_pylist(), key=richness, default=None)


def _round(values: list[float], digits: int = 3) -> list[float]:
    return [round(v, digits) for v in values]


def where_to_look(out_dir: Path, manifest: dict[str, Any]) -> str:
    """Where the card and the report are, and one example row's annotations, each in a line or two."""
    lines = ["", "where to look:", f"  the dataset card:  {out_dir / CARD_FILE}"]
    report = out_dir / "report" / "index.html"
    lines.append(f"  the HTML report:   {report if report.exists() else f'coord-bench report {out_dir}'}")
    row = _example_row(out_dir, manifest)
    if row is None:
        return "\n".join(lines)
    lines.append(
        f"  one example row:   {row['id']} ({row['source']}, {row['n_agents']} agents, {row['n_turns']} turns)"
    )
    layers = row["annotations"] or {}
    usage = layers.get("token_usage")
    if usage:
        tool = f", {usage['tool_tokens']} tool" if usage["tool_tokens"] else ""
        lines.append(
            f"    token_usage: {usage['total_tokens']} tokens ({usage['input_tokens']} input, "
            f"{usage['output_tokens']} output{tool}), {usage['tokens_per_turn']:.1f} per turn, "
            f"coordination_overhead {_round([usage['coordination_overhead'] or 0.0])[0]}"
        )
    latents = layers.get("latents")
    if latents:
        state = _round(latents["smoothed"][0])
        lines.append(f"    latents ({latents['method']}, k={latents['k']}): turn 1 smoothed state {state}")
    rules = (layers.get("coordination") or {}).get("rules")
    if rules:
        events = ", ".join(f"{e['event']}@{e['turn_index']}" for e in rules["events"][:4]) or "none"
        lines.append(
            f"    rules: success {rules['success']}, agreement {rules['agreement_level']}, events: {events}"
        )
    lines.append(f'  load it:           datasets.load_dataset("{out_dir}", "{manifest["default_config"]}")')
    return "\n".join(lines)


def label_estimate(e: dict[str, Any]) -> str:
    """What ``label --dry-run`` would send and spend."""
    prices = ", ".join(f"{m}: {src}" for m, src in e["prices"].items())
    ledger = e["ledger"]
    return "\n".join([
        f"judge dry run: {e['rows_sampled']} of {e['rows_total']} conversations sampled -> "
        f"{e['requests_planned']} requests ({e['requests_cached']} cached, {e['requests_to_send']} to send)",
        f"estimated tokens: {e['prompt_tokens']:,} prompt (tiktoken, +25% margin) + at most "
        f"{e['completion_tokens_max']:,} completion",
        f"estimated cost: at most ${e['cost_usd_max']:.4f} (prices: {prices})",
        f"hard caps of this build: max_calls {e['max_calls']}, max_cost_usd {e['max_cost_usd']:g}; "
        f"remaining: {ledger['calls_remaining']} calls, ${ledger['usd_remaining']:.4f}",
        "dry run: no request was sent",
    ])  # fmt: skip


def label_summary(folder: str | Path, manifest: dict[str, Any]) -> str:
    """The rows a label judged, the requests it sent and the build's judge budget after it."""
    judge = manifest["annotations"]["judge"]
    requests = judge["requests"]
    return "\n".join([
        f"labelled {folder}: rows {judge['rows']}",
        f"requests sent {requests['sent']} (fresh judgements {requests['judgements_fresh']}, cached "
        f"{requests['judgements_cached']}, failed {requests['failed']}, over budget {requests['over_budget']}); "
        f"cost ${judge['cost_usd']['spent']:.4f}; mode {judge['structured_output_mode']}",
        budget_line(judge["budget"]["ledger"]),
    ])  # fmt: skip


def budget_line(ledger: dict[str, Any]) -> str:
    """The build's judge budget over all its runs."""
    return (
        f"judge budget of this build ({ledger['runs']} run(s) that sent requests): {ledger['calls_sent']} calls sent, "
        f"{ledger['answered']} answered, {ledger['failed']} failed, {ledger['lost_in_crash']} lost in a crash "
        f"(counted as spent); remaining {ledger['calls_remaining']} of {ledger['max_calls']} calls and "
        f"${ledger['usd_remaining']:.4f} of ${ledger['max_cost_usd']:g}"
    )


def benchmark_tables(report: dict[str, Any]) -> str:
    """One table per task: each predictor's metrics on test with their 95% intervals, or why the task or a
    predictor has no numbers."""
    from coord_bench.tasks.metrics import format_estimate

    lines = []
    for name, task in report["tasks"].items():
        sizes = task["splits"]
        lines.append(f"\n{name}: train {sizes['train']}, validation {sizes['validation']}, test {sizes['test']}")
        if task["status"] != "ok":
            lines.append(f"  not scored: {task['reason']}")
            continue
        for row in task["results"]:
            label = f"  {row['predictor']:<28} {row['subset']:<26}"
            if row.get("reason"):
                lines.append(f"{label} no numbers: {row['reason']}")
                continue
            lines.append(label + "  ".join(f"{m} {format_estimate(e)}" for m, e in row["metrics"].items()))
    return "\n".join(lines).lstrip("\n")
