"""The report's figures: one PNG per figure, each with a title and a caption whose numbers come from the build.

:func:`draw` makes every figure from the row statistics (:mod:`coord_bench.report.stats`), the latent quality
report (:mod:`coord_bench.report.latent_quality`) and the benchmark report; a figure whose data is absent is
not drawn, and :class:`Report` says in one line why.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coord_bench.report.latent_quality import (
    Estimate,
    about,
    probe_detail,
    probe_estimates,
    probe_summary,
    r2_estimates,
    read_quality,
    stability_angle,
)
from coord_bench.report.stats import MAX_TRAJECTORIES, SourceStats

DPI = 100


@dataclass
class Figure:
    file: str
    title: str
    caption: str


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    not_drawn: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Distribution:
    """One per-source histogram figure of a :class:`SourceStats` counter."""

    attr: str  # the SourceStats counter
    file: str
    what: str  # lower case: it starts titles (capitalised) and sits inside sentences
    xlabel: str
    unit: str  # what is counted (the y axis)
    missing: str  # why a source has no data for it
    log: bool = False


DISTRIBUTIONS = (
    Distribution(
        attr="turns",
        file="turns.png",
        what="turns per conversation",
        xlabel="turns (rounds)",
        unit="conversations",
        missing="no record has n_turns",
    ),
    Distribution(
        attr="agents",
        file="agents.png",
        what="agents per conversation",
        xlabel="agents (participants)",
        unit="conversations",
        missing="no record has n_agents",
    ),
    Distribution(
        attr="message_tokens",
        file="tokens_per_message.png",
        what="tokens per message",
        xlabel="tokens per message (cl100k_base tokens, n_tokens)",
        unit="messages",
        missing="no message has a positive n_tokens (build with --annotate tokens)",
        log=True,
    ),
)


def _capitalized(text: str) -> str:
    """``text`` with its first letter upper-cased, for a title or the start of a sentence."""
    return text[:1].upper() + text[1:]


def _palette() -> tuple:
    """The colours of the categorical figures (matplotlib's tab10)."""
    from matplotlib import colormaps

    return colormaps["tab10"].colors


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "figure.titlesize": 12})
    return plt


def _grid(plt, n: int, width: float = 4.2, height: float = 3.2, columns: int = 3):
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = axes.ravel()
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _save(plt, fig, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=DPI)
    plt.close(fig)
    return name


def _count_hist(ax, counts: Counter, log: bool = False) -> None:
    """A histogram of value counts: one bar per integer when there are few values, else up to 30 bins."""
    import numpy as np

    values = np.array(sorted(counts), dtype=float)
    weights = np.array([counts[v] for v in sorted(counts)], dtype=float)
    if log:
        low, high = max(values.min(), 1.0), max(values.max(), 1.0)
        bins = np.geomspace(low / 1.05, high * 1.05, num=min(30, max(6, len(values) + 1)))
        ax.hist(values, bins=bins, weights=weights, edgecolor="white", color="#4c72b0")
        ax.set_xscale("log")
        from matplotlib import ticker

        ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    elif values.max() - values.min() <= 40:
        ax.bar(values, weights, width=0.8, color="#4c72b0")
        ax.set_xticks(values if len(values) <= 15 else ax.get_xticks())
    else:
        ax.hist(values, bins=30, weights=weights, edgecolor="white", color="#4c72b0")
    ax.yaxis.get_major_locator().set_params(integer=True)


def _distribution(
    plt, out: Path, stats: dict[str, SourceStats], report: Report, spec: Distribution, extra: str = ""
) -> None:
    title = _capitalized(spec.what)
    have = {name: getattr(s, spec.attr) for name, s in stats.items() if getattr(s, spec.attr)}
    if not have:
        report.not_drawn.append(f"{title}: {spec.missing}.")
        return
    for name in stats:
        if name not in have:
            report.not_drawn.append(f"{title}, {name}: {spec.missing}.")
    fig, axes = _grid(plt, len(have))
    for ax, (name, counts) in zip(axes, have.items(), strict=True):
        _count_hist(ax, counts, log=spec.log)
        ax.set_title(name)
        ax.set_xlabel(spec.xlabel)
        ax.set_ylabel(f"{spec.unit} (count)")
    fig.suptitle(title + (" (log scale)" if spec.log else ""))
    summaries = []
    for name, counts in have.items():
        total = sum(counts.values())
        mean = sum(v * c for v, c in counts.items()) / total
        spread = f"all {min(counts)}" if min(counts) == max(counts) else f"range {min(counts)}-{max(counts)}"
        summaries.append(f"{name}: {total} {spec.unit}, {spread}, mean {mean:.1f}")
    caption = f"{title}, per source. " + "; ".join(summaries) + "." + extra
    report.figures.append(Figure(_save(plt, fig, out, spec.file), title, caption))


def _arena_winners(plt, out: Path, stats: dict[str, SourceStats], report: Report) -> None:
    from coord_bench.schema import load_schema

    order = [v for v in load_schema()["properties"]["outcome"]["properties"]["winner"]["enum"] if v is not None]
    have = {name: s for name, s in stats.items() if s.winners}
    if not have:
        report.not_drawn.append("Arena winner distribution: no record has an arena winner vote (outcome.winner).")
        return
    fig, axes = _grid(plt, len(have))
    parts = []
    for ax, (name, s) in zip(axes, have.items(), strict=True):
        labels = [v for v in order if s.winners[v]] + sorted(v for v in s.winners if v not in order)
        no_vote = s.conversations - sum(s.winners.values())
        values = [s.winners[v] for v in labels] + ([no_vote] if no_vote else [])
        labels = labels + (["no vote"] if no_vote else [])
        bars = ax.bar(labels, values, color=["#4c72b0", "#dd8452", "#55a868", "#8172b3", "#999999"][: len(labels)])
        ax.bar_label(bars)
        ax.margins(y=0.15)
        ax.set_title(name)
        ax.set_xlabel("human vote (outcome.winner)")
        ax.set_ylabel("conversations (count)")
        ax.tick_params(axis="x", labelrotation=20)
        parts.append(f"{name}: " + ", ".join(f"{label} {value}" for label, value in zip(labels, values, strict=True)))
    fig.suptitle("Arena winner votes, ties included")
    report.figures.append(
        Figure(
            _save(plt, fig, out, "arena_winner.png"),
            "Arena winner votes",
            "Arena human votes per conversation, ties included. " + "; ".join(parts) + ".",
        )
    )


def _debate_outcomes(plt, out: Path, stats: dict[str, SourceStats], report: Report) -> None:
    import numpy as np

    have = {name: s for name, s in stats.items() if s.debate}
    if not have:
        report.not_drawn.append("DEBATE outcomes: no record has outcome.decision_success or outcome.answer_correct.")
        return
    fig, axes = _grid(plt, len(have), width=6.0, height=3.6, columns=2)
    parts = []
    for ax, (name, s) in zip(axes, have.items(), strict=True):
        groups = sorted(s.debate)
        x = np.arange(len(groups))
        for offset, key, label, color in (
            (-0.2, "decision_success", "decision reached", "#4c72b0"),
            (0.2, "answer_correct", "answer correct", "#55a868"),
        ):
            shares = [
                100 * s.debate[g][key] / s.debate[g][f"{key}_known"] if s.debate[g][f"{key}_known"] else 0
                for g in groups
            ]
            bars = ax.bar(x + offset, shares, width=0.4, label=label, color=color)
            ax.bar_label(bars, labels=[f"{s.debate[g][key]}/{s.debate[g][f'{key}_known']}" for g in groups], fontsize=7)
        ax.set_xticks(x, [f"{p}\n{d}" for p, d in groups], fontsize=8)
        ax.set_ylim(0, 115)
        ax.set_xlabel("MALLM paradigm / decision protocol")
        ax.set_ylabel("share of conversations (%)")
        ax.set_title(name)
        ax.legend(loc="upper right", fontsize=7)
        parts.append(
            f"{name}: "
            + "; ".join(
                f"{p}/{d} n={s.debate[(p, d)]['n']}, decided {s.debate[(p, d)]['decision_success']}, "
                f"correct {s.debate[(p, d)]['answer_correct']}"
                for p, d in groups
            )
        )
    fig.suptitle("Decision success vs answer correctness, by paradigm and protocol")
    report.figures.append(
        Figure(
            _save(plt, fig, out, "debate_outcomes.png"),
            "DEBATE: decision success vs correctness",
            "Share of conversations whose protocol reached a decision (decision_success) and whose final answer "
            "matches a reference (answer_correct), per paradigm and decision protocol; bar labels are "
            "count/known. " + " ".join(parts) + ".",
        )
    )


def _level_order() -> list[str | None]:
    """The agreement levels in the schema's order (null last: no label)."""
    from coord_bench.schema import load_schema

    rules = load_schema()["properties"]["annotations"]["properties"]["coordination"]["properties"]["rules"]
    enum = rules["properties"]["agreement_level"]["enum"]
    return [v for v in enum if v is not None] + [None]


def _coordination(plt, out: Path, stats: dict[str, SourceStats], report: Report) -> None:
    import numpy as np

    have = {name: s for name, s in stats.items() if s.rules_records or s.judge_levels}
    if not have:
        report.not_drawn.append(
            "Coordination labels: no record has annotations.coordination (build with --annotate rules or judge)."
        )
    else:
        fig, axes = _grid(plt, len(have), width=5.0, height=3.4)
        parts = []
        for ax, (name, s) in zip(axes, have.items(), strict=True):
            raters = ({"rules": s.rules_levels} if s.rules_records else {}) | dict(sorted(s.judge_levels.items()))
            if s.consensus_levels and len(s.judge_levels) > 1:
                raters["judges' consensus"] = s.consensus_levels
            width = 0.8 / len(raters)
            levels = [v for v in _level_order() if any(c[v] for c in raters.values())]
            levels += sorted({v for c in raters.values() for v in c if v not in levels and c[v]}, key=str)
            x = np.arange(len(levels))
            for i, (rater, counts) in enumerate(raters.items()):
                ax.bar(x - 0.4 + width * (i + 0.5), [counts[level] for level in levels], width=width, label=rater)
            ax.set_xticks(x, ["no label" if v is None else str(v) for v in levels])
            ax.set_xlabel("agreement level")
            ax.set_ylabel("conversations (count)")
            ax.set_title(name)
            ax.margins(y=0.35)
            ax.legend(fontsize=7, loc="upper center", ncol=2)
            ax.yaxis.get_major_locator().set_params(integer=True)
            status = "; ".join(
                f"{m}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items(), key=str))
                for m, c in sorted(s.judge_status.items())
            )
            success = ", ".join(
                f"{'no label' if k is None else k} {v}" for k, v in sorted(s.rules_success.items(), key=str)
            )
            parts.append(
                f"{name}: rules on {s.rules_records} conversations"
                + (f" (success: {success})" if s.rules_records else "")
                + (f"; judge statuses {status}" if status else "")
            )
        fig.suptitle("Coordination labels: agreement level by rater")
        report.figures.append(
            Figure(
                _save(plt, fig, out, "coordination_labels.png"),
                "Coordination labels",
                "Agreement level per conversation from the rule-based labels and each judge model (judges with "
                "status ok). " + "; ".join(parts) + ".",
            )
        )
    several = {name: s for name, s in stats.items() if len(s.judge_levels) >= 2}
    if not several:
        report.not_drawn.append("Judge agreement matrix: no source has labels from two or more judge models.")
        return
    fig, axes = _grid(plt, len(several), width=4.6, height=4.0)
    for ax, (name, s) in zip(axes, several.items(), strict=True):
        raters = (["rules"] if s.rules_records else []) + sorted(s.judge_levels)
        matrix = np.full((len(raters), len(raters)), np.nan)
        for i, a in enumerate(raters):
            for j, b in enumerate(raters):
                same, both = (1, 1) if a == b else s.pair_agreement.get(tuple(sorted((a, b))), (0, 0))
                if both:
                    matrix[i, j] = 100 * same / both
        image = ax.imshow(matrix, vmin=0, vmax=100, cmap="viridis")
        for (i, j), value in np.ndenumerate(matrix):
            pair = s.pair_agreement.get(tuple(sorted((raters[i], raters[j]))), (0, 0))
            labelled = sum(
                v
                for k, v in (s.rules_levels if raters[i] == "rules" else s.judge_levels[raters[i]]).items()
                if k is not None
            )
            text = f"n={labelled}" if i == j else "-" if math.isnan(value) else f"{value:.0f}%\nn={pair[1]}"
            ax.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if value < 60 else "black")
        ax.set_xticks(range(len(raters)), raters, rotation=30, ha="right")
        ax.set_yticks(range(len(raters)), raters)
        ax.set_xlabel("rater")
        ax.set_ylabel("rater")
        ax.set_title(name)
        fig.colorbar(image, ax=ax, label="same label (%)")
    fig.suptitle("Agreement between raters on the agreement level")
    report.figures.append(
        Figure(
            _save(plt, fig, out, "judge_agreement.png"),
            "Agreement between judges",
            "Percentage of conversations labelled by both raters on which they give the same agreement level; "
            "n is the number of conversations both labelled (on the diagonal: that the rater labelled).",
        )
    )


def _trajectories(plt, out: Path, stats: dict[str, SourceStats], report: Report) -> None:
    have = {name: s for name, s in stats.items() if s.trajectories}
    if not any(s.latent_records for s in stats.values()):
        report.not_drawn.append(
            "Latent trajectories: no record has annotations.latents (build with --annotate latents)."
        )
        return
    for name, s in stats.items():
        if name not in have:
            reason = "its latent states have one dimension" if s.latent_records else "no record has annotations.latents"
            report.not_drawn.append(f"Latent trajectories, {name}: {reason}.")
    if not have:
        return
    colors = _palette()
    fig, axes = _grid(plt, len(have), width=4.6, height=4.0)
    parts = []
    for ax, (name, s) in zip(axes, have.items(), strict=True):
        for index, (label, paths) in enumerate(sorted(s.trajectories.items())):
            color = colors[index % len(colors)]
            for number, path in enumerate(paths):
                xs, ys = zip(*path, strict=True)
                ax.plot(
                    xs,
                    ys,
                    "-",
                    color=color,
                    alpha=0.6,
                    linewidth=1,
                    label=f"{label} (n={s.outcome_counts[label]})" if number == 0 else None,
                )
                ax.plot(xs[0], ys[0], "o", color=color, markersize=3)
                ax.plot(xs[-1], ys[-1], ">", color=color, markersize=4)
        ax.set_xlabel("latent dimension 1 (a.u.)")
        ax.set_ylabel("latent dimension 2 (a.u.)")
        ax.set_title(name)
        ax.legend(fontsize=7, title="outcome", title_fontsize=7)
        drawn = sum(len(p) for p in s.trajectories.values())
        parts.append(
            f"{name}: {drawn} of {s.latent_records} conversations, k = " + ", ".join(str(k) for k in sorted(s.latent_k))
        )
    fig.suptitle("Smoothed latent trajectories, first two dimensions")
    report.figures.append(
        Figure(
            _save(plt, fig, out, "latent_trajectories.png"),
            "Latent trajectories",
            "Smoothed latent state of each turn (annotations.latents.smoothed) in the first two dimensions, one line "
            f"per conversation from its first turn (circle) to its last (arrow), coloured by native outcome; at most "
            f"{MAX_TRAJECTORIES} per outcome and source. " + "; ".join(parts) + ".",
        )
    )


def _bars(ax, items: list[Estimate]) -> None:
    import numpy as np

    x = np.arange(len(items))
    values = [e.value for e in items]
    errors = np.array(
        [
            [e.value - e.low if e.low is not None else np.nan for e in items],
            [e.high - e.value if e.high is not None else np.nan for e in items],
        ]
    )
    palette = _palette()
    colors = [palette[i % len(palette)] for i in range(len(items))]  # one colour per bar
    bars = ax.bar(x, values, color=colors, yerr=np.clip(errors, 0, None), capsize=4, ecolor="black")
    ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=7, padding=2)
    ax.set_xticks(x, [e.label for e in items], rotation=25, ha="right", fontsize=8)
    ax.axhline(0, color="black", linewidth=0.6)


def _latent_quality(plt, out: Path, folder: Path, manifest: dict[str, Any], report: Report) -> None:
    relative, quality, problem = read_quality(folder, manifest)
    if quality is None:
        report.not_drawn.append(f"Latent quality: {problem}.")
        return
    model = about(quality)
    _latent_r2(plt, out, quality, relative, model, report)
    _latent_probes(plt, out, quality.get("probes") or {}, relative, model, report)


def _latent_r2(plt, out: Path, quality: dict[str, Any], relative: str, about: str, report: Report) -> None:
    section = quality.get("next_turn_r2")
    if not isinstance(section, dict):
        report.not_drawn.append(f"Latent next-turn R²: {relative} has no next_turn_r2 section.")
        return
    if "skipped" in section:
        report.not_drawn.append(f"Latent next-turn R²: skipped by the build: {section['skipped']}.")
        return
    r2, not_finite = r2_estimates(section)
    if not r2:
        report.not_drawn.append(f"Latent next-turn R²: no value in {relative} is a finite number.")
        return
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(r2) + 2), 3.8))
    _bars(ax, r2)
    ax.set_xlabel("model or baseline")
    ax.set_ylabel("R² (1 = perfect, 0 = mean)")
    ax.set_title("Held-out next-turn R² in embedding space")
    caption = (
        f"Held-out one-step-ahead R² of the latent model ({section.get('method')}) and its baselines on "
        f"{section.get('n_predicted_turns')} predicted turns, pooled around the train mean (so train_mean is 0), "
        f"from {relative}{about}; "
        + ("bars: 95% bootstrap intervals over test conversations." if section.get("spaces")
           else "the report gives no intervals for these.")  # fmt: skip
    )
    if not_finite:
        caption += " Not a finite number, not drawn: " + ", ".join(not_finite) + "."
    angle = stability_angle(quality)
    if angle is not None:
        caption += f" Stability: the latent subspaces of two refits are at most {angle:.1f}° apart."
    report.figures.append(
        Figure(_save(plt, fig, out, "latent_next_turn_r2.png"), "Latent model: next-turn R²", caption)
    )


def _latent_probes(plt, out: Path, probes: dict[str, Any], relative: str, about: str, report: Report) -> None:
    if not probes:
        report.not_drawn.append(f"Probe AUC: {relative} has no probe results.")
        return
    panels: dict[str, list[Estimate]] = {}
    not_fitted: dict[str, list[str]] = {}  # status -> targets with why
    for target, probe in probes.items():
        status = probe.get("status")
        found = probe_estimates(probe) if status == "ok" else []
        if found:
            panels[target] = found
        elif status == "ok":
            not_fitted.setdefault("no finite AUC", []).append(target)
        else:
            not_fitted.setdefault(str(status), []).append(f"{target} ({probe_detail(probe)})")
    for status, targets in not_fitted.items():
        report.not_drawn.append(f"Probe AUC, {status}: " + ", ".join(targets) + ".")
    if not panels:
        return
    fig, axes = _grid(plt, len(panels), width=4.6, height=3.8)
    for ax, (target, items) in zip(axes, panels.items(), strict=True):
        _bars(ax, items)
        ax.axhline(0.5, color="grey", linestyle="--", linewidth=0.8, label="chance (AUC 0.5)")
        ax.set_ylim(0, 1.1)
        ax.set_xlabel("feature set")
        ax.set_ylabel("AUC (grouped cross-validation)")
        ax.set_title(target)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Outcome probes: AUC per feature set")
    report.figures.append(
        Figure(
            _save(plt, fig, out, "latent_probe_auc.png"),
            "Outcome probes: AUC per feature set",
            f"Out-of-fold AUC of logistic-regression probes predicting each native outcome from each feature set, "
            f"from {relative}{about}; error bars are the report's 95% bootstrap intervals. "
            + "; ".join(probe_summary(t, probes[t]) for t in panels)
            + ".",
        )
    )


def _benchmark(plt, out: Path, folder: Path, report: Report) -> None:
    """The benchmark's two curves, from reports/benchmark.json: early_outcome's AUROC against the fraction of
    turns seen, and stop_policy's accuracy against the tokens spent."""
    from coord_bench.evaluate import BENCHMARK_REPORT

    path = folder / BENCHMARK_REPORT
    if not path.is_file():
        report.not_drawn.append(f"Benchmark curves: {BENCHMARK_REPORT} is absent (run coord-bench evaluate first).")
        return
    tasks = json.loads(path.read_text(encoding="utf-8"))["tasks"]
    _early_outcome_curves(plt, out, tasks.get("early_outcome"), report)
    _stop_policy_curve(plt, out, tasks.get("stop_policy"), report)


def _scored(task: dict[str, Any] | None, name: str, report: Report) -> bool:
    if task is None or task["status"] != "ok":
        why = "not run" if task is None else task["reason"]
        report.not_drawn.append(f"Benchmark {name}: not scored on this build ({why}).")
        return False
    return True


def _early_outcome_curves(plt, out: Path, task: dict[str, Any] | None, report: Report) -> None:
    if not _scored(task, "early_outcome", report):
        return
    curves: dict[str, dict[str, list]] = {}  # target -> predictor -> [(f, estimate)]
    for row in task["results"]:
        setting = row.get("setting") or {}
        auroc = row["metrics"].get("auroc")
        if isinstance(setting.get("f"), float) and auroc and auroc["value"] is not None:
            curves.setdefault(setting["target"], {}).setdefault(row["predictor"], []).append((setting["f"], auroc))
    if not curves:
        report.not_drawn.append("Benchmark early_outcome: no AUROC is defined on this build's test rows.")
        return
    fig, axes = _grid(plt, len(curves), width=5.0, height=3.8, columns=2)
    for ax, (target, by_predictor) in zip(axes, sorted(curves.items()), strict=True):
        for predictor, points in sorted(by_predictor.items()):
            f = [p[0] for p in points]
            ax.plot(f, [p[1]["value"] for p in points], marker="o", label=predictor)
            low = [p[1]["low"] if p[1]["low"] is not None else p[1]["value"] for p in points]
            high = [p[1]["high"] if p[1]["high"] is not None else p[1]["value"] for p in points]
            ax.fill_between(f, low, high, alpha=0.12)
        ax.axhline(0.5, color="grey", linestyle="--", linewidth=0.8)
        ax.set_ylim(0, 1)
        ax.set_xlabel("fraction of turns seen (f)")
        ax.set_ylabel("test AUROC")
        ax.set_title(target)
        ax.legend(fontsize=6, loc="lower right")
    report.figures.append(Figure(
        _save(plt, fig, out, "benchmark_early_outcome.png"), "Benchmark early_outcome: AUROC vs turns seen",
        f"Test AUROC of each early_outcome baseline from the first f of a debate's turns; bands are 95% "
        f"group-bootstrap intervals, the dashed line is chance. Test examples: {task['splits']['test']}.",
    ))  # fmt: skip


def _stop_policy_curve(plt, out: Path, task: dict[str, Any] | None, report: Report) -> None:
    if not _scored(task, "stop_policy", report):
        return
    points = [(r["predictor"], r["metrics"]["tokens_spent"], r["metrics"]["accuracy"]) for r in task["results"]
              if r["metrics"].get("accuracy") and r["metrics"]["accuracy"]["value"] is not None]  # fmt: skip
    if not points:
        report.not_drawn.append("Benchmark stop_policy: no policy has an accuracy on this build's test rows.")
        return
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    for predictor, tokens, acc in points:
        ax.errorbar(tokens["value"], acc["value"], fmt="o", capsize=3,
                    yerr=[[acc["value"] - (acc["low"] if acc["low"] is not None else acc["value"])],
                          [(acc["high"] if acc["high"] is not None else acc["value"]) - acc["value"]]])  # fmt: skip
        ax.annotate(predictor, (tokens["value"], acc["value"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("mean tokens spent up to the stopping turn")
    ax.set_ylabel("test accuracy")
    ax.set_title("Stopping a debate early: accuracy vs tokens")
    report.figures.append(Figure(
        _save(plt, fig, out, "benchmark_stop_policy.png"), "Benchmark stop_policy: accuracy vs tokens",
        f"Each stop_policy baseline's test accuracy (95% group-bootstrap interval) against the mean tokens it "
        f"spends; the oracle is the ceiling. Test examples: {task['splits']['test']}.",
    ))  # fmt: skip


def draw(out: Path, folder: Path, manifest: dict[str, Any], stats: dict[str, SourceStats]) -> Report:
    """Every figure of the build into ``out``, in the page's order; ``stats`` loses its 0-token messages (counted
    in the caption instead)."""
    plt = _plt()
    report = Report()
    zero = {name: s.message_tokens.get(0, 0) for name, s in stats.items() if s.message_tokens.get(0)}
    for s in stats.values():  # 0 has no place on a log axis: counted in the caption instead
        s.message_tokens.pop(0, None)
    zero_note = " Messages of 0 tokens are not shown on the log axis: " + ", ".join(f"{k} {v}" for k, v in zero.items())
    for spec in DISTRIBUTIONS:
        extra = zero_note + "." if zero and spec.attr == "message_tokens" else ""
        _distribution(plt, out, stats, report, spec, extra=extra)
    _arena_winners(plt, out, stats, report)
    _debate_outcomes(plt, out, stats, report)
    _coordination(plt, out, stats, report)
    _trajectories(plt, out, stats, report)
    _latent_quality(plt, out, folder, manifest, report)
    _benchmark(plt, out, folder, report)
    return report
