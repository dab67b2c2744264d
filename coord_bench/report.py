"""``coord-bench report DIR``: an HTML quality report of a build, with PNG figures beside it.

Writes ``DIR/report/index.html``, one PNG per figure and ``DIR/report/figures.json`` (the figures, their
captions and the figures left out, for the dataset card: :func:`card_figures`). Every number comes from the
build: the manifest (counts), the Parquet rows (distributions) and the latent quality report
(``reports/latent_quality.json``). The rows are streamed, reading only the small columns the figures plot
(never the message texts), and only per-record numbers are kept: value counts, label counts, and at most
:data:`MAX_TRAJECTORIES` latent trajectories per source and outcome. A figure whose data is absent is not
drawn; the page says in one line why.
"""

from __future__ import annotations

import html
import itertools
import json
import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coord_bench.build_folder import iter_record_batches, read_manifest
from coord_bench.outcomes import outcome_label

REPORT_DIR = "report"
INDEX_FILE = "index.html"
FIGURES_FILE = "figures.json"
DEFAULT_LATENT_REPORT = "reports/latent_quality.json"  # where the latents mapper writes it (its manifest entry wins)
MAX_TRAJECTORIES = 25  # per source and outcome label, the first ones in file order
DPI = 100

# The Parquet columns the figures need; nested paths keep the message texts unread.
COLUMNS = (
    "source",
    "n_turns",
    "n_agents",
    "turns.list.element.messages.list.element.n_tokens",
    "outcome.winner",
    "outcome.decision_success",
    "outcome.answer_correct",
    "protocol.paradigm",
    "protocol.decision_protocol",
    "annotations.latents.k",
    "annotations.latents.smoothed",
    "annotations.coordination.rules.agreement_level",
    "annotations.coordination.rules.success",
    "annotations.coordination.judges.list.element.model",
    "annotations.coordination.judges.list.element.status",
    "annotations.coordination.judges.list.element.agreement_level",
    "annotations.coordination.consensus.agreement_level",
)


# ---------------------------------------------------------------------------------------------- collecting


@dataclass
class SourceStats:
    """The small per-record numbers of one source that the figures plot."""

    conversations: int = 0
    turns: Counter = field(default_factory=Counter)  # n_turns -> conversations
    agents: Counter = field(default_factory=Counter)  # n_agents -> conversations
    message_tokens: Counter = field(default_factory=Counter)  # n_tokens -> messages
    messages_without_tokens: int = 0
    winners: Counter = field(default_factory=Counter)  # arena winner (None: no vote) -> conversations
    debate: dict[tuple[str, str], Counter] = field(default_factory=lambda: defaultdict(Counter))
    rules_levels: Counter = field(default_factory=Counter)
    rules_success: Counter = field(default_factory=Counter)
    rules_records: int = 0
    judge_levels: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    consensus_levels: Counter = field(default_factory=Counter)  # the judges together (their majority class)
    judge_status: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    pair_agreement: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (a, b) -> [same, both]
    latent_records: int = 0
    latent_k: Counter = field(default_factory=Counter)
    outcome_counts: Counter = field(default_factory=Counter)  # of the records with latents
    trajectories: dict[str, list[list[tuple[float, float]]]] = field(default_factory=lambda: defaultdict(list))

    def add(self, row: dict[str, Any]) -> None:
        self.conversations += 1
        if row.get("n_turns") is not None:
            self.turns[row["n_turns"]] += 1
        if row.get("n_agents") is not None:
            self.agents[row["n_agents"]] += 1
        for turn in row.get("turns") or []:
            for message in turn.get("messages") or []:
                if message.get("n_tokens") is None:
                    self.messages_without_tokens += 1
                else:
                    self.message_tokens[message["n_tokens"]] += 1
        outcome = row.get("outcome") or {}
        protocol = row.get("protocol") or {}
        if outcome.get("winner") is not None:
            self.winners[outcome["winner"]] += 1
        if outcome.get("decision_success") is not None or outcome.get("answer_correct") is not None:
            group = self.debate[(str(protocol.get("paradigm")), str(protocol.get("decision_protocol")))]
            group["n"] += 1
            for name in ("decision_success", "answer_correct"):
                if outcome.get(name) is not None:
                    group[f"{name}_known"] += 1
                    group[name] += bool(outcome[name])
        annotations = row.get("annotations") or {}
        self._add_coordination(annotations.get("coordination"))
        latents = annotations.get("latents")
        if latents and latents.get("smoothed"):
            self.latent_records += 1
            self.latent_k[latents.get("k") or len(latents["smoothed"][0])] += 1
            label = outcome_label(outcome)
            self.outcome_counts[label] += 1
            kept = self.trajectories[label]
            if len(kept) < MAX_TRAJECTORIES and len(latents["smoothed"][0]) >= 2:
                kept.append([(float(state[0]), float(state[1])) for state in latents["smoothed"]])

    def _add_coordination(self, coordination: dict[str, Any] | None) -> None:
        if not coordination:
            return
        labels: dict[str, str] = {}
        rules = coordination.get("rules")
        if rules:
            self.rules_records += 1
            self.rules_levels[rules.get("agreement_level")] += 1
            self.rules_success[rules.get("success")] += 1
            if rules.get("agreement_level") is not None:
                labels["rules"] = rules["agreement_level"]
        for judge in coordination.get("judges") or []:
            model = str(judge.get("model"))
            self.judge_status[model][judge.get("status")] += 1
            if judge.get("status") == "ok":
                self.judge_levels[model][judge.get("agreement_level")] += 1
                if judge.get("agreement_level") is not None:
                    labels[model] = judge["agreement_level"]
        consensus = coordination.get("consensus")
        if consensus and consensus.get("agreement_level") is not None:
            self.consensus_levels[consensus["agreement_level"]] += 1
        for a, b in itertools.combinations(sorted(labels), 2):
            same_both = self.pair_agreement.setdefault((a, b), [0, 0])
            same_both[0] += labels[a] == labels[b]
            same_both[1] += 1


def iter_plot_rows(folder: Path, manifest: dict[str, Any], batch_size: int = 1024) -> Iterator[dict[str, Any]]:
    """Every record of the build once, with only :data:`COLUMNS` read."""
    for batch in iter_record_batches(folder, manifest, list(COLUMNS), batch_size=batch_size):
        yield from batch


def collect(rows: Iterable[dict[str, Any]], source_names: Iterable[str] = ()) -> dict[str, SourceStats]:
    stats = {name: SourceStats() for name in source_names}
    for row in rows:
        stats.setdefault(row.get("source") or "unknown", SourceStats()).add(row)
    return stats


# ----------------------------------------------------------------------------------------- latent quality
# reports/latent_quality.json is written by this package (coord_bench.mappers.latents.layer._quality, from
# coord_bench.mappers.latents.quality), and read here as that layout:
#   "next_turn_r2": {"model", "train_mean", "copy_last", "pca_no_dynamics", "pca_rrr": R², "method",
#                    "model_hash", "n_predicted_turns"}, or {"skipped": reason};
#   "probes": {target: {"status": "ok", "n_rows", "cv", "n_splits", "n_boot", "features": {name: {"auc",
#              "auc_ci": [lo, hi], "log_loss", "log_loss_ci", and for all but the baseline "delta_auc",
#              "delta_auc_ci", ...}}}, or {"status": "insufficient data", "reason" (optional), "n_rows",
#              "n_groups", "class_counts", "groups_per_class"}};
#   "stability" (optional): {"max_angle_deg", "mean_angle_deg", "angles_deg", ...}.

R2_KEYS = ("model", "train_mean", "copy_last", "pca_no_dynamics", "pca_rrr")  # the latent model, then its baselines


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


def r2_estimates(section: dict[str, Any]) -> tuple[list[Estimate], list[str]]:
    """The held-out next-turn R² of the model and of each baseline (the report gives no intervals for them), and
    the keys of :data:`R2_KEYS` whose value is not a finite number."""
    found, not_finite = [], []
    for key in R2_KEYS:
        value = _number(section.get(key))
        if value is None:
            not_finite.append(key)
        else:
            found.append(Estimate(key, value))
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


def _probe_detail(probe: dict[str, Any]) -> str:
    """Why a probe was not fitted: its reason when it gives one, and the counts it was judged on."""
    parts = [str(probe["reason"])] if probe.get("reason") else []
    if probe.get("n_rows") is not None:
        parts.append(f"{probe['n_rows']} rows in {probe.get('n_groups')} groups")
    groups = probe.get("groups_per_class") or {}
    if groups:
        parts.append("groups per class " + ", ".join(f"{cls} {n}" for cls, n in groups.items()))
    return "; ".join(parts) or "no detail in the report"


def _probe_summary(target: str, probe: dict[str, Any]) -> str:
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


# ----------------------------------------------------------------------------------------------- figures


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
    entry = (manifest.get("annotations") or {}).get("latents") or {}
    relative = entry.get("quality_report") or DEFAULT_LATENT_REPORT
    path = folder / relative
    if not path.is_file():
        report.not_drawn.append(f"Latent quality: {relative} is absent (build with --annotate latents).")
        return
    try:
        quality = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        report.not_drawn.append(f"Latent quality: {relative} cannot be read ({err}).")
        return
    if not isinstance(quality, dict):
        report.not_drawn.append(f"Latent quality: {relative} is not a JSON object.")
        return
    about = ", ".join(
        f"{key} {quality[key]}"
        for key in ("method", "k", "train_sequences", "held_out_sequences")
        if isinstance(quality.get(key), (str, int, float))
    )
    about = f" ({about})" if about else ""
    _latent_r2(plt, out, quality, relative, about, report)
    _latent_probes(plt, out, quality.get("probes") or {}, relative, about, report)


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
        f"from {relative}{about}; the report gives no intervals for these."
    )
    if not_finite:
        caption += " Not a finite number, not drawn: " + ", ".join(not_finite) + "."
    angle = _number((quality.get("stability") or {}).get("max_angle_deg"))
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
            not_fitted.setdefault(str(status), []).append(f"{target} ({_probe_detail(probe)})")
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
            + "; ".join(_probe_summary(t, probes[t]) for t in panels)
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


# -------------------------------------------------------------------------------------------------- html

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#f2f2f2}td.num{text-align:right}
tr.total td{font-weight:bold;background:#fafafa}
figure{margin:1.4em 0;padding:.6em;border:1px solid #e4e4e4;border-radius:4px}
figure img{max-width:100%;height:auto;display:block}figcaption{font-size:.9em;color:#444;margin-top:.4em}
.meta{color:#555;font-size:.9em}li{margin:.2em 0}code{background:#f4f4f4;padding:0 .2em}
"""


def _html_table(header: list[str], rows: list[list[Any]], total: list[Any] | None = None) -> str:
    def cells(tag: str, row: list[Any]) -> str:
        numeric = ' class="num"'
        return "".join(
            f"<{tag}{numeric if isinstance(cell, (int, float)) else ''}>{html.escape(str(cell))}</{tag}>"
            for cell in row
        )

    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    if total:
        body += f'<tr class="total">{cells("td", total)}</tr>'
    return f"<table><thead><tr>{cells('th', header)}</tr></thead><tbody>{body}</tbody></table>"


def counts_tables(manifest: dict[str, Any]) -> str:
    splits = list((manifest.get("split_method") or {}).get("ratios") or {})
    sources = manifest.get("sources", {})
    rows = []
    for name, s in sources.items():
        kinds = ", ".join(f"{k} {v}" for k, v in (s.get("rejects_by_kind") or {}).items()) or "-"
        rows.append(
            [
                name,
                s.get("read"),
                s.get("normalized"),
                s.get("rejected"),
                s.get("filtered", 0),
                *[(s.get("splits") or {}).get(split, 0) for split in splits],
                kinds,
            ]
        )
    totals = manifest.get("totals") or {}
    total = [
        "total",
        *[totals.get(k) for k in ("read", "normalized", "rejected", "filtered")],
        *[sum((s.get("splits") or {}).get(split, 0) for s in sources.values()) for split in splits],
        "",
    ]
    parts = [
        _html_table(["source", "read", "normalized", "rejected", "filtered", *splits, "rejected by kind"], rows, total)
    ]
    configs = manifest.get("configs") or {}
    if configs:
        parts.append(
            _html_table(
                ["config", "sources", *splits, "rows"],
                [
                    [
                        name,
                        ", ".join(c.get("sources", [])),
                        *[(c.get("splits") or {}).get(s, 0) for s in splits],
                        c.get("num_rows"),
                    ]
                    for name, c in configs.items()
                ],
            )
        )
    return "\n".join(parts)


def render_html(folder: Path, manifest: dict[str, Any], report: Report) -> str:
    title = f"coord_bench report: {Path(folder).resolve().name}"
    recipe = manifest.get("recipe") or {}
    meta = (
        f"Built {manifest.get('built_at')} by coord_bench {manifest.get('coord_bench_version')} "
        f"(schema {manifest.get('schema_version')})"
        + (
            f" from recipe <code>{html.escape(str(recipe.get('name')))}</code> (sha256 "
            f"<code>{html.escape(str(manifest.get('recipe_hash', ''))[:12])}</code>)"
            if recipe
            else ""
        )
        + ". Annotation layers: "
        + html.escape(", ".join(manifest.get("annotations") or {}) or "none")
        + "."
    )
    figures = "\n".join(
        f'<figure id="{html.escape(Path(f.file).stem)}"><img src="{html.escape(f.file)}" '
        f'alt="{html.escape(f.title)}"><figcaption><b>Figure {i}. {html.escape(f.title)}.</b> '
        f"{html.escape(f.caption)}</figcaption></figure>"
        for i, f in enumerate(report.figures, 1)
    )
    missing = "".join(f"<li>{html.escape(line)}</li>" for line in report.not_drawn)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title><style>{CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
<p class="meta">{meta} Every number on this page comes from <code>build_manifest.json</code>, the Parquet
rows and the build's reports.</p>
<h2>Counts</h2>
<p>Records per source (read = normalized + rejected + filtered) and per split, then rows per config.</p>
{counts_tables(manifest)}
<h2>Figures</h2>
{figures or "<p>No figure: the build has no data to draw.</p>"}
<h2>Not drawn</h2>
{f"<ul>{missing}</ul>" if missing else "<p>Every figure was drawn.</p>"}
</body></html>
"""


# ---------------------------------------------------------------------------------------------- entry


def write_report(folder: Path) -> tuple[Path, Report]:
    """Write ``folder/report/``: index.html, the PNG figures and figures.json; return the page and the report."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    out = folder / REPORT_DIR
    out.mkdir(exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    stats = collect(iter_plot_rows(folder, manifest), manifest.get("sources", {}))
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
    index = out / INDEX_FILE
    index.write_text(render_html(folder, manifest, report), encoding="utf-8")
    (out / FIGURES_FILE).write_text(
        json.dumps(
            {
                "figures": [vars(f) for f in report.figures],
                "not_drawn": report.not_drawn,
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    return index, report


def card_figures(folder: Path) -> str:
    """Markdown for the dataset card: the report's figures as repo-relative image links (``report/<name>.png``).

    Empty when the build has no report (run ``coord-bench report DIR`` first).
    """
    out = Path(folder) / REPORT_DIR
    index = out / FIGURES_FILE
    if not index.is_file():
        return ""
    listed = json.loads(index.read_text(encoding="utf-8"))
    figures = [f for f in listed.get("figures", []) if (out / f["file"]).is_file()]
    if not figures:
        return ""
    parts = ["## Figures", "", "Made by `coord-bench report` from this build (the full report is `report/index.html`)."]
    for f in figures:
        parts += ["", f"![{f['title']}]({REPORT_DIR}/{f['file']})", "", f"*{f['caption']}*"]
    if listed.get("not_drawn"):
        parts += ["", "Not drawn:", ""] + [f"- {line}" for line in listed["not_drawn"]]
    return "\n".join(parts) + "\n"


def main(folder: Path) -> int:
    start = time.perf_counter()
    index, report = write_report(folder)
    print(
        f"wrote {index}: {len(report.figures)} figures, {len(report.not_drawn)} not drawn "
        f"({time.perf_counter() - start:.1f} s)"
    )
    for line in report.not_drawn:
        print(f"  not drawn: {line}")
    return 0
