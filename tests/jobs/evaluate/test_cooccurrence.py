"""The numpy kernels of the item-kNN fast path against plain-Python versions."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa

from jobs.evaluate import cooccurrence as co


def test_crossed_pairs_give_every_ordered_pair_of_a_users_distinct_items():
    user = np.array([0, 0, 0, 1, 2, 2])
    item = np.array([5, 1, 3, 4, 2, 7])
    i, j = co.crossed_pairs(user, item)
    expected = sorted(
        (a, b) for u in set(user.tolist()) for a, b in itertools.permutations(item[user == u].tolist(), 2)
    )
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == expected


def test_capped_codes_keep_each_users_latest_distinct_items_then_the_smallest():
    # User 0: item 3 twice (latest time 9), items 1 and 2 tie at time 5; a cap of 2 keeps 3, then 1.
    user = np.array([0, 0, 0, 0, 1])
    item = np.array([3, 1, 3, 2, 4])
    ts = np.array([1, 5, 9, 5, 0])
    u, it = co.capped_codes(user, item, ts, 2)
    assert list(zip(u.tolist(), it.tolist(), strict=True)) == [(0, 3), (0, 1), (1, 4)]


def test_counted_pairs_count_each_distinct_pair_once():
    i = np.array([3, 0, 3, 1, 0, 3], dtype=np.int32)
    j = np.array([1, 2, 1, 0, 2, 1], dtype=np.int32)
    a, b, n = co.counted_pairs(i, j, 4)
    assert list(zip(a.tolist(), b.tolist(), n.tolist(), strict=True)) == [(0, 2, 2), (1, 0, 1), (3, 1, 3)]


def test_packed_pairs_hold_one_row_per_i_and_unpack_to_the_same_pairs():
    i = np.array([0, 0, 2, 5, 5, 5], dtype=np.int32)
    j = np.array([1, 4, 0, 0, 2, 3], dtype=np.int32)
    n = np.array([2, 1, 1, 7, 1, 3], dtype=np.int32)
    [batch] = co.packed_pairs(i, j, n)
    assert batch.column(co.COL_I).to_pylist() == [0, 2, 5]
    assert [len(v) for v in batch.column(co.COL_J).to_pylist()] == [8, 4, 12]
    # Two batches, the first sliced: as the shuffle hands them over.
    [later] = co.packed_pairs(np.array([7, 7], dtype=np.int32), np.array([1, 2], dtype=np.int32), np.array([4, 5]))
    table = pa.Table.from_batches([batch.slice(1), later])
    a, b, c = co.unpacked_pairs(table)
    assert list(zip(a.tolist(), b.tolist(), c.tolist(), strict=True)) == [
        (2, 0, 1),
        (5, 0, 7),
        (5, 2, 1),
        (5, 3, 3),
        (7, 1, 4),
        (7, 2, 5),
    ]
    a, b, c = co.unpacked_pairs(pa.Table.from_batches([batch.slice(2)]))
    assert (a.tolist(), b.tolist(), c.tolist()) == ([5, 5, 5], [0, 2, 3], [7, 1, 3])
    [empty] = co.packed_pairs(*(np.zeros(0, dtype=np.int32),) * 3)
    assert empty.num_rows == 0


def test_packed_pairs_split_into_batches_of_whole_rows_under_the_pair_limit():
    # Runs of 2, 1 and 3 pairs; at most 3 pairs per batch: [0, 2], then [5] alone (3), nothing split.
    i = np.array([0, 0, 2, 5, 5, 5], dtype=np.int32)
    j = np.array([1, 4, 0, 0, 2, 3], dtype=np.int32)
    n = np.array([2, 1, 1, 7, 1, 3], dtype=np.int32)
    batches = list(co.packed_pairs(i, j, n, max_pairs=3))
    assert [b.column(co.COL_I).to_pylist() for b in batches] == [[0, 2], [5]]
    a, b, c = co.unpacked_pairs(pa.Table.from_batches(batches))
    assert (a.tolist(), b.tolist(), c.tolist()) == (i.tolist(), j.tolist(), n.tolist())
    # A row longer than the limit still goes whole, in a batch of its own.
    batches = list(co.packed_pairs(i, j, n, max_pairs=1))
    assert [b.column(co.COL_I).to_pylist() for b in batches] == [[0], [2], [5]]
    assert co.unpacked_pairs(pa.Table.from_batches(batches))[1].tolist() == j.tolist()


def test_top_neighbors_rank_cosines_with_ties_on_the_neighbour():
    # Item 0 co-occurs with 1 twice (counted in two chunks, once each) and with 2 and 3 once each; supports
    # 2, 2, 1, 1.
    i = np.array([0, 0, 0, 0, 1, 2, 3])
    j = np.array([1, 2, 1, 3, 0, 0, 0])
    counts = np.array([1, 1, 1, 1, 2, 1, 1])
    a, b, score = co.top_neighbors(i, j, counts, np.array([2, 2, 1, 1]), 2)
    rows = list(zip(a.tolist(), b.tolist(), score.tolist(), strict=True))
    assert rows == [
        (0, 1, 1.0),
        (0, 2, 1 / np.sqrt(2)),
        (1, 0, 1.0),
        (2, 0, 1 / np.sqrt(2)),
        (3, 0, 1 / np.sqrt(2)),
    ]
