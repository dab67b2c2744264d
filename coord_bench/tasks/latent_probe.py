"""latent_probe: do the latent states tell a native outcome better than cheaper features of the same size?

Per outcome, the best of three cheap feature sets is chosen on validation (AUROC of its probe): raw-embedding
PCA with as many dimensions as the latents (fitted on the train conversations' mean observation: the mean over
turns of the latent layer's own per-turn observation, [mean; half-difference] of the turn's message
embeddings, so A-vs-B stays visible), token counts, and metadata (turn and message counts, lengths). The probe
of (best + latents) is compared with the probe of the best alone on the same test rows: a paired bootstrap of
the AUROC difference. The latents are the SMOOTHED states averaged over turns (a whole-conversation probe may
see every turn).

Two controls. Turn-shuffled latents: the build's latent model (``artifacts/latent_model``) re-infers the states
of each conversation with its turns in a random order (seeded by the record id), so a gain that survives the
shuffle comes from what the turns say, not from their order (a one-turn conversation is its own shuffle).
Random labels: each outcome's labels permuted within each split (fixed seed, the same class balance); any gain
there is the probe's own optimism and must be about 0.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from coord_bench.record import agent_roles
from coord_bench.tasks.base import Example, PredictionError, Predictions, Task, probability
from coord_bench.tasks.logistic import fit_probe
from coord_bench.tasks.metrics import auroc, difference, estimate, excludes

DECISIVE = ("model_a", "model_b")
OUTCOMES: dict[str, Callable[[dict[str, Any]], bool | None]] = {
    "decision_success": lambda o: o["decision_success"],
    "answer_correct": lambda o: o["answer_correct"],
    "arena_decisive": lambda o: None if o["winner"] is None else o["winner"] in DECISIVE,
    "arena_model_a": lambda o: o["winner"] == "model_a" if o["winner"] in DECISIVE else None,
}
CONTROL = "random_"  # prefix of a control target: the outcome's labels permuted within the split
CONTROL_SEED = 0
TARGETS = (*OUTCOMES, *(CONTROL + o for o in OUTCOMES))
CHEAP = ("embedding_pca", "tokens", "metadata")
LATENT_STATES = "smoothed, mean over turns"


def _metadata(record: dict[str, Any]) -> list[float]:
    """Turn and message counts, total and mean message length, and the first-vs-last response length gap."""
    roles = agent_roles(record)
    lengths = [m["n_chars"] for t in record["turns"] for m in t["messages"]]
    outputs = [m["n_chars"] for t in record["turns"] for m in t["messages"] if roles.get(m["agent_id"]) != "user"]
    gap = math.log1p(outputs[0]) - math.log1p(outputs[-1]) if len(outputs) > 1 else 0.0
    return [record["n_turns"], record["n_messages"], math.log1p(sum(lengths)), math.log1p(np.mean(lengths)), gap]


def _labels(examples: list[Example], target: str) -> tuple[np.ndarray, np.ndarray]:
    """(indices of the examples labelled for ``target``, their labels); a control permutes the outcome's labels
    with a fixed seed, in id order, so the same examples always get the same random labels."""
    outcome = target.removeprefix(CONTROL)
    rows = np.array([i for i, e in enumerate(examples) if e.gold[outcome] is not None], dtype=int)
    y = np.array([bool(examples[i].gold[outcome]) for i in rows], dtype=bool)
    if target.startswith(CONTROL) and len(y):
        order = np.argsort([examples[i].id for i in rows], kind="stable")
        permuted = np.empty_like(y)
        permuted[order] = y[order][np.random.default_rng(CONTROL_SEED).permutation(len(y))]
        y = permuted
    return rows, y


class LatentProbe(Task):
    name = "latent_probe"
    definition = (
        "Input: a whole conversation. Targets: each native outcome (DEBATE decision_success and answer_correct; "
        "arena decisive vote vs tie, and model_a vs model_b among decisive votes). Metric: test AUROC, and the "
        "paired-bootstrap AUROC gain of a probe on (best cheap features + latents) over the probe on the best "
        "cheap features alone; the best of raw-embedding PCA with as many dimensions as the latents, token "
        "counts and metadata (turn count, message lengths) is chosen by validation AUROC. Probes are "
        "standardized logistic regressions (C by validation log loss). Latents: the smoothed states averaged "
        "over turns. A gain whose 95% interval includes 0 is labelled 'no evidence'. Controls: the latents "
        "re-inferred by the build's latent model on turn-shuffled conversations, and random labels with the "
        "same class balance (targets random_<outcome>; their gain must be about 0)."
    )
    prediction_fields = {
        **{f"p_{t}": f"probability that {t} is true (a probe's output; give the targets you probe)" for t in OUTCOMES},
        "p_random_<outcome>": "optional control: probability of the outcome's permuted labels (see definition)",
        "ref_<target>": "optional: a reference probe's probability on the same row; the row then also reports "
        "the paired AUROC gain of p_<target> over it, with a verdict",
    }

    def __init__(self, context):
        super().__init__(context)
        self._model, self._model_reason = None, None

    def example(self, record: dict[str, Any]) -> Example | None:
        gold = {name: label(record["outcome"]) for name, label in OUTCOMES.items()}
        if all(v is None for v in gold.values()):
            return None
        from coord_bench.mappers.latents.layer import token_features

        usage = record["annotations"]["token_usage"]
        features = {
            "metadata": _metadata(record),
            "tokens": token_features(record).tolist() if usage else None,
            "latents": None,
            "shuffled_latents": None,
            "observation": None,
        }
        latents = record["annotations"]["latents"]
        if latents:  # a build without latents embeds nothing here: the task is unsupported anyway
            from coord_bench.mappers.latents.layer import sequence_of

            u, y = sequence_of(record, self.context.embedder)
            features["latents"] = np.mean(latents["smoothed"], axis=0).tolist()
            features["observation"] = y.mean(axis=0)
            features["shuffled_latents"] = self._shuffled(record, latents["model_hash"], u, y)
        return Example(record["id"], record["split"], record["split_group"], gold, features)

    def _shuffled(self, record: dict[str, Any], model_hash: str, u: np.ndarray, y: np.ndarray) -> list | None:
        """Mean smoothed state of the conversation with its turns permuted (never the identity when T > 1)."""
        model = self._latent_model(model_hash)
        if model is None:
            return None
        rng = np.random.default_rng(int(hashlib.sha256(record["id"].encode()).hexdigest()[:12], 16))
        order = rng.permutation(len(y))
        if len(y) > 1 and (order == np.arange(len(y))).all():
            order = np.roll(order, 1)
        try:
            smoothed, _ = model.transform(u[order], y[order])
        except ValueError as why:  # e.g. the model was fitted on another embedder's widths
            self._model, self._model_reason = None, f"the latent model cannot re-infer states: {why}"
            return None
        return smoothed.mean(axis=0).tolist()

    def _latent_model(self, model_hash: str):
        if self._model is not None or self._model_reason:
            return self._model if self._model is not None and self._model.model_hash == model_hash else None
        from coord_bench.mappers.latents import load_model
        from coord_bench.mappers.latents.layer import ARTIFACT

        path = self.context.folder / ARTIFACT if self.context.folder else None
        if path is None or not path.with_suffix(".json").exists():
            self._model_reason = f"the build has no latent model artifact ({ARTIFACT}.npz/.json)"
            return None
        try:
            self._model = load_model(path)
        except ValueError as why:
            self._model_reason = f"the latent model artifact cannot be read: {why}"
            return None
        if self._model.model_hash != model_hash:
            self._model, self._model_reason = None, "the latent model artifact is not the model of the records"
        return self._model

    def unsupported(self, examples: list[Example]) -> str | None:
        reason = super().unsupported(examples)
        if reason:
            return reason
        if not any(e.features["latents"] is not None for e in examples):
            return "annotations.latents is null on every record of the task (the latent layer did not run)"
        if not any(_both_classes(examples, o, "train") and _both_classes(examples, o, "test") for o in OUTCOMES):
            return f"no outcome ({', '.join(OUTCOMES)}) has labelled train and test rows of both classes"
        return None

    def baselines(self):
        alone = {name: self._alone(name) for name in (*CHEAP, "latents")}
        return {
            **alone,
            "best_plus_latents": self._comparison("latents", None, controls=True),
            "best_plus_shuffled_latents": self._comparison("shuffled_latents", None, controls=False),
            "latents_vs_shuffled": self._comparison("latents", "shuffled_latents", controls=False),
        }

    def _alone(self, name: str):
        def fit(train, validation, test) -> Predictions:
            blocks = _blocks([name], train, validation, test)
            predictions = Predictions({e.id: {} for e in test})
            for outcome in _fittable(train):
                p, setting = _probe(blocks, outcome, train, validation)
                _put(predictions, test, f"p_{outcome}", p)
                predictions.settings[outcome] = setting
            return _nonempty(predictions)

        return fit

    def _comparison(self, added: str, reference: str | None, controls: bool):
        """p = probe(best cheap + ``added``), ref = probe(best cheap [+ ``reference``]), per outcome."""

        def fit(train, validation, test) -> Predictions:
            if "shuffled_latents" in (added, reference) and not _available("shuffled_latents", train + test):
                raise PredictionError(f"no turn-shuffled latents: {self._model_reason or 'some records lack them'}")
            cheap = [name for name in CHEAP if _available(name, train + validation + test)]
            blocks = _blocks([*cheap, added, *([reference] if reference else [])], train, validation, test)
            predictions = Predictions({e.id: {} for e in test})
            for outcome in _fittable(train):
                best, chosen_on = _best(blocks, cheap, outcome, train, validation)
                for target in (outcome, CONTROL + outcome) if controls else (outcome,):
                    p, setting = _probe(_pick(blocks, best, added), target, train, validation)
                    ref, ref_setting = _probe(_pick(blocks, best, reference), target, train, validation)
                    _put(predictions, test, f"p_{target}", p)
                    _put(predictions, test, f"ref_{target}", ref)
                    predictions.settings[target] = {
                        "best_baseline": best, "best_chosen_on": chosen_on, "latent_states": LATENT_STATES,
                        "added": added, "reference": f"{best}+{reference}" if reference else best,
                        **setting, "reference_C": ref_setting["C"],
                    }  # fmt: skip
            return _nonempty(predictions)

        return fit

    def check_prediction(self, value: dict[str, Any]) -> dict[str, Any]:
        known = {f"{kind}_{t}" for kind in ("p", "ref") for t in TARGETS}
        unknown = sorted(set(value) - known)
        if unknown:
            raise PredictionError(f"unknown field '{unknown[0]}'; expected p_<target> with a target in "
                                  f"{', '.join(OUTCOMES)} (or random_<outcome>), optionally ref_<target>")  # fmt: skip
        orphan = next((f for f in sorted(value) if f.startswith("ref_") and "p_" + f[4:] not in value), None)
        if orphan:
            raise PredictionError(f"field '{orphan}' has no 'p_{orphan[4:]}' to compare with")
        if not any(f.startswith("p_") for f in value):
            raise PredictionError(f"no prediction field; expected e.g. p_{next(iter(OUTCOMES))}")
        return {name: probability(v, name) for name, v in value.items()}

    def score(self, test: list[Example], predictions: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        rows = []
        for target in TARGETS:
            indices, y = _labels(test, target)
            labelled = [test[i] for i in indices]
            given = sum(f"p_{target}" in predictions[e.id] for e in labelled)
            if not labelled or (not given and target.startswith(CONTROL)):
                continue
            if not given:
                why = f"no probabilities for {target} (its labelled train rows hold one class, or none were given)"
                rows.append({"subset": target, "metrics": {}, "reason": why})
                continue
            groups = [e.group for e in labelled]
            p = _column(predictions, labelled, f"p_{target}")
            row = {"subset": target, "metrics": {"auroc": estimate(auroc, groups, y, p)}}
            if any(f"ref_{target}" in predictions[e.id] for e in labelled):
                ref = _column(predictions, labelled, f"ref_{target}")
                gain = difference(auroc, groups, y, p, ref)
                row["metrics"].update(auroc_reference=estimate(auroc, groups, y, ref), gain=gain)
                row["setting"] = {"verdict": verdict(gain)}
            rows.append(row)
        return rows


def verdict(gain: dict[str, Any]) -> str:
    """'gain' / 'loss' when the interval lies above / below 0, else 'no evidence'."""
    if not excludes(gain, 0.0):
        return "no evidence"
    return "gain" if gain["low"] > 0 else "loss"


def _column(predictions: dict[str, dict[str, Any]], rows: list[Example], name: str) -> np.ndarray:
    lacking = next((e.id for e in rows if name not in predictions[e.id]), None)
    if lacking is not None:
        raise PredictionError(f"id {lacking!r}: no '{name}', though other rows of the target have it")
    return np.array([predictions[e.id][name] for e in rows], dtype=float)


def _both_classes(examples: list[Example], outcome: str, split: str) -> bool:
    return len({e.gold[outcome] for e in examples if e.split == split and e.gold[outcome] is not None}) == 2


def _fittable(train: list[Example]) -> list[str]:
    return [o for o in OUTCOMES if len(np.unique(_labels(train, o)[1])) == 2]


def _available(name: str, examples: list[Example]) -> bool:
    key = "observation" if name == "embedding_pca" else name
    return all(e.features[key] is not None for e in examples)


WHAT = {
    "tokens": "annotations.token_usage (the tokens layer did not run)",
    "latents": "annotations.latents (the latent layer did not run)",
    "observation": "annotations.latents (the latent layer did not run)",
    "shuffled_latents": "turn-shuffled latents",
}


def _matrix(name: str, examples: list[Example]) -> np.ndarray:
    values = [e.features[name] for e in examples]
    lacking = sum(v is None for v in values)
    if lacking:
        raise PredictionError(f"{lacking} of {len(values)} examples lack {WHAT.get(name, name)}")
    return np.array(values, dtype=float).reshape(len(values), -1)


def _blocks(names, train, validation, test) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each named feature set as (train, validation, test) matrices; PCA is fitted on train only."""
    splits = (train, validation, test)
    blocks = {}
    for name in names:
        if name != "embedding_pca":
            blocks[name] = tuple(_matrix(name, s) for s in splits)
            continue
        from sklearn.decomposition import PCA

        observations = [_matrix("observation", s) for s in splits]
        k = min(len(_matrix("latents", train[:1])[0]), *observations[0].shape)
        pca = PCA(n_components=k, svd_solver="covariance_eigh").fit(observations[0])
        blocks[name] = tuple(pca.transform(o) if len(o) else np.zeros((0, k)) for o in observations)
    return blocks


def _pick(blocks, best: str, extra: str | None) -> dict[str, tuple]:
    return {name: blocks[name] for name in (best, extra) if name}


def _probe(blocks, target, train, validation) -> tuple[np.ndarray, dict[str, Any]]:
    """Test probabilities of a probe on the concatenated ``blocks``, fitted on the target's train labels."""
    (train_rows, y_train), (val_rows, y_val) = _labels(train, target), _labels(validation, target)
    stack = [np.hstack([b[i] for b in blocks.values()]) for i in range(3)]
    probe = fit_probe(stack[0][train_rows], y_train, stack[1][val_rows], y_val)
    return probe.predict(stack[2]), probe.setting


def _best(blocks, cheap: list[str], outcome: str, train, validation) -> tuple[str, str]:
    """The cheap feature set whose probe has the highest validation AUROC (train AUROC if validation lacks a
    class); ties go to the first in CHEAP order."""
    if not cheap:
        raise PredictionError("no cheap feature set is available")
    (train_rows, y_train), (val_rows, y_val) = _labels(train, outcome), _labels(validation, outcome)
    on_validation = len(np.unique(y_val)) == 2
    scores = {}
    for name in cheap:
        x_train, x_val = blocks[name][0][train_rows], blocks[name][1][val_rows]
        probe = fit_probe(x_train, y_train, x_val, y_val)
        x_eval, y_eval = (x_val, y_val) if on_validation else (x_train, y_train)
        scores[name] = auroc(y_eval, probe.predict(x_eval))
    best = max(cheap, key=lambda name: scores[name])
    return best, "validation AUROC" if on_validation else "train AUROC (validation rows lack a class)"


def _put(predictions: Predictions, test: list[Example], name: str, values: np.ndarray) -> None:
    for e, value in zip(test, values, strict=True):
        predictions[e.id][name] = float(value)


def _nonempty(predictions: Predictions) -> Predictions:
    if not any(predictions.values()):
        raise PredictionError("no outcome has labelled train rows of both classes")
    return predictions
