"""The latent layer: one low-rank recurrent coordinator model fitted on the train split, applied to every turn.

The method and its formulas, as the dataset card publishes them: ``coord_bench/card_methods/latents.md``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from coord_bench.mappers.embeddings import Embedder
from coord_bench.mappers.latents.selection import K_GRID, candidates, select
from coord_bench.mappers.latents.store import ArrayStore, View, chunks_of, sample
from coord_bench.mappers.layer import Layer, LayerContext
from coord_bench.record import agent_roles, task_text
from coord_bench.report.latent_quality import REPORT

ARTIFACT = "artifacts/latent_model"


def _drive_texts(record: dict[str, Any]) -> list[str]:
    """The text that drives each turn (see the module docstring)."""
    roles = agent_roles(record)
    fallback = task_text(record)
    drives = []
    for turn in record["turns"]:
        prompts = [m["text"] for m in turn["messages"] if roles.get(m["agent_id"]) == "user"]
        drives.append(prompts[0] if prompts else fallback)
    return drives


def _output_texts(record: dict[str, Any]) -> list[list[str]]:
    roles = agent_roles(record)
    return [
        [m["text"] for m in turn["messages"] if roles.get(m["agent_id"]) != "user"] or [""] for turn in record["turns"]
    ]


def sequence_of(record: dict[str, Any], embedder: Embedder) -> tuple[np.ndarray, np.ndarray]:
    """(U, Y) of one conversation: T x d inputs and T x 2d observations."""
    drives = _drive_texts(record)
    outputs = _output_texts(record)
    vectors = embedder.vectors(drives + [t for turn in outputs for t in turn])
    U = vectors[: len(drives)]  # float32, as cached: the model fits in float32 memory and computes in float64
    rows, position = [], len(drives)
    for texts in outputs:
        block = vectors[position : position + len(texts)]
        position += len(texts)
        rows.append(np.concatenate([block.mean(axis=0), (block[0] - block[-1]) / 2]))
    return U, np.stack(rows)


def token_features(record: dict[str, Any]) -> np.ndarray:
    """Token-count features for the probes: sizes in log tokens, balance, and the first-vs-last length gap."""
    usage = record["annotations"]["token_usage"]
    roles = agent_roles(record)
    outputs = [a["n_tokens"] for a in usage["per_agent"] if roles.get(a["agent_id"]) != "user"]
    gap = math.log1p(outputs[0]) - math.log1p(outputs[-1]) if len(outputs) > 1 else 0.0
    return np.array(
        [
            math.log1p(usage["total_tokens"]),
            math.log1p(usage["input_tokens"]),
            math.log1p(usage["output_tokens"]),
            record["n_turns"],
            usage["coordination_overhead"] or 0.0,
            gap,
        ]
    )


def outcome_targets(record: dict[str, Any]) -> dict[str, Any]:
    """The native outcomes a probe can predict for this record (absent ones are left out)."""
    outcome = record["outcome"]
    targets = {}
    if outcome["winner"] is not None:
        targets["arena_winner"] = outcome["winner"]
    if outcome["answer_correct"] is not None:
        targets["debate_answer_correct"] = outcome["answer_correct"]
    if outcome["decision_success"] is not None:
        targets["debate_decision_success"] = outcome["decision_success"]
    return targets


METHODS = ("delta-lds-em", "lds-em", "pca-rrr")  # the LDS of turn changes, the LDS of turns, PCA + transition
ALIASES = {"lds": "lds-em", "pca_rrr": "pca-rrr"}  # the names recipes used before; still accepted
SPLITS = ("train", "validation", "test")


@dataclass
class LatentsConfig:
    method: str = "delta-lds-em"
    k: int | None = None  # latent dimension; None: chosen on the validation split from k_grid
    k_grid: tuple[int, ...] = K_GRID
    r: int | str | None = "auto"  # rank bound on the transition matrix: None (full rank), an integer, or auto
    # (full rank or k // 2, chosen on the validation split)
    seed: int = 0
    fit_split: str = "train"
    max_iter: int = 30  # EM iterations at most
    model_path: str | None = None  # apply this fitted artifact (path without .npz/.json) instead of fitting
    memory_budget_mb: float = 32  # the conversations' arrays held in memory; past it see store.py / latents.md

    def __post_init__(self) -> None:
        self.method = ALIASES.get(self.method, self.method)
        if self.method not in METHODS:
            raise ValueError(f"annotations.latents.method: expected one of {', '.join(METHODS)}, got {self.method!r}")
        if not (self.r is None or self.r == "auto" or (isinstance(self.r, int) and self.r >= 0)):
            raise ValueError(f"annotations.latents.r: expected an integer >= 0, null or auto, got {self.r!r}")
        if not (isinstance(self.memory_budget_mb, int | float) and self.memory_budget_mb > 0):
            raise ValueError(
                f"annotations.latents.memory_budget_mb: expected a number > 0, got {self.memory_budget_mb!r}"
            )
        if self.fit_split not in SPLITS:
            raise ValueError(
                f"annotations.latents.fit_split: expected one of {', '.join(SPLITS)}, got {self.fit_split!r}"
            )


class LatentsMapper(Layer):
    """Fits (or loads) the latent model in ``prepare`` and fills ``annotations.latents`` in ``apply``."""

    name = "latents"
    needs = ("embeddings", "tokens")
    reads = ("id", "split", "split_group", "agents", "task", "turns", "n_turns", "outcome", "annotations")
    writes = ("annotations",)
    Config = LatentsConfig

    def __init__(self, config: LatentsConfig, context: LayerContext):
        self.config = config
        self.embedder = context.require_embedder(self.name)
        self.context = context  # its out_dir, where the artifact goes, is the build's staging folder
        self.model = None
        self.rows: dict[str, int] = {}  # record id -> its index in the stores
        self.states: ArrayStore | None = None
        self.report: dict[str, Any] = {}
        self.memory: dict[str, Any] = {}

    def _fit(self, train, validation, k: int, r: int | None, seed: int, method: str | None = None):
        """A model of ``method`` (default: the configured one) fitted on ``train``; EM stops early on
        ``validation``."""
        from coord_bench.mappers.latents import MODELS, LDSConfig

        model = MODELS[method or self.config.method](LDSConfig(k=k, r=r, seed=seed, max_iter=self.config.max_iter))
        return model.fit(train, validation)

    def prepare(self, corpus) -> None:
        if self.context.out_dir is None:
            raise ValueError("the latents layer needs an output folder (LayerContext.out_dir) for its artifact")
        self.out_dir = Path(self.context.out_dir)
        fit_split, budget = self.config.fit_split, int(self.config.memory_budget_mb * 2**20)
        sequences = ArrayStore(budget, self.out_dir)
        splits, groups, tokens, targets = [], [], [], []
        for batch in corpus.batches():
            for record in batch:
                self.rows[record["id"]] = len(sequences)
                sequences.append(sequence_of(record, self.embedder))
                splits.append(record["split"])
                groups.append(record["split_group"])
                tokens.append(token_features(record) if record["annotations"]["token_usage"] else None)
                targets.append(outcome_targets(record))
        self.validation_split = "validation" if fit_split != "validation" else None
        held_out = (fit_split, self.validation_split)
        # past the budget, each split is sampled to its share (train 1/2, validation and test 1/4 each)
        shares = {"train": budget // 2, "validation": budget // 4, "test": budget // 4}
        subsets, sampled = {}, {}
        for name, wanted in (("train", fit_split), ("validation", self.validation_split), ("test", None)):
            indices = [
                i for i, split in enumerate(splits) if (split not in held_out if wanted is None else split == wanted)
            ]
            used = sample(sequences, indices, shares[name], self.config.seed) if sequences.spilled else indices
            subsets[name] = View(sequences, used)
            sampled[name] = {"used": len(used), "of": len(indices)}
        train, validation, test = subsets["train"], subsets["validation"], subsets["test"]
        self.memory = {
            "memory_budget_mb": self.config.memory_budget_mb,
            "sequence_mb": round(sequences.nbytes / 2**20, 3),
            "spilled": sequences.spilled,
            "sequences": sampled,
        }
        self.selection: dict[str, Any] = {}
        if self.config.model_path:
            from coord_bench.mappers.latents import load_model

            self.model = load_model(Path(self.config.model_path))
        elif self._too_small(train, fit_split):
            self._write_report()
            return
        else:
            max_k = min(sum(len(y) for _, y in train), train[0][1].shape[1])
            pairs = candidates(self.config.k, self.config.r, self.config.k_grid, max_k)
            self.model, self.selection = select(
                lambda k, r: self._fit(train, validation, k, r, self.config.seed), train, validation, pairs
            )
        self.model_hash = self.model.save(self.out_dir / ARTIFACT)
        self.states = ArrayStore(budget // 4, self.out_dir)
        latent_means, raw_means = [], []
        for run in chunks_of(sequences, budget):  # one run while the corpus fits the budget
            part = View(sequences, run)
            for (_, y), state in zip(part, self.model.transform_many(part), strict=True):
                self.states.append(state)
                latent_means.append(state[0].mean(axis=0))
                raw_means.append(y.mean(axis=0))
        self.report = self._quality(
            train, validation, test, np.stack(raw_means), np.stack(latent_means), splits, groups, tokens, targets
        )
        self._write_report()

    def _too_small(self, train: list[tuple[np.ndarray, np.ndarray]], fit_split: str) -> bool:
        """A corpus too small to fit k states (fewer train turns than k) skips the layer, saying why, instead of
        failing the build: the layer is on by default, and a user's first small folder should still build."""
        k = self.config.k or min(self.config.k_grid)
        turns = sum(len(y) for _, y in train)
        if turns >= k:
            return False
        reason = (
            f"the {fit_split} split has {turns} turns in {len(train)} conversations, fewer than k={k}: "
            "add conversations or lower annotations.latents.k"
        )
        self.report = {"skipped": reason, "k": k, "next_turn_r2": {"skipped": reason}, "probes": {}}
        return True

    def _write_report(self) -> None:
        path = self.out_dir / REPORT
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.report, indent=2) + "\n", encoding="utf-8")

    def _quality(self, train, validation, test, raw_means, latent_means, splits, groups, tokens, targets) -> dict:
        from coord_bench.mappers.latents import quality

        k, r, seed = self.model.config.k, self.model.config.r, self.config.seed
        report: dict[str, Any] = {
            "method": self.model.method,
            "model_hash": self.model_hash,
            "k": k,
            "r": r,
            "train_sequences": len(train),
            "validation_sequences": len(validation),
            "held_out_sequences": len(test),
            "selection": self.selection,
            "memory": self.memory,
        }
        fitted = bool(train) and not self.config.model_path
        comparisons = {}
        if fitted:
            comparisons["model_no_dynamics"] = self._fit(train, validation, k, 0, seed)
            if self.model.method == "delta-lds-em":
                comparisons["lds_levels"] = self._fit(train, validation, k, r, seed, method="lds-em")
            comparisons.update(quality.order_controls(lambda s: self._fit(s, validation, k, r, seed), train, seed))
        report["next_turn_r2"] = (
            quality.next_turn_report(self.model, train, test, k, seed, comparisons)
            if test and train
            else {"skipped": "no test or no train sequences"}
        )
        if fitted:
            refit = self._fit(train, validation, k, r, seed + 1)
            report["stability"] = quality.stability_report(self.model, refit)
        train_rows = np.array([s == self.config.fit_split for s in splits])
        pca = _pca(raw_means, train_rows, k, seed)
        probes = {}
        for target in sorted({name for t in targets for name in t}):
            rows = np.array([target in t for t in targets])
            y = np.array([str(t[target]) for t in targets if target in t])
            features = {"raw_embedding_pca": pca[rows], "latents": latent_means[rows]}
            if all(tokens[i] is not None for i in np.flatnonzero(rows)):
                token_block = np.stack([tokens[i] for i in np.flatnonzero(rows)])
                features = {
                    "tokens": token_block,
                    **features,
                    "latents_plus_tokens": np.hstack([latent_means[rows], token_block]),
                }
            probes[target] = quality.probe_report(
                features, y, np.array(groups)[rows], seed, baseline="tokens" if "tokens" in features else None
            )
        report["probes"] = probes
        report["verdicts"] = quality.verdicts(report)
        return report

    def apply(self, batch: list[dict[str, Any]]) -> None:
        if self.model is None:  # skipped: the latents stay null (the manifest says why)
            return
        for record in batch:
            smoothed, filtered = self.states[self.rows[record["id"]]]
            record["annotations"]["latents"] = {
                "method": self.model.method,
                "model_hash": self.model_hash,
                "k": int(smoothed.shape[1]),
                "smoothed": smoothed.astype(float).tolist(),
                "filtered": filtered.astype(float).tolist(),
            }

    def describe(self) -> dict[str, Any]:
        return {
            "method": self.model.method if self.model else None,
            "model_hash": getattr(self, "model_hash", None),
            "k": self.model.config.k if self.model else None,
            "r": self.model.config.r if self.model else None,
            "seed": self.config.seed,
            "fit_split": self.config.fit_split,
            "artifact": ARTIFACT,
            "quality_report": REPORT,
            "fitted": self.model is not None and not self.config.model_path,
            "quality": self.report,
        }


def _pca(values: np.ndarray, train_rows: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Raw-embedding PCA of the same size as the latents, fitted on the train rows (all rows if none)."""
    from sklearn.decomposition import PCA

    fit_on = values[train_rows] if train_rows.sum() > k else values
    k = min(k, fit_on.shape[0], fit_on.shape[1])
    return PCA(n_components=k, svd_solver="covariance_eigh", random_state=seed).fit(fit_on).transform(values)
