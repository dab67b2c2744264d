"""The latent quality report (``reports/latent_quality.json``): its layout, read and rendered in one place.

The latents mapper writes it; the HTML report draws it, the dataset card and the build's terminal summary
print it. Each of them shows it in its own form (figures with captions, Markdown tables, a few text lines),
and every one reads the file and its keys through this module, so a change of the layout is made once.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coord_bench.markdown import table

REPORT = "reports/latent_quality.json"  # where the latents mapper writes it (its manifest entry names it too)

# The layout, as coord_bench.mappers.latents.layer._quality writes it (from coord_bench.mappers.latents.quality):
#   "method", "model_hash", "k", "r", "train_sequences", "validation_sequences", "held_out_sequences" (test);
#   or {"skipped": reason, "k", ...} when the layer fitted nothing;
#   "selection": {"criterion", "chosen": {"k", "r"}, "candidates": [{"k", "r", "validation_r2", ...}], ...};
#   "next_turn_r2": {R2_KEYS: full-space R², "method", "model_hash", "n_test_sequences", "n_predicted_turns",
#                    "spaces": {"full" | "change" | "subspace": {key: {"r2", "ci", "minus_copy_last",
#                    "minus_copy_last_ci", ...}}}, "log_likelihood_per_turn": {key: value}}, or {"skipped": reason};
#   "verdicts": [sentence, ...];
#   "probes": {target: {"status": "ok", "n_rows", "cv", "n_splits", "n_boot", "features": {name: {"auc",
#              "auc_ci": [lo, hi], "log_loss", "log_loss_ci", and for all but the baseline "delta_auc",
#              "delta_auc_ci", ...}}}, or {"status": "insufficient data", "reason" (optional), "n_rows",
#              "n_groups", "class_counts", "groups_per_class"}};
#   "stability" (optional): {"max_angle_deg", "mean_angle_deg", "angles_deg", ...}.

R2_KEYS = (  # the latent model, its baselines, its nested special cases and its order controls
    "model", "train_mean", "copy_last", "pca_no_dynamics", "pca_rrr", "lds_levels", "model_no_dynamics",
    "shuffled_order", "reversed_order",
)  # fmt: skip
SPACES = {
    "full": "next-turn R² in embedding space",
    "change": "R² of the change y(t+1) - y(t)",
    "subspace": "R² in the top-k principal subspace of the train turns",
}
R2_TABLE_KEYS = (  # the text tables: the model, then what it nests and its controls, then the weaker baselines
    "model", "copy_last", "model_no_dynamics", "shuffled_order", "reversed_order", "lds_levels", "pca_rrr",
    "pca_no_dynamics", "train_mean",
)  # fmt: skip


@dataclass
class Estimate:
    label: str
    value: float
    low: float | None = None
    high: float | None = None


def _number(value: Any) -> float | None:
    """A finite number as float; None otherwise (an R² is NaN when the held-out turns do not vary)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def r2_estimates(section: dict[str, Any], space: str = "full") -> tuple[list[Estimate], list[str]]:
    """The held-out R² of the model and of each baseline in ``space``, with its bootstrap interval where the
    report has one, and the keys of :data:`R2_KEYS` it has whose value is not a finite number."""
    found, not_finite = [], []
    entries = (section.get("spaces") or {}).get(space) or {}
    for key in R2_KEYS:
        entry = entries.get(key) or {}
        if key not in section and key not in entries:
            continue
        value = _number(entry.get("r2", section.get(key) if space == "full" else None))
        if value is None:
            not_finite.append(key)
            continue
        low, high = (_number(v) for v in entry.get("ci") or (None, None))
        found.append(Estimate(key, value, low, high) if low is not None and high is not None else Estimate(key, value))
    return found, not_finite


def probe_estimates(probe: dict[str, Any]) -> list[Estimate]:
    """The out-of-fold AUC of each feature set of a probe with status ok, with its bootstrap interval."""
    found = []
    for name, result in (probe.get("features") or {}).items():
        value = _number(result.get("auc"))
        if value is None:
            continue
        low, high = (_number(v) for v in result.get("auc_ci") or (None, None))
        if low is None or high is None:
            low = high = None
        found.append(Estimate(name, value, low, high))
    return found


def probe_detail(probe: dict[str, Any]) -> str:
    """Why a probe was not fitted: its reason when it gives one, and the counts it was judged on."""
    parts = [str(probe["reason"])] if probe.get("reason") else []
    if probe.get("n_rows") is not None:
        parts.append(f"{probe['n_rows']} rows in {probe.get('n_groups')} groups")
    groups = probe.get("groups_per_class") or {}
    if groups:
        parts.append("groups per class " + ", ".join(f"{cls} {n}" for cls, n in groups.items()))
    return "; ".join(parts) or "no detail in the report"


def probe_summary(target: str, probe: dict[str, Any]) -> str:
    """How a probe was fitted and, when it has a baseline feature set (the one without ``delta_auc``), each
    other set's paired AUC difference to it, with its interval."""
    text = (
        f"{target}: {probe.get('n_rows')} rows, {probe.get('cv')} with {probe.get('n_splits')} folds, "
        f"{probe.get('n_boot')} bootstrap resamples"
    )
    features = probe.get("features") or {}
    deltas = {n: r for n, r in features.items() if _number(r.get("delta_auc")) is not None}
    baselines = [n for n in features if n not in deltas]
    if deltas and len(baselines) == 1:
        gains = []
        for name, result in deltas.items():
            low, high = (_number(v) for v in result.get("delta_auc_ci") or (None, None))
            interval = f" [{low:+.2f}, {high:+.2f}]" if low is not None and high is not None else ""
            gains.append(f"{name} {result['delta_auc']:+.2f}{interval}")
        text += f"; AUC gain over {baselines[0]}: " + ", ".join(gains)
    return text


def about(quality: dict[str, Any]) -> str:
    """The model the report is about, for a caption: `` (method lds-em, k 8, ...)``, or empty."""
    found = ", ".join(
        f"{key} {quality[key]}"
        for key in ("method", "k", "train_sequences", "held_out_sequences")
        if isinstance(quality.get(key), (str, int, float))
    )
    return f" ({found})" if found else ""


def stability_angle(quality: dict[str, Any]) -> float | None:
    """The largest principal angle (degrees) between the latent subspaces of two refits, if finite."""
    return _number((quality.get("stability") or {}).get("max_angle_deg"))


def read_quality(folder: Path, manifest: dict[str, Any]) -> tuple[str, dict[str, Any] | None, str]:
    """The build's report: its path relative to ``folder`` (the manifest's entry, else :data:`REPORT`), its
    content, and, when the content is None, why it could not be read."""
    entry = (manifest.get("annotations") or {}).get("latents") or {}
    relative = entry.get("quality_report") or REPORT
    path = Path(folder) / relative
    if not path.is_file():
        return relative, None, f"{relative} is absent (build with --annotate latents)"
    try:
        quality = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return relative, None, f"{relative} cannot be read ({err})"
    if not isinstance(quality, dict):
        return relative, None, f"{relative} is not a JSON object"
    return relative, quality, ""


def _estimate_text(value: Any, interval: Any = None) -> str:
    """A number to three decimals (``-`` when absent), with its interval when it has both ends."""
    if value is None:
        return "-"
    low, high = interval or (None, None)
    return f"{value:.3f}" + (f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else "")


def quality_table(quality: dict[str, Any]) -> str:
    """The report as a short text table for the terminal."""
    if "skipped" in quality:
        return f"latent layer skipped: {quality['skipped']}"
    lines = [
        f"latent model {quality['method']} k={quality['k']} ({quality['model_hash'][:12]}), "
        f"fitted on {quality['train_sequences']} conversations, "
        + (f"{quality['validation_sequences']} validation, " if "validation_sequences" in quality else "")
        + f"{quality['held_out_sequences']} held out"
    ]
    r2 = quality["next_turn_r2"]
    if "skipped" in r2:
        lines.append(f"  next-turn R2: skipped ({r2['skipped']})")
    else:
        found, _ = r2_estimates(r2, "change" if r2.get("spaces") else "full")
        what = "change R2" if r2.get("spaces") else "next-turn R2"
        lines.append(f"  test {what}: " + ", ".join(f"{e.label} {_estimate_text(e.value)}" for e in found))
    lines += [f"  {verdict}" for verdict in quality.get("verdicts") or []]
    if "stability" in quality:
        lines.append(f"  stability across seeds: max principal angle {quality['stability']['max_angle_deg']:.2f} deg")
    for target, probe in quality["probes"].items():
        if probe.get("status") == "insufficient data":
            lines.append(f"  probe {target}: insufficient data ({probe['n_rows']} rows)")
            continue
        cells = []
        for name, result in probe["features"].items():
            low, high = result["auc_ci"]
            cells.append(f"{name} AUC {_estimate_text(result['auc'])} [{_estimate_text(low)}, {_estimate_text(high)}]")
        lines.append(f"  probe {target}: " + "; ".join(cells))
    return "\n".join(lines)


def quality_markdown(quality: dict[str, Any]) -> str:
    """The report for the dataset card: the R² table, the stability sentence and the probe table."""
    r2 = quality.get("next_turn_r2", {})
    parts = []
    selection = quality.get("selection") or {}
    if selection.get("chosen"):
        chosen = selection["chosen"]
        how = selection.get("criterion") or selection.get("reason")
        rank = "full rank" if chosen["r"] is None else chosen["r"]
        parts.append(f"Model: {quality.get('method')} with k = {chosen['k']}, r = {rank} ({how}).")
    if "skipped" in r2:
        parts.append(f"Held-out next-turn R²: not computed ({r2['skipped']}).")
    elif r2.get("spaces"):
        rows = []
        for space, what in SPACES.items():
            found = {e.label: e for e in r2_estimates(r2, space)[0]}
            rows.append([what, *[_estimate_text(found[k].value, (found[k].low, found[k].high)) if k in found else "-"
                                 for k in R2_TABLE_KEYS]])  # fmt: skip
        parts.append(
            f"On the test split ({r2.get('n_predicted_turns', '?')} predicted turns of "
            f"{r2.get('n_test_sequences', '?')} conversations; 95% bootstrap intervals by conversation):\n\n"
            + table(["", *R2_TABLE_KEYS], rows)
        )
    else:
        shown = [key for key in R2_TABLE_KEYS if key in r2]
        parts.append(
            "Held-out next-turn R² in embedding space "
            f"({r2.get('n_predicted_turns', '?')} predicted turns):\n\n"
            + table(shown, [[_estimate_text(r2.get(n)) for n in shown]])
        )
    if quality.get("verdicts"):
        parts.append("What the latents are worth, in words:\n\n" + "\n".join(f"- {v}" for v in quality["verdicts"]))
    if "stability" in quality:
        parts.append(
            f"Stability: the largest principal angle between the latent subspaces of two refits with "
            f"different seeds is {quality['stability']['max_angle_deg']:.2f} degrees."
        )
    rows = []
    for target, probe in quality.get("probes", {}).items():
        if probe.get("status") != "ok":
            rows.append([target, "-", f"{probe.get('status')} ({probe.get('n_rows')} rows)", "-", "-"])
            continue
        for name, result in probe["features"].items():
            rows.append(
                [
                    target,
                    name,
                    _estimate_text(result["auc"], result["auc_ci"]),
                    _estimate_text(result["log_loss"], result["log_loss_ci"]),
                    _estimate_text(result.get("delta_auc"), result.get("delta_auc_ci")),
                ]
            )
    if rows:
        parts.append(
            "Probes (grouped cross-validation; 95% bootstrap intervals):\n\n"
            + table(["outcome", "features", "AUC", "log-loss", "AUC minus tokens-only"], rows)
        )
    return "\n\n".join(parts)
