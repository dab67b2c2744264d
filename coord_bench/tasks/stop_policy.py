"""stop_policy: when can a debate stop? Replayed offline on logged debates.

A policy sees the turns one at a time and says after which turn to stop; its answer is the majority solution
of that turn (ties: the latest message's solution, as the DEBATE adapter's ``last_turn_majority``), correct
when it matches a reference. Spent tokens are those of the turns up to and including the stopping turn
(the tokens layer's per-turn counts, else characters / 4, said in each row's setting).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coord_bench.answers import is_correct, normalize_answer, turn_majority
from coord_bench.tasks.base import Example, PredictionError, Predictions, Task
from coord_bench.tasks.metrics import estimate

MAX_FIXED = 5  # fixed-k baselines for k = 1..MAX_FIXED (a conversation shorter than k stops at its end)
THRESHOLDS = (0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.999)  # cosine grid of the embedding-stability policy
ALLOWED_LOSS = 0.01  # "tokens saved at no more than 1 point of accuracy lost"


class StopPolicy(Task):
    name = "stop_policy"
    definition = (
        "Replayed on logged debates: a policy sees the turns one at a time and decides after which turn to stop; "
        "its answer is the majority solution of that turn, correct when it matches a reference. Metrics on test: "
        "accuracy, mean tokens spent up to the stopping turn, tokens saved against running every turn, accuracy "
        "lost against running every turn (paired), and the gap to the oracle that stops at the earliest correct "
        "turn. Baselines: a fixed number of turns (k = 1..5), stop at the first unanimous turn, stop when the "
        "mean message embeddings of two consecutive turns stop changing (cosine above a threshold chosen on "
        "train), and the policy chosen on validation that saves the most tokens within 1 point of accuracy."
    )
    prediction_fields = {"stop_turn": "0-based index (in turn order) of the turn after which the policy stops"}

    def __init__(self, context):
        super().__init__(context)
        self.embeds = "embeddings" in context.layers

    def example(self, record: dict[str, Any]) -> Example | None:
        references = record["task"]["references"]
        turns = record["turns"]
        majorities = [turn_majority(t["messages"]) for t in turns]
        if not references or not turns or all(m is None for m in majorities):
            return None
        correct = [m is not None and bool(is_correct(m, references)) for m in majorities]
        usage = (record["annotations"] or {}).get("token_usage")
        if usage:
            per_index = {t["index"]: t["n_tokens"] for t in usage["per_turn"]}
            spent, unit = [per_index.get(t["index"], 0) for t in turns], "tokens (tokens layer)"
        else:
            spent, unit = [sum(m["n_chars"] for m in t["messages"]) / 4 for t in turns], "characters / 4"
        unanimous = [
            m is not None and all(normalize_answer(x["solution"] or "") == normalize_answer(m) for x in t["messages"])
            for m, t in zip(majorities, turns, strict=True)
        ]
        similarity = self._similarities(turns) if self.embeds else None
        features = {"correct": correct, "cumulative": np.cumsum(spent).tolist(), "unit": unit,
                    "unanimous": unanimous, "similarity": similarity}  # fmt: skip
        return Example(record["id"], record["split"], record["split_group"], {"correct": correct}, features)

    def _similarities(self, turns: list[dict[str, Any]]) -> list[float | None]:
        """Cosine of turn t's mean message embedding to turn t-1's (None for the first turn)."""
        means = []
        for turn in turns:
            vectors = self.context.embedder.vectors([m["text"] for m in turn["messages"]]).astype(np.float64)
            mean = vectors.mean(axis=0)
            means.append(mean / (np.linalg.norm(mean) or 1.0))
        return [None] + [float(a @ b) for a, b in zip(means[1:], means[:-1], strict=True)]

    def baselines(self):
        policies = {f"fixed_k={k}": _fixed(k) for k in range(1, MAX_FIXED + 1)}
        policies["all_turns"] = lambda e: len(e.gold["correct"]) - 1
        policies["first_unanimous"] = _first_unanimous
        fitted = {name: _fixed_policy(policy) for name, policy in policies.items()}
        return {**fitted, "embedding_stable": self._embedding_stable, "best_within_1_point": self._best_within,
                "oracle": _fixed_policy(_oracle)}  # fmt: skip

    def check_prediction(self, value: dict[str, Any]) -> dict[str, Any]:
        if set(value) != {"stop_turn"}:
            raise PredictionError(f"expected exactly the field 'stop_turn', found {', '.join(sorted(value)) or 'none'}")
        stop = value["stop_turn"]
        if isinstance(stop, bool) or not isinstance(stop, int) or stop < 0:
            raise PredictionError(f"field 'stop_turn': expected a turn index (an integer >= 0), found {stop!r}")
        return {"stop_turn": stop}

    def score(self, test: list[Example], predictions: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        for e in test:
            if predictions[e.id]["stop_turn"] >= len(e.gold["correct"]):
                raise PredictionError(f"{e.id}: field 'stop_turn' is {predictions[e.id]['stop_turn']}, but the "
                                      f"conversation has {len(e.gold['correct'])} turn(s)")  # fmt: skip
        groups = [e.group for e in test]
        stops = [predictions[e.id]["stop_turn"] for e in test]
        correct = np.array([e.gold["correct"][s] for e, s in zip(test, stops, strict=True)], float)
        full = np.array([e.gold["correct"][-1] for e in test], float)
        oracle = np.array([any(e.gold["correct"]) for e in test], float)
        spent = np.array([e.features["cumulative"][s] for e, s in zip(test, stops, strict=True)])
        total = np.array([e.features["cumulative"][-1] for e in test])
        units = sorted({e.features["unit"] for e in test})
        metrics = {
            "accuracy": estimate(np.mean, groups, correct),
            "tokens_spent": estimate(np.mean, groups, spent),
            "tokens_saved": estimate(lambda s, t: 1 - s.sum() / t.sum() if t.sum() else 0.0, groups, spent, total),
            "accuracy_lost": estimate(lambda f, c: f.mean() - c.mean(), groups, full, correct),
            "oracle_gap": estimate(lambda o, c: o.mean() - c.mean(), groups, oracle, correct),
        }
        return [{"subset": "all", "metrics": metrics, "setting": {"tokens": " + ".join(units)}}]

    def _embedding_stable(self, train, validation, test) -> Predictions:
        if not self.embeds:
            raise PredictionError("message embeddings (the build ran no embeddings layer)")
        best = max(THRESHOLDS, key=lambda th: _utility(train, _stable(th)))
        found = Predictions({e.id: {"stop_turn": _stable(best)(e)} for e in test})
        found.settings["all"] = {"threshold": best, "chosen_on": "train"}
        return found

    def _best_within(self, train, validation, test) -> Predictions:
        """Among the fixed-k, first-unanimous and embedding policies, the one that saves the most tokens on
        validation while losing at most 1 point of accuracy there against running every turn."""
        chosen_on = validation if validation else train
        candidates = {f"fixed_k={k}": _fixed(k) for k in range(1, MAX_FIXED + 1)}
        candidates["first_unanimous"] = _first_unanimous
        if self.embeds:
            candidates.update({f"embedding_stable@{th}": _stable(th) for th in THRESHOLDS})
        full = np.mean([e.gold["correct"][-1] for e in chosen_on])
        within = {n: p for n, p in candidates.items() if full - _accuracy(chosen_on, p) <= ALLOWED_LOSS}
        name = max(within, key=lambda n: _saved(chosen_on, within[n])) if within else None
        policy = within[name] if name else (lambda e: len(e.gold["correct"]) - 1)
        found = Predictions({e.id: {"stop_turn": policy(e)} for e in test})
        where = "validation" if validation else "train (validation is empty)"
        found.settings["all"] = {"policy": name or "all_turns", "chosen_on": where}
        return found


def _fixed(k: int):
    return lambda e: min(k, len(e.gold["correct"])) - 1


def _first_unanimous(e: Example) -> int:
    return next((t for t, u in enumerate(e.features["unanimous"]) if u), len(e.gold["correct"]) - 1)


def _oracle(e: Example) -> int:
    return next((t for t, c in enumerate(e.gold["correct"]) if c), len(e.gold["correct"]) - 1)


def _stable(threshold: float):
    def policy(e: Example) -> int:
        sims = e.features["similarity"]
        return next((t for t, s in enumerate(sims) if s is not None and s >= threshold), len(sims) - 1)

    return policy


def _fixed_policy(policy):
    return lambda train, validation, test: {e.id: {"stop_turn": policy(e)} for e in test}


def _accuracy(examples: list[Example], policy) -> float:
    return float(np.mean([e.gold["correct"][policy(e)] for e in examples])) if examples else 0.0


def _saved(examples: list[Example], policy) -> float:
    total = sum(e.features["cumulative"][-1] for e in examples)
    return 1 - sum(e.features["cumulative"][policy(e)] for e in examples) / total if total else 0.0


def _utility(examples: list[Example], policy) -> tuple[bool, float]:
    """Within 1 point of the all-turns accuracy first, then the tokens saved."""
    full = np.mean([e.gold["correct"][-1] for e in examples]) if examples else 0.0
    return (full - _accuracy(examples, policy) <= ALLOWED_LOSS, _saved(examples, policy))
