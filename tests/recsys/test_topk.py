"""The top-n kernel against a brute-force Python version: exclusions, ties by item row, short lists, blocks."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.topk import top_n


def _brute(x, y, n, excluded):
    """Per user, (item row, score) of the n best non-excluded items, score descending then row ascending."""
    out = []
    for u in range(x.shape[0]):
        scores = [float(np.dot(x[u].astype(np.float64), y[i].astype(np.float64))) for i in range(y.shape[0])]
        eligible = [i for i in range(y.shape[0]) if i not in excluded[u]]
        out.append([(i, scores[i]) for i in sorted(eligible, key=lambda i: (-scores[i], i))[:n]])
    return out


def _csr(excluded):
    indptr = np.concatenate([[0], np.cumsum([len(e) for e in excluded])])
    indices = np.array([i for e in excluded for i in e], dtype=np.int64)
    return indptr, indices


def _lists(res):
    return [
        list(zip(res.items[a:b].tolist(), res.scores[a:b].tolist(), strict=True))
        for a, b in zip(res.indptr[:-1], res.indptr[1:], strict=True)
    ]


def test_small_integer_factors_match_brute_force_with_many_ties():
    # Integer factors make every score exact in float32 and produce many ties, so the order is fully pinned.
    rng = np.random.default_rng(3)
    x = rng.integers(-2, 3, size=(40, 3)).astype(np.float32)
    y = rng.integers(-2, 3, size=(60, 3)).astype(np.float32)
    excluded = [set(rng.choice(60, size=rng.integers(0, 12), replace=False).tolist()) for _ in range(40)]
    excluded[5] = set(range(57))  # 3 eligible items for n = 7
    excluded[6] = set(range(60))  # nothing eligible
    indptr, indices = _csr([sorted(e) for e in excluded])
    res = top_n(x, y, 7, exclude_indptr=indptr, exclude_indices=indices)
    expected = _brute(x, y, 7, excluded)
    assert _lists(res) == expected
    assert [len(v) for v in expected[5:7]] == [3, 0]
    assert res.items.dtype == np.int64 and res.scores.dtype == np.float32
    # One user per block (block_bytes below one row of scores) gives the same lists.
    one = top_n(x, y, 7, exclude_indptr=indptr, exclude_indices=indices, block_bytes=1)
    assert _lists(one) == expected


def test_ties_go_to_the_lower_item_row_and_excluded_items_never_appear():
    x = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    y = np.array([[0.5, 0.0], [0.9, 1.0], [0.5, 2.0], [0.5, 0.0], [0.1, 2.0]], dtype=np.float32)
    res = top_n(x, y, 3, exclude_indptr=np.array([0, 1, 3]), exclude_indices=np.array([1, 2, 4]))
    # user 0: scores 0.5, 0.9 (excluded), 0.5, 0.5, 0.1 -> rows 0, 2, 3 tie at 0.5; user 1: 2 and 4 excluded.
    assert _lists(res) == [[(0, 0.5), (2, 0.5), (3, 0.5)], [(1, 1.0), (0, 0.0), (3, 0.0)]]
    assert res.indptr.tolist() == [0, 3, 6]


def test_random_float_factors_match_a_full_sort_across_blocks():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((50, 8)).astype(np.float32)
    y = rng.standard_normal((300, 8)).astype(np.float32)
    excluded = [sorted(rng.choice(300, size=20, replace=False).tolist()) for _ in range(50)]
    indptr, indices = _csr(excluded)
    res = top_n(x, y, 25, exclude_indptr=indptr, exclude_indices=indices, block_bytes=300 * 4 * 7)
    scores = x @ y.T
    for u, got in enumerate(_lists(res)):
        row = scores[u].copy()
        row[excluded[u]] = -np.inf
        best = np.lexsort((np.arange(300), -row))[:25]
        assert [i for i, _ in got] == best.tolist()
        np.testing.assert_allclose([s for _, s in got], row[best], rtol=1e-6)


def test_n_beyond_the_catalogue_zero_and_no_exclusions():
    x = np.array([[1.0], [-1.0]], dtype=np.float32)
    y = np.array([[1.0], [3.0], [2.0]], dtype=np.float32)
    assert _lists(top_n(x, y, 10)) == [[(1, 3.0), (2, 2.0), (0, 1.0)], [(0, -1.0), (2, -2.0), (1, -3.0)]]
    empty = top_n(x, y, 0)
    assert empty.indptr.tolist() == [0, 0, 0] and empty.items.size == 0
    assert top_n(np.empty((0, 1), np.float32), y, 2).indptr.tolist() == [0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"y": np.ones((3, 2), np.float32)}, "same rank"),
        ({"n": -1}, "n must be >= 0"),
        ({"exclude_indptr": np.array([0, 1])}, "give both or neither"),
        ({"exclude_indptr": np.array([0, 1]), "exclude_indices": np.array([0])}, "3 entries"),
        ({"exclude_indptr": np.array([0, 1, 1]), "exclude_indices": np.array([3])}, r"\[0, 3\)"),
        ({"exclude_indptr": np.array([0, 2, 1]), "exclude_indices": np.array([0])}, "non-decreasing"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    args = {"x": np.ones((2, 1), np.float32), "y": np.ones((3, 1), np.float32), "n": 2} | kwargs
    with pytest.raises(ValueError, match=message):
        top_n(**args)
