"""Many variable-length (U, Y) sequences as one "time-major packed" array pair, and chunked products on it.

Sequences are sorted by length, longest first (ties keep input order). Block t holds position t of every
sequence longer than t, in that order, so the sequences active at position t + 1 are a prefix of those
active at t: a recursion over positions runs as one matrix product per position over all sequences at once.
Packed arrays keep the caller's float dtype (embeddings are float32; a float64 copy of 50K x 768 rows would
double the memory); every product is taken in float64, a chunk of rows at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CHUNK_ROWS = 8192


@dataclass(frozen=True)
class Packing:
    order: np.ndarray  # sequence indices, longest first
    lengths: np.ndarray  # their lengths, in that order
    counts: np.ndarray  # counts[t]: number of sequences longer than t
    offsets: np.ndarray  # block t is rows offsets[t]:offsets[t + 1]

    @classmethod
    def from_lengths(cls, lengths: Sequence[int]) -> Packing:
        lengths = np.asarray(lengths, dtype=np.int64)
        if lengths.size == 0 or lengths.min() < 1:
            raise ValueError("need at least one sequence, each with at least one step")
        order = np.argsort(-lengths, kind="stable")
        at_least = np.bincount(lengths)[::-1].cumsum()[::-1]  # at_least[n]: sequences of length >= n
        counts = at_least[1:]
        offsets = np.concatenate([[0], np.cumsum(counts)])
        return cls(order=order, lengths=lengths[order], counts=counts, offsets=offsets)

    @property
    def n_steps(self) -> int:
        return len(self.counts)

    @property
    def n_rows(self) -> int:
        return int(self.offsets[-1])

    def block(self, t: int) -> slice:
        return slice(int(self.offsets[t]), int(self.offsets[t + 1]))

    def previous_rows(self) -> np.ndarray:
        """Row of position t - 1 for every row at a position t >= 1 (those are rows offsets[1]:, in order)."""
        return np.concatenate(
            [np.arange(self.offsets[t - 1], self.offsets[t - 1] + self.counts[t]) for t in range(1, self.n_steps)]
            or [np.zeros(0, dtype=np.int64)]
        )

    def pack(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        dtype = np.float32 if all(a.dtype == np.float32 for a in arrays) else np.float64
        out = np.empty((self.n_rows, arrays[0].shape[1]), dtype=dtype)
        for rank, index in enumerate(self.order):
            out[self.offsets[: len(arrays[index])] + rank] = arrays[index]
        return out

    def unpack(self, packed: np.ndarray) -> list[np.ndarray]:
        """Inverse of `pack`: per-sequence arrays, in the original sequence order."""
        out: list[np.ndarray] = [packed[:0]] * len(self.order)
        for rank, (index, length) in enumerate(zip(self.order, self.lengths, strict=True)):
            out[index] = packed[self.offsets[:length] + rank]
        return out


def check_sequences(
    sequences: Sequence[tuple[np.ndarray, np.ndarray]], du: int | None = None, dy: int | None = None
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Validate (U, Y) pairs (T x du, T x dy, T >= 1, finite, consistent widths); return the U and Y lists."""
    if len(sequences) == 0:
        raise ValueError("no sequences")
    us, ys = [], []
    for i, (u, y) in enumerate(sequences):
        u, y = np.asarray(u), np.asarray(y)
        if u.ndim != 2 or y.ndim != 2 or len(u) != len(y) or len(y) == 0:
            raise ValueError(f"sequence {i}: need U (T x du), Y (T x dy) with one T >= 1, got {u.shape}, {y.shape}")
        if not (np.isfinite(u).all() and np.isfinite(y).all()):
            raise ValueError(f"sequence {i}: non-finite values")
        us.append(u if u.dtype in (np.float32, np.float64) else u.astype(np.float64))
        ys.append(y if y.dtype in (np.float32, np.float64) else y.astype(np.float64))
    du = us[0].shape[1] if du is None else du
    dy = ys[0].shape[1] if dy is None else dy
    if any(u.shape[1] != du for u in us) or any(y.shape[1] != dy for y in ys):
        raise ValueError(f"all sequences need du={du} input and dy={dy} observation columns")
    return us, ys


@dataclass
class PackedSequences:
    """Packed inputs and observations plus the data-only sums that every EM iteration reuses."""

    packing: Packing
    u: np.ndarray  # n_rows x du
    y: np.ndarray  # n_rows x dy
    previous: np.ndarray  # row of z_{t-1} for each transition row offsets[1]:

    @classmethod
    def build(cls, sequences, du: int | None = None, dy: int | None = None) -> PackedSequences:
        us, ys = check_sequences(sequences, du, dy)
        packing = Packing.from_lengths([len(y) for y in ys])
        return cls(packing, packing.pack(us), packing.pack(ys), packing.previous_rows())

    @property
    def u_next(self) -> np.ndarray:
        """Inputs of the transition rows (positions t >= 1): a view, no copy."""
        return self.u[self.packing.offsets[1] :]

    @property
    def n_transitions(self) -> int:
        return self.packing.n_rows - int(self.packing.offsets[1])


def chunks(n: int):
    for start in range(0, n, CHUNK_ROWS):
        yield slice(start, min(start + CHUNK_ROWS, n))


def matmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """x @ w in float64, x cast a chunk of rows at a time."""
    out = np.empty((len(x), w.shape[1]))
    for rows in chunks(len(x)):
        out[rows] = x[rows].astype(np.float64) @ w
    return out


def gram(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """x^T m in float64, summed over chunks of rows (in a fixed order: deterministic)."""
    out = np.zeros((x.shape[1], m.shape[1]))
    for rows in chunks(len(x)):
        out += x[rows].astype(np.float64).T @ np.asarray(m[rows], dtype=np.float64)
    return out


def column_sums(x: np.ndarray, square: bool = False) -> np.ndarray:
    out = np.zeros(x.shape[1])
    for rows in chunks(len(x)):
        chunk = x[rows].astype(np.float64)
        out += (chunk * chunk if square else chunk).sum(axis=0)
    return out
