"""How good are the labels: ``reports/labels.json``, computed from a build's records, and the card section it makes.

Four measurements, each with a 95% bootstrap interval that resamples conversations (seeded; ``tasks.metrics``):

- between human annotators, per label: Krippendorff's alpha (nominal, missing values allowed) over all of
  them and Cohen's kappa for each pair, on the conversations both labelled;
- rules vs humans and judge vs humans, per label: accuracy and Cohen's kappa of the machine label against the
  annotators' majority (a conversation whose annotators tie has no majority and is left out, and counted);
- the judge against the arena's own voters, per judge model, as Zheng et al. 2023 measure it: agreement of
  ``preferred`` with the vote with ties (3 classes) and without (votes and verdicts for one side only), the
  share of verdicts that survived swapping A and B, and agreement within length-matched pairs (the two
  responses within :data:`LENGTH_MATCH` of each other in length), with the share of decisive verdicts that
  picked the longer response, for the verbosity confound;
- consistency across near-duplicates: pairs of conversations whose normalized prompt (``splits.normalize_text``
  of the task text) is the same, and, where the build ran the embeddings layer, pairs whose conversation
  embeddings (the mean of their messages' cached vectors) have cosine >= :data:`COSINE_THRESHOLD`; per
  label, the share of those pairs whose labels agree.

``review-import`` writes the report after storing human labels; ``coord-bench report`` writes it too. The
card's "How good are the labels" section is rendered from the file: no number is typed by hand.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from coord_bench.build_folder import iter_record_batches, read_manifest
from coord_bench.mappers.judge.agreement import krippendorff_alpha
from coord_bench.record import task_text
from coord_bench.review import FORM, PAIRWISE
from coord_bench.splits import group_hash, normalize_text
from coord_bench.tasks.metrics import BOOTSTRAP_SAMPLES, BOOTSTRAP_SEED, Undefined, estimate, format_estimate

REPORT = "reports/labels.json"
LENGTH_MATCH = 0.10  # |len(A) - len(B)| <= 10% of the longer response: a length-matched pair
MAX_GROUP = 10  # near-duplicate groups contribute the pairs of their first 10 members (by id): 45 pairs at most
COSINE_THRESHOLD = 0.95  # conversation embeddings this close (MiniLM, unit vectors) count as near-duplicates
MAX_COSINE_PAIRS = 10_000
ORDER = [f.name for f in FORM]
COLUMNS = [
    "id",
    "source",
    "task",
    "protocol",
    "outcome",
    "annotations.coordination",
    "turns.list.element.messages.list.element.agent_id",
    "turns.list.element.messages.list.element.n_tokens",
    "turns.list.element.messages.list.element.n_chars",
]
ZHENG_2023 = {
    "citation": "Zheng et al. 2023, Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena, NeurIPS Datasets and "
    "Benchmarks, arXiv:2306.05685",
    "judge": "GPT-4 (pairwise comparison)",
    "agreement_with_ties": {"value": 0.66, "against": "MT-bench expert votes (setup S1, ties included)"},
    "agreement_without_ties": {"value": 0.85, "against": "MT-bench expert votes (setup S2, non-tie votes only)"},
    "human_human_with_ties": 0.63,
    "human_human_without_ties": 0.81,
    "position_consistency": {"value": 0.65, "on": "MT-bench pairs judged in both orders (default prompt)"},
}
WINNER_SIDE = {"model_a": "A", "model_b": "B"}  # any other vote (tie, tie (bothbad)) is a tie


def _text(value: Any) -> str | None:
    return None if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def _kappa(a: np.ndarray, b: np.ndarray) -> float:
    from sklearn.metrics import cohen_kappa_score

    if len(set(a.tolist()) | set(b.tolist())) < 2:
        raise Undefined("one class only")
    return float(cohen_kappa_score(a, b))


def _share(a: np.ndarray, b: np.ndarray) -> float:
    if not len(a):
        raise Undefined("no items")
    return float(np.mean(a == b))


def _mean(flags: np.ndarray) -> float:
    if not len(flags):
        raise Undefined("no items")
    return float(np.mean(flags.astype(float)))


def _alpha(units: list[list[str | None]]) -> float:
    if len({v for unit in units for v in unit if v is not None}) < 2:
        raise Undefined("one class only")  # as for kappa: no variation, nothing to agree on beyond chance
    value = krippendorff_alpha(units)
    if value is None:
        raise Undefined("fewer than two pairable values")
    return value


class Conversation:
    """What the report needs of one record: its labels by who made them, and the arena facts."""

    def __init__(self, record: dict[str, Any]):
        self.id = record["id"]
        self.pairwise = record["protocol"]["interaction"] == PAIRWISE
        self.prompt = normalize_text(task_text(record))
        coordination = (record.get("annotations") or {}).get("coordination") or {}
        rules, consensus = coordination.get("rules") or {}, coordination.get("consensus") or {}
        items = coordination.get("labels") or []
        self.human: dict[str, dict[str, str]] = defaultdict(dict)  # annotator -> name -> value
        machine: dict[str, dict[str, list[str]]] = {"rules": defaultdict(list), "judge": defaultdict(list)}
        for item in items:
            kind, _, who = item["provenance"].partition(":")
            if kind == "human":
                self.human[who][item["name"]] = item["value"]
            elif item["value"] is not None:
                machine["rules" if kind == "rule" else "judge"][item["name"]].append(item["value"])
        self.machine = {
            "rules": {"success": _text(rules.get("success")), "agreement_level": rules.get("agreement_level")},
            "judge": {"success": _text(consensus.get("success")), "agreement_level": consensus.get("agreement_level"),
                      "preferred": consensus.get("preferred") if self.pairwise else None},
        }  # fmt: skip
        for kind, by_name in machine.items():
            for name, values in by_name.items():
                self.machine[kind][name] = _majority(values)
        self.winner = (record.get("outcome") or {}).get("winner")
        self.judges = [j for j in coordination.get("judges") or [] if j["status"] == "ok"]
        self.lengths = _response_lengths(record) if self.pairwise else None

    def majority(self, name: str) -> str | None:
        return _majority([labels[name] for labels in self.human.values() if name in labels])


def _majority(values: list[str]) -> str | None:
    """The most frequent value; None when there is none or two tie."""
    ranked = Counter(values).most_common(2)
    if not ranked or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
        return None
    return ranked[0][0]


def _response_lengths(record: dict[str, Any]) -> tuple[int, int, str]:
    """(length of A's messages, of B's, unit): tokens where every message has a count, else characters."""
    messages = [m for t in record["turns"] for m in t["messages"] if m["agent_id"] in WINNER_SIDE]
    unit = "tokens" if all(m.get("n_tokens") is not None for m in messages) else "characters"
    key = "n_tokens" if unit == "tokens" else "n_chars"
    a, b = (sum(m[key] for m in messages if m["agent_id"] == side) for side in WINNER_SIDE)
    return a, b, unit


def _est(metric, ids: list[str], *columns: list[Any]) -> dict[str, Any]:
    return estimate(metric, ids, *[np.asarray(c, dtype=object) for c in columns])


def inter_annotator(rows: list[Conversation]) -> dict[str, Any]:
    annotators = sorted({a for r in rows for a in r.human})
    out: dict[str, Any] = {}
    for name in ORDER:
        units = {r.id: [r.human[a].get(name) if a in r.human else None for a in annotators] for r in rows}
        units = {i: u for i, u in units.items() if sum(v is not None for v in u) >= 2}
        if not units:
            continue
        ids = sorted(units)
        table = [units[i] for i in ids]
        entry: dict[str, Any] = {
            "conversations": len(ids),
            "krippendorff_alpha": _est(lambda idx, table=table: _alpha([table[i] for i in idx]), ids, range(len(ids))),
            "pairs": [],
        }
        for a, b in combinations(range(len(annotators)), 2):
            both = [i for i in ids if units[i][a] is not None and units[i][b] is not None]
            if both:
                xs, ys = [units[i][a] for i in both], [units[i][b] for i in both]
                entry["pairs"].append({"annotators": [annotators[a], annotators[b]], "n": len(both),
                                       "agreement": _est(_share, both, xs, ys),
                                       "cohen_kappa": _est(_kappa, both, xs, ys)})  # fmt: skip
        out[name] = entry
    return out


def machine_vs_humans(rows: list[Conversation], kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names = [n for n in ORDER if any(r.machine[kind].get(n) is not None for r in rows)]  # labels it made
    for name in names:
        reviewed = [r for r in rows if any(name in labels for labels in r.human.values())]
        pairs = [(r.id, r.machine[kind].get(name), r.majority(name)) for r in reviewed]
        both = [(i, m, h) for i, m, h in pairs if m is not None and h is not None]
        if not reviewed:
            continue
        ids, machine, human = (list(col) for col in zip(*both, strict=True)) if both else ([], [], [])
        out[name] = {
            "reviewed": len(reviewed),
            "no_human_majority": sum(h is None for _, _, h in pairs),
            "no_machine_label": sum(m is None for _, m, h in pairs if h is not None),
            "n": len(both),
            "accuracy": _est(_share, ids, machine, human),
            "cohen_kappa": _est(_kappa, ids, machine, human),
        }
    return out


def arena_judge(rows: list[Conversation]) -> dict[str, Any]:
    """The judge's ``preferred`` against the arena's vote, per judge model (see the module docstring)."""
    by_model: dict[str, list[tuple[str, str, str, bool | None, tuple[int, int, str]]]] = defaultdict(list)
    for r in rows:
        if not r.pairwise or r.winner is None:
            continue
        human = WINNER_SIDE.get(r.winner, "tie")
        for judge in r.judges:
            if judge.get("preferred") is not None:
                by_model[judge["model"]].append((r.id, judge["preferred"], human, judge.get("position_consistent"),
                                                 r.lengths))  # fmt: skip
    return {model: _arena_entry(items) for model, items in sorted(by_model.items())}


def _arena_entry(items: list[tuple[str, str, str, bool | None, tuple[int, int, str]]]) -> dict[str, Any]:
    ids, judged, human, consistent, lengths = (list(col) for col in zip(*items, strict=True))

    def subset(keep: list[bool]) -> tuple[list[str], list[str], list[str]]:
        chosen = [k for k, kept in enumerate(keep) if kept]
        return [ids[k] for k in chosen], [judged[k] for k in chosen], [human[k] for k in chosen]

    matched = [abs(a - b) <= LENGTH_MATCH * max(a, b) for a, b, _ in lengths]
    decisive = [j != "tie" and h != "tie" for j, h in zip(judged, human, strict=True)]
    swapped = [k for k, c in enumerate(consistent) if c is not None]
    longer = ["A" if a > b else "B" for a, b, _ in lengths]
    picks = [k for k in range(len(ids)) if judged[k] != "tie" and lengths[k][0] != lengths[k][1]]
    votes = [k for k in range(len(ids)) if human[k] != "tie" and lengths[k][0] != lengths[k][1]]
    return {
        "n": len(ids),
        "length_unit": sorted({unit for _, _, unit in lengths}),
        "agreement_with_ties": _est(_share, ids, judged, human),
        "agreement_without_ties": _est(_share, *subset(decisive)),
        "position_consistency": _est(_mean, [ids[k] for k in swapped], [bool(consistent[k]) for k in swapped]),
        "length_matched": {
            "pairs": sum(matched),
            "agreement_with_ties": _est(_share, *subset(matched)),
            "agreement_unmatched_with_ties": _est(_share, *subset([not m for m in matched])),
        },
        "judge_prefers_longer": _est(_mean, [ids[k] for k in picks], [judged[k] == longer[k] for k in picks]),
        "voters_prefer_longer": _est(_mean, [ids[k] for k in votes], [human[k] == longer[k] for k in votes]),
    }


def _label_values(r: Conversation) -> dict[str, str | None]:
    """Every label of a conversation by ``<who>:<name>`` (who: rules, judge, human majority)."""
    out = {f"{kind}:{name}": v for kind, by_name in r.machine.items() for name, v in by_name.items()}
    return {**out, **{f"human:{name}": r.majority(name) for name in ORDER}}


def _pair_agreement(pairs: list[tuple[str, Conversation, Conversation]]) -> dict[str, Any]:
    """Per label, the share of ``(bootstrap group, a, b)`` pairs whose labels agree, where both have one."""
    values = {r.id: _label_values(r) for _, a, b in pairs for r in (a, b)}
    out: dict[str, Any] = {}
    for label in sorted({k for v in values.values() for k in v}):
        both = [(g, values[a.id].get(label), values[b.id].get(label)) for g, a, b in pairs]  # a label only some have
        both = [(g, x, y) for g, x, y in both if x is not None and y is not None]
        if both:
            g, x, y = (list(col) for col in zip(*both, strict=True))
            out[label] = {"pairs": len(both), "agree": _est(_share, g, x, y)}
    return out


def same_prompt(rows: list[Conversation]) -> dict[str, Any]:
    """Pairs of conversations with the same normalized prompt (bootstrap over prompt groups)."""
    groups: dict[str, list[Conversation]] = defaultdict(list)
    for r in rows:
        if r.prompt:
            groups[r.prompt].append(r)
    pairs = [(group_hash(prompt), a, b) for prompt, members in groups.items()
             for a, b in combinations(sorted(members, key=lambda r: r.id)[:MAX_GROUP], 2)]  # fmt: skip
    return {"groups": sum(len(m) >= 2 for m in groups.values()), "pairs": len(pairs), "labels": _pair_agreement(pairs)}


def similar_embeddings(rows: list[Conversation], vectors: dict[str, np.ndarray]) -> dict[str, Any]:
    """Pairs whose conversation embeddings have cosine >= :data:`COSINE_THRESHOLD` (bootstrap over the first
    conversation of each pair); at most :data:`MAX_COSINE_PAIRS`, in id order."""
    kept = sorted((r for r in rows if r.id in vectors), key=lambda r: r.id)
    matrix = np.stack([vectors[r.id] for r in kept]) if kept else np.zeros((0, 1))
    pairs: list[tuple[str, Conversation, Conversation]] = []
    for i in range(len(kept) - 1):
        cosines = matrix[i + 1 :] @ matrix[i]
        pairs += [(kept[i].id, kept[i], kept[i + 1 + j]) for j in np.flatnonzero(cosines >= COSINE_THRESHOLD)]
        if len(pairs) >= MAX_COSINE_PAIRS:
            pairs = pairs[:MAX_COSINE_PAIRS]
            break
    return {"threshold": COSINE_THRESHOLD, "conversations": len(kept), "pairs": len(pairs),
            "labels": _pair_agreement(pairs)}  # fmt: skip


def conversation_vectors(folder: Path, manifest: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """Each conversation's embedding: the re-normalized mean of its messages' vectors, read from the cache of
    the build's embeddings layer (the layer stores per-text vectors only); None when the build has no such layer."""
    from coord_bench.mappers.embeddings import Embedder, EmbeddingsConfig

    entry = (manifest.get("annotations") or {}).get("embeddings")
    if entry is None:
        return None
    config = EmbeddingsConfig(**(entry.get("params") or {}))
    embedder = Embedder(model=config.model, device=config.device, batch_size=config.batch_size, progress=False,
                        backend=config.backend, precision=config.precision)  # fmt: skip
    out = {}
    for batch in iter_record_batches(folder, manifest, ["id", "turns"]):
        for record in batch:
            texts = [m["text"] for t in record["turns"] for m in t["messages"]]
            if texts:
                mean = embedder.vectors(texts).astype(np.float64).mean(axis=0)
                out[record["id"]] = mean / max(float(np.linalg.norm(mean)), 1e-12)
    return out


def near_duplicates(rows: list[Conversation], vectors: dict[str, np.ndarray] | None) -> dict[str, Any]:
    return {
        "same_prompt": same_prompt(rows),
        "embedding_cosine": similar_embeddings(rows, vectors)
        if vectors is not None
        else {"skipped": "the build has no embeddings layer"},
    }


def labels_report(folder: Path, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    folder = Path(folder)
    manifest = manifest or read_manifest(folder)
    rows = [Conversation(r) for batch in iter_record_batches(folder, manifest, COLUMNS) for r in batch]
    reviewed = [r for r in rows if r.human]
    return {
        "coord_bench_version": manifest["coord_bench_version"],
        "bootstrap": {
            "samples": BOOTSTRAP_SAMPLES,
            "seed": BOOTSTRAP_SEED,
            "interval": "95% percentile",
            "unit": "conversation (near-duplicates: prompt group)",
        },  # fmt: skip
        "human_review": {
            "annotators": sorted({a for r in reviewed for a in r.human}),
            "conversations": len(reviewed),
            "inter_annotator": inter_annotator(reviewed),
            "rules_vs_humans": machine_vs_humans(reviewed, "rules"),
            "judge_vs_humans": machine_vs_humans(reviewed, "judge"),
        },
        "arena_judge_vs_voters": {"length_match": LENGTH_MATCH, "by_model": arena_judge(rows), "published": ZHENG_2023},
        "near_duplicates": near_duplicates(rows, conversation_vectors(folder, manifest)),
    }


def write_labels_report(folder: Path, manifest: dict[str, Any] | None = None) -> Path:
    """Write ``folder/reports/labels.json`` (the signature of a pipeline finisher, too)."""
    path = Path(folder) / REPORT
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(labels_report(folder, manifest), indent=2) + "\n", encoding="utf-8")
    return path


def _cell(est: dict[str, Any]) -> str:
    return format_estimate(est, with_n=True)


def card_section(folder: Path) -> str:
    """The card's "How good are the labels" section, rendered from ``reports/labels.json``."""
    from coord_bench.markdown import table

    path = Path(folder) / REPORT
    parts = ["## How good are the labels", ""]
    if not path.is_file():
        missing = (f"No labels report yet: `coord-bench review-import DIR FILE...` (human review) and "
                   f"`coord-bench report DIR` write `{REPORT}` and this section.")  # fmt: skip
        return "\n".join([*parts, missing]) + "\n"
    report = json.loads(path.read_text(encoding="utf-8"))
    boot = report["bootstrap"]
    parts.append(f"From `{REPORT}` (coord_bench {report['coord_bench_version']}); intervals are {boot['interval']} "
                 f"over {boot['samples']} bootstrap draws of whole {boot['unit']}, seed {boot['seed']}.")  # fmt: skip
    human = report["human_review"]
    parts += ["", "### Human review", ""]
    if not human["conversations"]:
        parts.append("No human labels yet: `review-sample` exports a sample, `review-import` reads it back.")
    else:
        parts.append(f"{human['conversations']} conversations reviewed by {len(human['annotators'])} annotator(s) "
                     f"({', '.join(human['annotators'])}).")  # fmt: skip
        rows = [[f"`{name}`", e["conversations"], _cell(e["krippendorff_alpha"]),
                 "; ".join(f"{'/'.join(p['annotators'])}: {_cell(p['cohen_kappa'])}" for p in e["pairs"])]
                for name, e in human["inter_annotator"].items()]  # fmt: skip
        if rows:
            parts += [
                "",
                "Between annotators (nominal):",
                "",
                table(["label", "conversations", "Krippendorff's alpha", "Cohen's kappa per pair"], rows),
            ]
        rows = [[kind.split("_")[0], f"`{name}`", e["n"], _cell(e["accuracy"]), _cell(e["cohen_kappa"]),
                 e["no_human_majority"]]
                for kind in ("rules_vs_humans", "judge_vs_humans") for name, e in human[kind].items()]  # fmt: skip
        if rows:
            parts += [
                "",
                "Machine labels against the annotators' majority:",
                "",
                table(["labels by", "label", "n", "accuracy", "Cohen's kappa", "no majority (left out)"], rows),
            ]
    arena = report["arena_judge_vs_voters"]
    published = arena["published"]
    parts += ["", "### The judge against the arena's voters", ""]
    share = f"{arena['length_match']:.0%}"
    header = ["judge", "with ties", "without ties", "position consistency", f"length-matched (within {share})",
              "picks the longer response"]  # fmt: skip
    rows = [[f"`{model}`", _cell(e["agreement_with_ties"]), _cell(e["agreement_without_ties"]),
             _cell(e["position_consistency"]), _cell(e["length_matched"]["agreement_with_ties"]),
             _cell(e["judge_prefers_longer"])] for model, e in arena["by_model"].items()]  # fmt: skip
    rows.append([f"{published['judge']}, published", f"{published['agreement_with_ties']['value']:.2f}",
                 f"{published['agreement_without_ties']['value']:.2f}",
                 f"{published['position_consistency']['value']:.2f}", "", ""])  # fmt: skip
    parts += [
        "Agreement of the judge's `preferred` with the arena vote (`model_a` = A, `model_b` = B, either tie = tie): "
        "with ties over 3 classes; without ties on the votes and verdicts that pick a side. Position "
        "consistency: the share of verdicts judged in both orders that kept their winner. Length-matched: pairs "
        f"whose two responses are within {share} of each other in length (so length cannot explain a verdict); "
        "the last column is the share of decisive verdicts that picked the longer response.",
        "",
        table(header, rows),
        "",
        f"The last row is not ours: it is {published['citation']} ({published['agreement_with_ties']['against']}; "
        f"{published['agreement_without_ties']['against']}; human-human agreement there "
        f"{published['human_human_with_ties']:.2f} with ties, {published['human_human_without_ties']:.2f} without; "
        f"position consistency on {published['position_consistency']['on']}). A small local judge, as in this "
        "project's tests, proves the plumbing, not the quality: compare a strong judge's numbers with theirs.",
    ]
    dup = report["near_duplicates"]
    prompt, cosine = dup["same_prompt"], dup["embedding_cosine"]
    parts += ["", "### Consistency across near-duplicates", "",
              f"Pairs of conversations with the same normalized prompt: {prompt['pairs']} in {prompt['groups']} groups "
              f"(at most {MAX_GROUP} conversations per group). Arena pairs share a prompt but not their responses, "
              "so their judge labels need not agree; DEBATE and scene pairs should."]  # fmt: skip
    rows = [[f"`{label}`", e["pairs"], _cell(e["agree"])] for label, e in prompt["labels"].items()]
    if rows:
        parts += ["", table(["label", "pairs", "share agreeing"], rows)]
    if "skipped" in cosine:
        parts += ["", f"Pairs by embedding: not measured ({cosine['skipped']})."]
    else:
        found = f"{cosine['pairs']} among {cosine['conversations']} conversations"
        parts += ["", "Pairs whose conversation embeddings (the mean of their messages' vectors) have cosine >= "
                      f"{cosine['threshold']}: {found}."]  # fmt: skip
        rows = [[f"`{label}`", e["pairs"], _cell(e["agree"])] for label, e in cosine["labels"].items()]
        if rows:
            parts += ["", table(["label", "pairs", "share agreeing"], rows)]
    return "\n".join(parts) + "\n"
