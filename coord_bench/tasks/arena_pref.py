"""arena_pref: which of the two responses did the human prefer (model_a, model_b or a tie)?

Ties and "tie (bothbad)" are one class here; how often each kind of tie is predicted as a tie is reported
apart. A predictor may also give its probabilities for the same conversation with A and B swapped, and then
its swap consistency is reported: a predictor that prefers a position rather than a response is inconsistent.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from coord_bench.schema import DECISIVE_WINNERS
from coord_bench.tasks.base import Example, PredictionError, Predictor, Task, probability
from coord_bench.tasks.metrics import accuracy, estimate, expected_calibration_error, log_loss

CLASSES = ("model_a", "model_b", "tie")
FIELDS = tuple(f"p_{c}" for c in CLASSES)
SWAPPED = tuple(f"{f}_swapped" for f in FIELDS)
C_GRID = (0.01, 0.1, 1.0, 10.0)  # logistic regression strengths, chosen on validation by log-loss
SMOOTHING = 1.0  # add-one counts for the rates fitted on train


class ArenaPreference(Task):
    name = "arena_pref"
    definition = (
        "From the prompt and the two responses of an arena battle, predict the human vote: model_a, model_b or "
        "tie (tie and tie (bothbad) merged). Metrics on test: 3-class log-loss, accuracy on the decisive votes "
        "(argmax of p_model_a vs p_model_b), expected calibration error (10 bins, top label), and swap "
        "consistency (the same predictor on A/B swapped must swap its verdict). Baselines: the class prior; "
        "the longer response wins (rates fitted on train); Bradley-Terry strengths of the model ids fitted on "
        "train (does model identity leak the answer?); logistic regression on MiniLM features of the two "
        "responses; the judge layer's verdict where the build has one."
    )
    prediction_fields = {
        "p_model_a": "probability that model_a won",
        "p_model_b": "probability that model_b won",
        "p_tie": "probability of a tie (either kind); the three sum to 1",
        "p_model_a_swapped, p_model_b_swapped, p_tie_swapped": (
            "optional: the same predictor on the battle with A and B swapped (p_model_a_swapped is the "
            "probability that the response shown first, originally model_b's, won); gives swap consistency"
        ),
    }

    def example(self, record: dict[str, Any]) -> Example | None:
        winner = record["outcome"]["winner"]
        if record["protocol"]["interaction"] != "pairwise_comparison" or winner is None:
            return None
        texts = {"model_a": [], "model_b": []}
        for turn in record["turns"]:
            for m in turn["messages"]:
                if m["agent_id"] in texts:
                    texts[m["agent_id"]].append(m["text"])
        models = {a["agent_id"]: a["model"] for a in record["agents"]}
        judge = ((record["annotations"] or {}).get("coordination") or {}).get("consensus") or {}
        return Example(
            id=record["id"],
            split=record["split"],
            group=record["split_group"],
            gold={"winner": winner, "label": winner if winner in DECISIVE_WINNERS else "tie"},
            features={
                "texts": texts,
                "chars": {side: sum(len(t) for t in texts[side]) for side in texts},
                "models": (models.get("model_a"), models.get("model_b")),
                "judge": judge.get("preferred"),
            },
        )

    def baselines(self) -> dict[str, Predictor]:
        return {
            "prior": _prior,
            "longer_wins": _longer_wins,
            "bradley_terry_model_ids": _bradley_terry,
            "minilm_logreg": self._minilm,
            "judge": _judge,
        }

    def check_prediction(self, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(FIELDS) - set(SWAPPED))
        if unknown:
            raise PredictionError(f"unknown field(s) {', '.join(unknown)}; expected {', '.join(FIELDS + SWAPPED)}")
        out = {}
        for names in (FIELDS, SWAPPED):
            given = [n for n in names if n in value]
            if names is SWAPPED and not given:
                continue
            missing = [n for n in names if n not in value]
            if missing:
                raise PredictionError(f"field '{missing[0]}' is missing (give all of {', '.join(names)})")
            probs = [probability(value[n], n) for n in names]
            if abs(sum(probs) - 1.0) > 1e-6:
                raise PredictionError(f"fields {', '.join(names)}: the probabilities sum to {sum(probs):g}, not 1")
            out.update(zip(names, probs, strict=True))
        return out

    def score(self, test: list[Example], predictions: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        groups = [e.group for e in test]
        gold = np.array([CLASSES.index(e.gold["label"]) for e in test])
        probs = np.array([[predictions[e.id][f] for f in FIELDS] for e in test])
        decisive = gold < 2
        metrics = {
            "log_loss": estimate(log_loss, groups, gold, probs),
            "accuracy_decisive": estimate(
                accuracy, [g for g, d in zip(groups, decisive, strict=True) if d],
                gold[decisive], probs[decisive][:, :2].argmax(axis=1),
            ),  # fmt: skip
            "ece": estimate(expected_calibration_error, groups, gold, probs),
        }
        if all(SWAPPED[0] in predictions[e.id] for e in test):
            swapped = np.array([[predictions[e.id][f] for f in SWAPPED] for e in test])
            consistent = _verdicts(probs) == np.array([1, 0, 2])[_verdicts(swapped)]
            metrics["swap_consistency"] = estimate(np.mean, groups, consistent)
        rows = [{"subset": "all", "metrics": metrics}]
        for kind in ("tie", "tie (bothbad)"):  # the two kinds of tie, apart: how often each is called a tie
            inside = [i for i, e in enumerate(test) if e.gold["winner"] == kind]
            if inside:
                called = probs[inside].argmax(axis=1) == 2
                rows.append({"subset": f"winner={kind}", "metrics": {
                    "predicted_tie_rate": estimate(np.mean, [groups[i] for i in inside], called)}})  # fmt: skip
        return rows

    def _minilm(self, train, validation, test):
        """Multinomial logistic regression on [e(A) - e(B), |e(A) - e(B)|, log length ratio, its size]: the
        features flip sign with the order, so the model can be swapped exactly."""
        embed = self.context.embedder.vectors
        features = {}
        for e in train + validation + test:
            mean = {side: embed(texts).mean(axis=0) if texts else None for side, texts in e.features["texts"].items()}
            if mean["model_a"] is None or mean["model_b"] is None:
                raise PredictionError(f"{e.id} has no response text to embed")
            diff = mean["model_a"] - mean["model_b"]
            ratio = np.log1p(e.features["chars"]["model_a"]) - np.log1p(e.features["chars"]["model_b"])
            features[e.id] = (diff, ratio)
        return _logistic(train, validation, test, lambda e, s: _antisymmetric(*features[e.id], s))


def _verdicts(probs: np.ndarray) -> np.ndarray:
    """The class each row predicts; equal p_model_a and p_model_b is no preference, i.e. a tie."""
    verdicts = probs.argmax(axis=1)
    verdicts[np.isclose(probs[:, 0], probs[:, 1]) & (verdicts < 2)] = 2
    return verdicts


def _antisymmetric(diff: np.ndarray, ratio: float, swapped: bool) -> np.ndarray:
    sign = -1.0 if swapped else 1.0
    return np.concatenate([sign * diff, np.abs(diff), [sign * ratio, abs(ratio)]])


def _labels(examples: list[Example]) -> np.ndarray:
    return np.array([CLASSES.index(e.gold["label"]) for e in examples])


def _with_swapped(p: np.ndarray, q: np.ndarray | None = None) -> dict[str, float]:
    """Predictions for a battle (``p``) and for it swapped (``q``; default: ``p`` with A and B exchanged)."""
    q = p[[1, 0, 2]] if q is None else q
    return {**dict(zip(FIELDS, map(float, p), strict=True)), **dict(zip(SWAPPED, map(float, q), strict=True))}


def _rates(counts: np.ndarray) -> np.ndarray:
    counts = counts + SMOOTHING
    return counts / counts.sum()


def _prior(train, validation, test):
    p = _rates(np.bincount(_labels(train), minlength=3).astype(float))
    return {e.id: _with_swapped(p, p) for e in test}  # the same numbers for either order: it favours a position


def _longer(e: Example) -> int:
    chars = e.features["chars"]
    return 0 if chars["model_a"] > chars["model_b"] else 1 if chars["model_b"] > chars["model_a"] else 2


def _longer_wins(train, validation, test):
    """P(vote | which response is longer: A, B or neither), fitted on train; mirrored for B."""
    counts = np.zeros((3, 3))
    for e in train:
        counts[_longer(e), CLASSES.index(e.gold["label"])] += 1
    # pool A-longer and B-longer battles by mirroring, so "longer wins" is one rate for either position
    longer = counts[0] + counts[1][[1, 0, 2]]
    table = {0: _rates(longer), 1: _rates(longer)[[1, 0, 2]], 2: _rates(counts[2])}
    return {e.id: _with_swapped(table[_longer(e)]) for e in test}


def _bradley_terry(train, validation, test):
    """Strengths of the model ids: logistic regression on one-hot(A) - one-hot(B), no intercept, fitted on the
    decisive train votes (C chosen on validation); P(tie) is the train tie rate. Unseen models score 0."""
    from sklearn.linear_model import LogisticRegression

    models = sorted({m for e in train for m in e.features["models"] if m})
    index = {m: i for i, m in enumerate(models)}

    def x(e: Example, swapped: bool = False) -> np.ndarray:
        v = np.zeros(len(models))
        a, b = e.features["models"][::-1] if swapped else e.features["models"]
        if a in index:
            v[index[a]] += 1
        if b in index:
            v[index[b]] -= 1
        return v

    decisive = [e for e in train if e.gold["label"] != "tie"]
    tie_rate = _rates(np.bincount(_labels(train), minlength=3).astype(float))[2]
    if len({e.gold["label"] for e in decisive}) < 2 or not models:
        raise PredictionError("needs decisive train votes for both positions")

    def predict(fit, e, swapped=False):
        p_a = fit.predict_proba(x(e, swapped)[None])[0][1]
        return np.array([(1 - tie_rate) * p_a, (1 - tie_rate) * (1 - p_a), tie_rate])

    def fit_with(c):
        y = np.array([e.gold["label"] == "model_a" for e in decisive])
        return LogisticRegression(C=c, fit_intercept=False, max_iter=1000).fit(np.stack([x(e) for e in decisive]), y)

    fit = _choose(fit_with, lambda f, e: predict(f, e), validation)
    return {e.id: _with_swapped(predict(fit, e), predict(fit, e, swapped=True)) for e in test}


def _logistic(train, validation, test, features):
    """Multinomial logistic regression on ``features(example, swapped)``, standardized, C chosen on validation."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y = _labels(train)
    if len(set(y)) < 2:
        raise PredictionError("needs train votes of at least two classes")
    x = np.stack([features(e, False) for e in train])

    def fit_with(c):
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(x, y)

    def predict(fit, e, swapped=False):
        p = np.zeros(3)
        p[fit.classes_] = fit.predict_proba(features(e, swapped)[None])[0]
        return np.clip(p, 1e-6, None) / np.clip(p, 1e-6, None).sum()

    fit = _choose(fit_with, predict, validation)
    return {e.id: _with_swapped(predict(fit, e), predict(fit, e, swapped=True)) for e in test}


def _choose(fit_with, predict, validation):
    """The fit whose C gives the lowest validation log-loss (C = 1 when validation has no rows)."""
    if not validation:
        return fit_with(1.0)
    gold = _labels(validation)
    fits = [fit_with(c) for c in C_GRID]
    losses = [log_loss(gold, np.stack([predict(f, e) for e in validation])) for f in fits]
    return fits[int(np.argmin(losses))]


def _judge(train, validation, test):
    """P(vote | the judges' consensus verdict A, B or tie), fitted on the judged train battles; a battle the
    judge did not label gets the train prior."""
    verdicts = ("A", "B", "tie")
    judged = [e for e in train if e.features["judge"] in verdicts]
    if not judged or not any(e.features["judge"] in verdicts for e in test):
        raise PredictionError("no judge verdicts in this build's train and test battles (label the build first)")
    counts = np.zeros((3, 3))
    for e in judged:
        counts[verdicts.index(e.features["judge"]), CLASSES.index(e.gold["label"])] += 1
    prior = _rates(np.bincount(_labels(train), minlength=3).astype(float))
    table = {v: _rates(counts[i]) for i, v in enumerate(verdicts)}
    # no swapped probabilities: the consensus is order-free only when the build judged both orders
    return {e.id: dict(zip(FIELDS, map(float, table.get(e.features["judge"], prior)), strict=True)) for e in test}
