"""Per-conversation arrays of the latent layer under a byte budget: in memory up to it, in a file past it.

The layer holds every conversation's (U, Y) embeddings (about 4.6 KB a turn for MiniLM) and its states, which
grow with the corpus. A store keeps the first ``budget`` bytes in memory and writes the rest to an unlinked
temporary file in the build's staging folder (gone when the build ends, however it ends); an item is read
back on access as a fresh array, so what stays resident is what the caller holds. ``sample`` picks the
conversations a fit uses when a split's arrays exceed its share of the budget.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np


class ArrayStore(Sequence):
    """A list of tuples of arrays (one tuple per conversation), in memory up to ``budget`` bytes."""

    def __init__(self, budget: int, folder: Path):
        self.budget, self.folder = budget, folder
        self.items: list[tuple[np.ndarray, ...] | list[tuple[int, tuple, np.dtype]]] = []
        self.sizes: list[int] = []  # bytes of each item
        self.in_memory = 0
        self._file = None
        self._end = 0  # bytes written to the file

    def append(self, arrays: tuple[np.ndarray, ...]) -> None:
        size = sum(a.nbytes for a in arrays)
        self.sizes.append(size)
        if self._file is None and self.in_memory + size <= self.budget:
            self.items.append(arrays)
            self.in_memory += size
            return
        if self._file is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            # unlinked at once: its space is freed when the store is dropped or the process ends
            self._file = tempfile.TemporaryFile(dir=self.folder, prefix=".latent-arrays-")  # noqa: SIM115
        where = []
        for array in arrays:
            data = np.ascontiguousarray(array)
            os.pwrite(self._file.fileno(), data.tobytes(), self._end)
            where.append((self._end, data.shape, data.dtype))
            self._end += data.nbytes
        self.items.append(where)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        item = self.items[index]
        if isinstance(item, tuple):
            return item
        out = []
        for offset, shape, dtype in item:
            size = int(np.prod(shape)) * dtype.itemsize
            out.append(np.frombuffer(os.pread(self._file.fileno(), size, offset), dtype=dtype).reshape(shape))
        return tuple(out)

    @property
    def spilled(self) -> bool:
        return self._file is not None

    @property
    def nbytes(self) -> int:
        return sum(self.sizes)


class View(Sequence):
    """The items of a store at ``indices``, read on access (the fits and reports take it as a list)."""

    def __init__(self, store: ArrayStore, indices: list[int]):
        self.store, self.indices = store, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int):
        return self.store[self.indices[position]]


def sample(store: ArrayStore, indices: list[int], budget: int, seed: int) -> list[int]:
    """``indices`` whole where their items fit ``budget`` bytes, else a seeded random subset that fits (at least
    one item), in their original order."""
    if sum(store.sizes[i] for i in indices) <= budget:
        return indices
    taken, used = [], 0
    for i in np.random.default_rng(seed).permutation(indices):
        if used + store.sizes[i] <= budget or not taken:
            taken.append(int(i))
            used += store.sizes[i]
    return sorted(taken)


def chunks_of(store: ArrayStore, budget: int):
    """Consecutive runs of item indices whose bytes fit ``budget`` (each run at least one item)."""
    run, used = [], 0
    for i, size in enumerate(store.sizes):
        if run and used + size > budget:
            yield run
            run, used = [], 0
        run.append(i)
        used += size
    if run:
        yield run
