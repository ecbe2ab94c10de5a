"""RowStore (data/streams.py): pass 1's compact per-message row storage keeps every row, in order, across blocks."""

from __future__ import annotations

import numpy as np
from dreamzero_policy.data.streams import RowStore


def test_rows_and_stamps_round_trip_across_block_boundaries() -> None:
    store = RowStore()
    rng = np.random.default_rng(0)
    n = 2 * RowStore.BLOCK + 7
    rows = rng.normal(size=(n, 8))
    stamps = np.cumsum(rng.integers(1, 10**7, size=n))
    for t, r in zip(stamps, rows, strict=True):
        store.append(int(t), r)
    assert len(store) == n and store.width == 8
    got_t, got_v = store.arrays()
    assert got_t.dtype == np.int64 and got_v.shape == (n, 8)
    np.testing.assert_array_equal(got_t, stamps)
    np.testing.assert_array_equal(got_v, rows)


def test_memory_per_row_is_close_to_its_values() -> None:
    """~8 floats + 1 stamp = 72 bytes per row; separate arrays per row cost ~180 bytes."""
    store = RowStore()
    for i in range(10 * RowStore.BLOCK):
        store.append(i, np.full(8, float(i)))
    held = sum(b.nbytes for b in store._values) + sum(b.nbytes for b in store._stamps)
    assert held / len(store) <= 72 * 1.01
