"""early_outcome: predict a debate's outcome from the first fraction of its turns.

For each fraction f the prefix is the first max(1, ceil(f * n_turns)) turns; every feature is computed from
the prefix alone (the latent baseline reads the FILTERED state of the prefix's last turn, which depends on
no later turn; the smoothed states would leak the future). Each example keeps, per prefix, a handful of
numbers (vote statistics, answer changes, sizes), the prefix's mean message embedding when the build ran the
embeddings layer, and the filtered latent state when it ran the latent layer.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

from coord_bench.answers import normalize_answer
from coord_bench.tasks.base import Example, PredictionError, Predictions, Task, probability
from coord_bench.tasks.logistic import fit_probe
from coord_bench.tasks.metrics import auroc, brier, estimate

FRACTIONS = (0.25, 0.5, 0.75, 1.0)
TARGETS = ("decision_success", "answer_correct")


def prefix_length(n_turns: int, fraction: float) -> int:
    return max(1, math.ceil(fraction * n_turns))


def field_name(target: str, fraction: float) -> str:
    return f"p_{target}_f{fraction}"


def vote_statistics(messages: list[dict[str, Any]]) -> list[float]:
    """[share of the turn's solutions equal to its majority solution, entropy (nats) of the solutions];
    solutions are compared after answer normalization, and a turn with no solution gives [0, 0]."""
    counts = Counter(normalize_answer(m["solution"]) for m in messages if m["solution"] and m["solution"].strip())
    total = sum(counts.values())
    if not total:
        return [0.0, 0.0]
    shares = np.array(list(counts.values())) / total
    return [float(shares.max()), float(-(shares * np.log(shares)).sum())]


def _answer_changes(turns: list[dict[str, Any]]) -> list[int]:
    """Per turn, how many times so far an agent's solution differed from its own previous solution."""
    last: dict[str, str] = {}
    changes, so_far = [], 0
    for turn in turns:
        for m in turn["messages"]:
            if not (m["solution"] and m["solution"].strip()):
                continue
            answer = normalize_answer(m["solution"])
            so_far += m["agent_id"] in last and last[m["agent_id"]] != answer
            last[m["agent_id"]] = answer
        changes.append(so_far)
    return changes


def _scalar(name: str):
    return lambda prefix: [prefix[name]]


def _log_size(name: str):
    return lambda prefix: None if prefix[name] is None else [math.log1p(prefix[name])]


# baseline name -> (features of one prefix, or None when the build lacks them; what is missing then)
FEATURE_SETS = {
    "first_turn_vote_share": (_scalar("first_vote_share"), None),
    "first_turn_vote_entropy": (_scalar("first_vote_entropy"), None),
    "last_turn_vote_share": (_scalar("last_vote_share"), None),
    "last_turn_vote_entropy": (_scalar("last_vote_entropy"), None),
    "answer_changes": (_scalar("changes"), None),
    "tokens_so_far": (_log_size("tokens"), "annotations.token_usage (the tokens layer did not run)"),
    "chars_so_far": (_log_size("chars"), None),
    "mean_embedding_so_far": (lambda p: p["embedding"], "message embeddings (the build ran no embeddings layer)"),
    "latent_filtered": (lambda p: p["latent"], "annotations.latents (the latent layer did not run)"),
}


def auroc_area(gold: np.ndarray, *scores: np.ndarray) -> float:
    """Area under AUROC-vs-f (trapezoid over FRACTIONS), divided by the f range: 0.5 = chance throughout."""
    values = [auroc(gold, s) for s in scores]
    area = sum((FRACTIONS[i + 1] - FRACTIONS[i]) * (values[i] + values[i + 1]) / 2 for i in range(len(values) - 1))
    return area / (FRACTIONS[-1] - FRACTIONS[0])


class EarlyOutcome(Task):
    name = "early_outcome"
    definition = (
        "Input: the first max(1, ceil(f x n_turns)) turns of a conversation, f in 0.25 / 0.5 / 0.75 / 1.0 (texts, "
        "solutions, agreement flags, token counts, and only the FILTERED latent state of the prefix's last turn). "
        "Targets: DEBATE decision_success and answer_correct (any record carrying them; a null target is "
        "skipped). Metrics per target and f: AUROC and Brier score on test; earliness = area under AUROC-vs-f "
        "(trapezoid, divided by the f range: 0.5 is chance at every f). Baselines: the train class rate; and "
        "standardized logistic regressions (C from {0.01, 0.1, 1, 10} by validation log loss, C = 1 when the "
        "validation rows lack a class; each row's setting says which) on the first turn's vote share and vote "
        "entropy, the prefix's last turn's vote share and entropy, answer changes so far, tokens (or characters) "
        "so far, the prefix's mean message embedding, and the filtered latent state. Majority voting explains "
        "most of what debate gains (Choi et al., arXiv 2508.17536), so the first-turn vote share is the "
        "baseline an early predictor must beat. Note that the prefix length reveals the conversation's length."
    )
    prediction_fields = {
        **{
            field_name(t, f): f"probability that {t} is true, from the first {f:g} of the turns (optional: "
            f"all four fractions of {t} or none, the same on every line)"
            for t in TARGETS
            for f in FRACTIONS
        }
    }

    def __init__(self, context):
        super().__init__(context)
        self.embeds = "embeddings" in context.layers

    def example(self, record: dict[str, Any]) -> Example | None:
        gold = {t: record["outcome"][t] for t in TARGETS}
        if all(v is None for v in gold.values()):
            return None
        turns = record["turns"]
        changes = _answer_changes(turns)
        chars = np.cumsum([sum(m["n_chars"] for m in t["messages"]) for t in turns])
        usage = record["annotations"]["token_usage"]
        if usage:
            per_index = {t["index"]: t["n_tokens"] for t in usage["per_turn"]}
            tokens = np.cumsum([per_index.get(t["index"], 0) for t in turns])
        latents = record["annotations"]["latents"]
        means = self._embedding_means(turns) if self.embeds else None
        first_share, first_entropy = vote_statistics(turns[0]["messages"])
        prefixes = []
        for fraction in FRACTIONS:
            end = prefix_length(len(turns), fraction) - 1
            last_share, last_entropy = vote_statistics(turns[end]["messages"])
            prefixes.append({
                "first_vote_share": first_share,
                "first_vote_entropy": first_entropy,
                "last_vote_share": last_share,
                "last_vote_entropy": last_entropy,
                "changes": changes[end],
                "chars": int(chars[end]),
                "tokens": int(tokens[end]) if usage else None,
                "embedding": means[end] if means is not None else None,
                "latent": latents["filtered"][end] if latents else None,
            })  # fmt: skip
        return Example(record["id"], record["split"], record["split_group"], gold, {"prefixes": prefixes})

    def _embedding_means(self, turns: list[dict[str, Any]]) -> np.ndarray:
        """Row t: the mean embedding of every message of turns 0..t."""
        texts = [m["text"] for t in turns for m in t["messages"]]
        vectors = self.context.embedder.vectors(texts).astype(np.float64)
        ends = np.cumsum([len(t["messages"]) for t in turns])
        sums = np.cumsum(vectors, axis=0)[ends - 1]
        return (sums / ends[:, None]).astype(np.float32)

    def unsupported(self, examples: list[Example]) -> str | None:
        reason = super().unsupported(examples)
        if reason:
            return reason
        if not any(_both_classes(examples, t, "train") and _both_classes(examples, t, "test") for t in TARGETS):
            return f"no target ({', '.join(TARGETS)}) has labelled train and test rows of both classes"
        return None

    def baselines(self):
        return {"class_prior": _class_prior, **{name: _feature_baseline(name) for name in FEATURE_SETS}}

    def check_prediction(self, value: dict[str, Any]) -> dict[str, Any]:
        known = {field_name(t, f) for t in TARGETS for f in FRACTIONS}
        unknown = sorted(set(value) - known)
        if unknown:
            raise PredictionError(f"unknown field '{unknown[0]}'; expected fields like {field_name(TARGETS[1], 0.5)}")
        for target in TARGETS:
            given = [field_name(target, f) in value for f in FRACTIONS]
            if any(given) and not all(given):
                missing = next(field_name(target, f) for f in FRACTIONS if field_name(target, f) not in value)
                raise PredictionError(f"field '{missing}' is missing (give all four fractions of {target} or none)")
        if not value:
            raise PredictionError(f"no prediction field; expected e.g. {field_name(TARGETS[1], 0.5)}")
        return {name: probability(v, name) for name, v in value.items()}

    def score(self, test: list[Example], predictions: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        rows = []
        for target in TARGETS:
            labelled = [e for e in test if e.gold[target] is not None]
            given = [e for e in labelled if field_name(target, FRACTIONS[0]) in predictions[e.id]]
            if not labelled:
                continue
            if not given:
                why = f"no probabilities for {target} (its labelled train rows hold one class)"
                rows.append({"subset": target, "metrics": {}, "reason": why})
                continue
            if len(given) < len(labelled):
                lacking = next(e.id for e in labelled if field_name(target, FRACTIONS[0]) not in predictions[e.id])
                raise PredictionError(f"id {lacking!r}: no {target} probabilities, though other rows have them")
            gold = np.array([bool(e.gold[target]) for e in labelled])
            groups = [e.group for e in labelled]
            columns = [np.array([predictions[e.id][field_name(target, f)] for e in labelled]) for f in FRACTIONS]
            for fraction, column in zip(FRACTIONS, columns, strict=True):
                rows.append({
                    "subset": f"{target}@f={fraction}",
                    "metrics": {"auroc": estimate(auroc, groups, gold, column),
                                "brier": estimate(brier, groups, gold, column)},
                    "setting": {"target": target, "f": fraction},
                })  # fmt: skip
            rows.append({
                "subset": f"{target}@earliness",
                "metrics": {"auroc_area": estimate(auroc_area, groups, gold, *columns)},
                "setting": {"target": target, "f": list(FRACTIONS)},
            })  # fmt: skip
        return rows


def _both_classes(examples: list[Example], target: str, split: str) -> bool:
    return len({e.gold[target] for e in examples if e.split == split and e.gold[target] is not None}) == 2


def _labelled(examples: list[Example], target: str) -> tuple[list[Example], np.ndarray]:
    rows = [e for e in examples if e.gold[target] is not None]
    return rows, np.array([bool(e.gold[target]) for e in rows])


def _class_prior(train, validation, test) -> Predictions:
    predictions = Predictions({e.id: {} for e in test})
    for target in TARGETS:
        _, y = _labelled(train, target)
        if len(np.unique(y)) < 2:
            continue
        for e in test:
            predictions[e.id].update({field_name(target, f): float(y.mean()) for f in FRACTIONS})
    if not any(predictions.values()):
        raise PredictionError("no target has labelled train rows of both classes")
    return predictions


def _feature_baseline(name: str):
    features, needs = FEATURE_SETS[name]

    def matrix(examples: list[Example], position: int) -> np.ndarray:
        values = [features(e.features["prefixes"][position]) for e in examples]
        if any(v is None for v in values):
            lacking = sum(v is None for v in values)
            raise PredictionError(f"{lacking} of {len(values)} examples lack {needs}")
        return np.array(values, dtype=float)

    def fit(train: list[Example], validation: list[Example], test: list[Example]) -> Predictions:
        predictions = Predictions({e.id: {} for e in test})
        for target in TARGETS:
            train_rows, y_train = _labelled(train, target)
            if len(np.unique(y_train)) < 2:
                continue
            validation_rows, y_val = _labelled(validation, target)
            for position, fraction in enumerate(FRACTIONS):
                x_val = matrix(validation_rows, position) if validation_rows else np.zeros((0, 1))
                probe = fit_probe(matrix(train_rows, position), y_train, x_val, y_val)
                for e, p in zip(test, probe.predict(matrix(test, position)), strict=True):
                    predictions[e.id][field_name(target, fraction)] = float(p)
                predictions.settings[f"{target}@f={fraction}"] = probe.setting
        if not any(predictions.values()):
            raise PredictionError("no target has labelled train rows of both classes")
        return predictions

    return fit
