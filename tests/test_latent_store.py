"""The latent layer's byte budget: arrays past it go to a file and come back equal; samples fit a budget."""

import numpy as np

from coord_bench.mappers.latents.store import ArrayStore, View, chunks_of, sample


def conversations(n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 6, n)
    return [(rng.normal(size=(t, 3)).astype(np.float32), rng.normal(size=(t, 4))) for t in lengths]


def test_items_past_the_budget_are_written_to_a_file_and_read_back_equal(tmp_path):
    items = conversations(20)
    store = ArrayStore(budget=sum(a.nbytes + b.nbytes for a, b in items[:5]), folder=tmp_path)
    for item in items:
        store.append(item)
    assert store.spilled and store.in_memory == sum(store.sizes[:5]) and len(store) == 20
    assert store.nbytes == sum(a.nbytes + b.nbytes for a, b in items)
    assert list(tmp_path.iterdir()) == []  # the file is unlinked: nothing left in the folder
    for (u, y), (u2, y2) in zip(items, store, strict=True):
        assert (u2.dtype, y2.dtype) == (np.float32, np.float64)
        np.testing.assert_array_equal(u2, u)
        np.testing.assert_array_equal(y2, y)
    assert store[3][0] is items[3][0]  # the first items stay in memory as they were
    view = View(store, [19, 2])
    np.testing.assert_array_equal(view[0][1], items[19][1])
    assert len(view) == 2


def test_a_store_within_its_budget_keeps_everything_in_memory(tmp_path):
    store = ArrayStore(budget=10**6, folder=tmp_path / "never")
    for item in conversations(5):
        store.append(item)
    assert not store.spilled and not (tmp_path / "never").exists()


def test_sample_keeps_all_under_the_budget_else_a_seeded_subset_that_fits(tmp_path):
    store = ArrayStore(budget=0, folder=tmp_path)
    for item in conversations(40):
        store.append(item)
    indices = list(range(0, 40, 2))
    total = sum(store.sizes[i] for i in indices)
    assert sample(store, indices, total, seed=0) == indices
    taken = sample(store, indices, total // 3, seed=0)
    assert taken == sorted(taken) and set(taken) < set(indices) and taken
    assert sum(store.sizes[i] for i in taken) <= total // 3
    assert sample(store, indices, total // 3, seed=0) == taken != sample(store, indices, total // 3, seed=1)
    assert len(sample(store, indices, 1, seed=0)) == 1  # at least one item, even past the budget


def test_chunks_cover_every_item_once_in_order_within_the_budget(tmp_path):
    store = ArrayStore(budget=0, folder=tmp_path)
    for item in conversations(30):
        store.append(item)
    budget = 3 * max(store.sizes)
    runs = list(chunks_of(store, budget))
    assert [i for run in runs for i in run] == list(range(30)) and len(runs) > 1
    assert all(sum(store.sizes[i] for i in run) <= budget for run in runs)
    assert list(chunks_of(store, store.nbytes)) == [list(range(30))]
