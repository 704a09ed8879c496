"""Vectorised candidate generation and exact scoring of cosine neighbours (numpy/scipy, no Spark).

One *shard* (a top-level category, or a group of the global pass) is scored in memory:

1. Random-hyperplane LSH: ``bits`` hyperplanes per table, their Gaussian components derived from a hash of
   (seed, table, feature index, bit), so every worker gets the same planes without shipping a matrix.
   Each item's signature is the ``bits`` signs of its projections (centred on the shard's median so that a
   feature every item of the shard shares does not fix the bit).
2. Banding with bounded buckets: items are sorted by (signature, price position, id). Items whose signatures
   agree sit next to each other, and among items with the same signature the closest prices are adjacent.
   The sorted order is cut into overlapping windows of ``window`` items with a step of ``window / 2``, so a
   bucket is never larger than ``window`` and a run of up to ``window / 2`` similar items always falls inside
   one of an item's windows.
3. Exact cosine inside each window: a sparse x dense product (``nnz * window`` multiply-adds), keeping the
   top-``k`` of every row. Results of all tables and windows are merged per item, duplicates dropped.

Vectors are L2-normalised, so the dot product is the cosine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class Neighbours:
    """Top-k lists of a shard as flat arrays: ``item[i]`` has neighbour ``neighbour[i]`` at ``rank[i]``."""

    item: np.ndarray
    neighbour: np.ndarray
    score: np.ndarray
    rank: np.ndarray


def to_csr(vectors: Iterable[Mapping[str, Sequence[float]]], size: int) -> sp.csr_matrix:
    """Stacks sparse vectors given as ``{"indices": ..., "values": ...}`` (Spark's Arrow form) as CSR rows.

    Example:
        >>> to_csr([{"indices": [0, 2], "values": [0.6, 0.8]}], 3).toarray()
        array([[0.6, 0. , 0.8]])
    """
    indptr = [0]
    idx: list[np.ndarray] = []
    val: list[np.ndarray] = []
    for v in vectors:
        i = np.asarray(v["indices"], dtype=np.int64)
        idx.append(i)
        val.append(np.asarray(v["values"], dtype=np.float64))
        indptr.append(indptr[-1] + len(i))
    indices = np.concatenate(idx) if idx else np.zeros(0, np.int64)
    values = np.concatenate(val) if val else np.zeros(0, np.float64)
    return sp.csr_matrix((values, indices, np.asarray(indptr, np.int64)), shape=(len(indptr) - 1, size))


def _splitmix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def planes(columns: np.ndarray, *, seed: int, bits: int) -> np.ndarray:
    """Gaussian hyperplane components of feature ``columns``: ``(len(columns), bits)``, deterministic."""
    with np.errstate(over="ignore"):
        key = columns.astype(np.uint64)[:, None] * np.uint64(bits) + np.arange(bits, dtype=np.uint64)[None, :]
        key = key * np.uint64(2) + np.uint64(seed) * _GOLDEN
    u1 = (_splitmix(key) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    u2 = (_splitmix(key + np.uint64(1)) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


def signatures(x: sp.csr_matrix, columns: np.ndarray, *, seed: int, bits: int, center: bool) -> np.ndarray:
    """One ``bits``-bit signature per row of ``x`` (local columns; ``columns`` maps them to feature ids)."""
    if not 0 < bits <= 62:
        raise ValueError(f"bits must be in 1..62, got {bits}")
    proj = np.asarray(x @ planes(columns, seed=seed, bits=bits))
    if center and len(proj):
        proj = proj - np.median(proj, axis=0)
    on = (proj > 0).astype(np.uint64)
    weights = np.left_shift(np.uint64(1), np.arange(bits - 1, -1, -1, dtype=np.uint64))
    return (on * weights[None, :]).sum(axis=1, dtype=np.uint64)


def localise(x: sp.csr_matrix) -> tuple[sp.csr_matrix, np.ndarray]:
    """``x`` restricted to the columns it uses, and those columns' original indices (sorted)."""
    columns, inverse = np.unique(x.indices, return_inverse=True)
    local = sp.csr_matrix((x.data, inverse.astype(np.int64), x.indptr), shape=(x.shape[0], len(columns)))
    return local, columns


def window_starts(n: int, window: int) -> np.ndarray:
    """Starts of the overlapping windows (step ``window // 2``) covering ``n`` sorted items."""
    if n <= window:
        return np.zeros(1, np.int64)
    step = max(window // 2, 1)
    starts = np.arange(0, n - window + step, step, dtype=np.int64)
    return np.unique(np.minimum(starts, n - window))


def block_topk(
    x: sp.csr_matrix, members: np.ndarray, *, k: int, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact top-``k`` cosine neighbours of every member among the members (self excluded).

    Args:
        x: Unit-length rows.
        members: Row numbers of ``x`` forming the block.
        k: Neighbours per member.
        groups: Optional label per row of ``x``; pairs with the same label are skipped (cross-group search).

    Returns:
        ``(rows, neighbours, scores)`` in row numbers of ``x``, by row, score descending and neighbour;
        ties at the k-th score are broken by the lower row number.
    """
    sub, _ = localise(x[members])
    m = len(members)
    if m < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    sims = np.asarray(sub @ sub.toarray().T)
    np.fill_diagonal(sims, -np.inf)
    if groups is not None:
        g = groups[members]
        sims[g[:, None] == g[None, :]] = -np.inf
    kk = min(k, m - 1)
    kth = np.partition(sims, m - kk, axis=1)[:, m - kk]
    r, c = np.nonzero((sims >= kth[:, None]) & np.isfinite(sims))
    s = sims[r, c]
    order = np.lexsort((members[c], -s, r))
    r, c, s = r[order], c[order], s[order]
    first = np.searchsorted(r, r, side="left")
    keep = (np.arange(len(r)) - first) < kk
    return members[r[keep]], members[c[keep]], s[keep]


def merge_topk(rows: np.ndarray, neighbours: np.ndarray, scores: np.ndarray, *, k: int) -> Neighbours:
    """Drops duplicate pairs (keeping the best score) and keeps each row's ``k`` best.

    Order: score descending, then the lower neighbour. Two stable integer/float sorts instead of a three-key
    ``lexsort`` (about 3x faster on the ten million candidate pairs of a 25k-product shard):

    1. by the ``(row, neighbour)`` pair packed in one int64: duplicates become adjacent and are reduced to
       their maximum score, leaving the pairs ordered by row, then neighbour;
    2. by ``row * 4 + (1 - score)`` (scores are cosines in [-1, 1], so ``1 - score`` is in [0, 2]), stable,
       so equal scores keep the neighbour order. The float key resolves scores to about 1e-10 for a
       million-row shard: scores closer than that rank as ties, broken by neighbour.

    Example:
        >>> merge_topk(np.array([0, 0, 0]), np.array([2, 1, 2]), np.array([0.5, 0.9, 0.5]), k=1).neighbour
        array([1])
    """
    if len(rows) == 0:
        empty = np.zeros(0, np.int64)
        return Neighbours(empty, empty, np.zeros(0), empty)
    rows = np.asarray(rows, np.int64)
    neighbours = np.asarray(neighbours, np.int64)
    scores = np.asarray(scores, np.float64)
    pair = rows * (int(neighbours.max()) + 1) + neighbours
    order = np.argsort(pair, kind="stable")
    pair = pair[order]
    starts = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]])
    best = np.maximum.reduceat(scores[order], starts)
    rows, neighbours = rows[order[starts]], neighbours[order[starts]]
    order = np.argsort(rows * 4.0 + (1.0 - best), kind="stable")
    rows, neighbours, best = rows[order], neighbours[order], best[order]
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left") + 1
    top = rank <= k
    return Neighbours(rows[top], neighbours[top], best[top], rank[top])


def shard_neighbours(
    x: sp.csr_matrix,
    *,
    k: int,
    tables: int,
    bits: int,
    window: int,
    seed: int,
    tiebreak: np.ndarray,
    hash_mask: np.ndarray | None = None,
    center: bool = True,
    groups: np.ndarray | None = None,
) -> Neighbours:
    """Top-``k`` neighbours of every row of ``x`` within the shard, by LSH windows and exact cosine.

    Args:
        x: Unit-length rows (feature-index columns), in the order ties are broken (row order = id order).
        k: Neighbours per item.
        tables: Independent LSH tables (each with its own hyperplanes); one is enough when the shard fits
            in a single window, which is then scored exactly.
        bits: Hyperplanes per table.
        window: Largest block scored exactly.
        seed: Seed of the hyperplanes.
        tiebreak: Secondary sort key after the signature (the price position).
        hash_mask: Boolean per feature index telling which features the signatures see (default: all);
            even-numbered tables further drop the features shared by fewer than ``n / window`` items.
        center: Centre projections on the shard median.
        groups: Optional label per row; same-label pairs are skipped.

    Returns:
        The merged top-``k`` lists in row numbers of ``x``.
    """
    n = x.shape[0]
    if k <= 0 or window < 2 or tables <= 0:
        raise ValueError(f"need k > 0, window >= 2 and tables > 0 (got {k}, {window}, {tables})")
    local, columns = localise(x)
    keep = np.ones(len(columns)) if hash_mask is None else hash_mask[columns].astype(np.float64)
    # Even tables hash only the features shared by at least n / window items of the shard: a rarer feature
    # (a model number in a title) cannot gather a window of neighbours by itself, yet would scatter products
    # that agree on everything else. Odd tables hash every feature, so pairs sharing rare features meet too.
    common = keep * (np.diff(local.tocsc().indptr) >= max(2, n // window))
    hashed = [local @ sp.diags(common), local @ sp.diags(keep)]
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    ids = np.arange(n)
    for table in range(tables if n > window else 1):
        if n > window:
            sig = signatures(hashed[table % 2], columns, seed=seed * 1009 + table, bits=bits, center=center)
            order = np.lexsort((ids, tiebreak, sig))
        else:
            order = ids
        for start in window_starts(n, window):
            parts.append(block_topk(local, order[start : start + window], k=k, groups=groups))
    rows, nbrs, scores = (np.concatenate([p[i] for p in parts]) for i in range(3))
    return merge_topk(rows, nbrs, scores, k=k)


def exact_topk(
    queries: sp.csr_matrix, x: sp.csr_matrix, *, k: int, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Brute-force cosine of each query row against every row of ``x``: the k-th score and the tie-aware set.

    Args:
        queries: Unit-length query rows (same columns as ``x``).
        x: Unit-length rows.
        k: Neighbours per query.
        exclude: Row of ``x`` that is the query itself (-1 for none), excluded from its own list.

    Returns:
        ``(kth, rows, scores)``: the k-th best score of each query and, per query, every row of ``x`` scoring
        at least that (ties included), with its score.
    """
    sims = (queries @ x.T).toarray()
    if exclude is not None:
        hit = exclude >= 0
        sims[np.nonzero(hit)[0], exclude[hit]] = -np.inf
    kk = min(k, x.shape[0])
    kth = np.partition(sims, sims.shape[1] - kk, axis=1)[:, sims.shape[1] - kk]
    rows = [np.nonzero((sims[i] >= kth[i]) & np.isfinite(sims[i]))[0] for i in range(len(kth))]
    return kth, rows, [sims[i, r] for i, r in enumerate(rows)]
