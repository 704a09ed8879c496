"""The numpy core of the neighbour search against brute force."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from jobs.content import lsh


def random_catalogue(n: int, seed: int = 3) -> sp.csr_matrix:
    """Unit rows with a few shared features each (category-like, brand-like, tokens), many near-ties."""
    rng = np.random.default_rng(seed)
    rows, cols, vals = [], [], []
    for i in range(n):
        feats = {int(rng.integers(0, 4)): 1.0, 10 + int(rng.integers(0, 12)): 0.6}
        for t in rng.integers(100, 140, size=3):
            feats[int(t)] = 0.5
        feats[500] = float(rng.random())
        rows += [i] * len(feats)
        cols += list(feats)
        vals += list(feats.values())
    x = sp.csr_matrix((vals, (rows, cols)), shape=(n, 600))
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1))).ravel()
    return sp.csr_matrix(sp.diags(1 / norms) @ x)


def brute_force(x: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = (x @ x.T).toarray()
    np.fill_diagonal(sims, -np.inf)
    order = np.lexsort((np.tile(np.arange(len(sims)), (len(sims), 1)), -sims), axis=1)[:, :k]
    return order, np.take_along_axis(sims, order, axis=1)


def test_single_window_equals_brute_force():
    x = random_catalogue(40)
    found = lsh.shard_neighbours(x, k=5, tables=2, bits=8, window=64, seed=1, tiebreak=np.zeros(40))
    want_ids, want_scores = brute_force(x, 5)
    assert np.array_equal(found.item, np.repeat(np.arange(40), 5))
    assert np.array_equal(found.neighbour.reshape(40, 5), want_ids)
    np.testing.assert_allclose(found.score.reshape(40, 5), want_scores, atol=1e-12)
    assert np.array_equal(found.rank, np.tile(np.arange(1, 6), 40))


def test_windows_reach_high_tie_aware_recall_with_blocks_far_smaller_than_the_shard():
    n, k = 1200, 10
    x = random_catalogue(n, seed=5)
    found = lsh.shard_neighbours(x, k=k, tables=6, bits=16, window=200, seed=2, tiebreak=np.zeros(n))
    kth, good, _ = lsh.exact_topk(x, x, k=k, exclude=np.arange(n))
    hits = sum(len(set(found.neighbour[found.item == i]) & set(good[i])) for i in range(n))
    assert hits / (n * k) >= 0.95
    # the scores are exact cosines
    dense = x.toarray()
    np.testing.assert_allclose(found.score, np.einsum("ij,ij->i", dense[found.item], dense[found.neighbour]))


def test_groups_restrict_to_cross_group_pairs():
    x = random_catalogue(30)
    groups = np.arange(30) % 3
    found = lsh.shard_neighbours(
        x, k=4, tables=1, bits=8, window=64, seed=1, tiebreak=np.zeros(30), groups=groups
    )
    assert len(found.item) == 30 * 4
    assert np.all(groups[found.item] != groups[found.neighbour])


def test_merge_topk_drops_duplicates_and_ranks():
    got = lsh.merge_topk(
        np.array([0, 0, 0, 0, 1]), np.array([2, 3, 2, 4, 0]), np.array([0.5, 0.9, 0.5, 0.5, 0.1]), k=2
    )
    assert got.item.tolist() == [0, 0, 1]
    assert got.neighbour.tolist() == [3, 2, 0]
    assert got.rank.tolist() == [1, 2, 1]


def test_window_starts_overlap_by_half_and_cover_the_tail():
    assert lsh.window_starts(10, 20).tolist() == [0]
    assert lsh.window_starts(10, 4).tolist() == [0, 2, 4, 6]
    assert lsh.window_starts(11, 4).tolist() == [0, 2, 4, 6, 7]


def test_planes_are_deterministic_and_gaussian():
    a = lsh.planes(np.arange(20000), seed=3, bits=4)
    assert np.array_equal(a, lsh.planes(np.arange(20000), seed=3, bits=4))
    assert abs(a.mean()) < 0.02 and abs(a.std() - 1) < 0.02
