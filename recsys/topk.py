"""Exact top-n items by dot product for a block of user vectors, each user's own items excluded.

One kernel for the batch and the API: the ALS job scores its candidate users with it inside Spark
(``jobs.als.transforms.candidates_broadcast``), the API scores one user on a cache miss
(``serving.ondemand.top_items``). Both therefore order a list the same way: score descending, then item row
ascending (the order of the batch's old window ``orderBy(score desc, item_idx)``).

Per block of users: one ``X_block @ Y.T`` (float32), the excluded entries set to minus infinity, a
``np.partition`` per row to find the n-th best score, then an exact sort of the entries at or above it. Keeping
every entry tied with the n-th best until the sort is what makes the tie-break by item row exact (an
``argpartition`` alone would keep an arbitrary one of several tied items). The block is sized so that its
score matrix stays near ``block_bytes``.

Example:
    >>> x = np.array([[1.0, 0.0]], dtype=np.float32)
    >>> y = np.array([[0.5, 0.0], [0.9, 0.0], [0.5, 0.0]], dtype=np.float32)
    >>> res = top_n(x, y, 2, exclude_indptr=np.array([0, 1]), exclude_indices=np.array([1]))
    >>> res.items.tolist(), res.scores.tolist()
    ([0, 2], [0.5, 0.5])
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

DEFAULT_BLOCK_BYTES = 64 * 2**20
_LOWEST = np.finfo(np.float32).min


class TopN(NamedTuple):
    """Top-n lists of a block of users, CSR style.

    Attributes:
        indptr: ``[n_users + 1]`` int64; user ``u``'s list is ``items[indptr[u]:indptr[u + 1]]``.
        items: Rows of the item matrix, best first within each user.
        scores: float32 dot products, aligned with ``items``.
    """

    indptr: np.ndarray
    items: np.ndarray
    scores: np.ndarray


def top_n(
    x: np.ndarray,
    y: np.ndarray,
    n: int,
    *,
    exclude_indptr: np.ndarray | None = None,
    exclude_indices: np.ndarray | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
) -> TopN:
    """The ``n`` best items of each user by ``x @ y.T``, excluded items removed exactly.

    Users with fewer than ``n`` eligible items get all of them. Scores are expected to be finite (a NaN
    factor gives that user an arbitrary or empty list).

    Args:
        x: ``[n_users, rank]`` user vectors (computed in float32).
        y: ``[n_items, rank]`` item vectors (float32; a memory map is read, not copied).
        n: Items kept per user (0 gives empty lists).
        exclude_indptr: ``[n_users + 1]`` offsets into ``exclude_indices`` (CSR); ``None``: nothing excluded.
        exclude_indices: Item rows excluded per user; duplicates are harmless.
        block_bytes: Target size of one block's float32 score matrix (at least one user per block).

    Returns:
        The lists, ordered by score descending then item row ascending.

    Raises:
        ValueError: An argument has the wrong shape, a negative count, or an exclusion out of range.

    Example:
        >>> res = top_n(np.eye(2, dtype=np.float32), np.eye(2, dtype=np.float32), 1)
        >>> res.indptr.tolist(), res.items.tolist()
        ([0, 1, 2], [0, 1])
    """
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x {x.shape} and y {y.shape} must be 2-d with the same rank (columns)")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if block_bytes <= 0:
        raise ValueError(f"block_bytes must be positive, got {block_bytes}")
    indptr, indices = _exclusions(exclude_indptr, exclude_indices, n_users=x.shape[0], n_items=y.shape[0])
    kk = min(n, y.shape[0])
    if kk == 0 or x.shape[0] == 0:
        return TopN(np.zeros(x.shape[0] + 1, dtype=np.int64), np.empty(0, np.int64), np.empty(0, np.float32))
    step = max(1, block_bytes // (4 * y.shape[0]))
    counts, items, scores = [], [], []
    for start in range(0, x.shape[0], step):
        stop = min(start + step, x.shape[0])
        s = x[start:stop] @ y.T
        per_user = np.diff(indptr[start : stop + 1])
        s[np.repeat(np.arange(stop - start), per_user), indices[indptr[start] : indptr[stop]]] = -np.inf
        c, i, v = _block_top(s, kk)
        counts.append(c)
        items.append(i)
        scores.append(v)
    out_ptr = np.zeros(x.shape[0] + 1, dtype=np.int64)
    np.cumsum(np.concatenate(counts), out=out_ptr[1:])
    return TopN(out_ptr, np.concatenate(items), np.concatenate(scores))


def _exclusions(
    indptr: np.ndarray | None, indices: np.ndarray | None, *, n_users: int, n_items: int
) -> tuple[np.ndarray, np.ndarray]:
    if (indptr is None) != (indices is None):
        raise ValueError("exclude_indptr and exclude_indices go together: give both or neither")
    if indptr is None or indices is None:
        return np.zeros(n_users + 1, dtype=np.int64), np.empty(0, dtype=np.int64)
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    if indptr.shape != (n_users + 1,) or indptr[0] != 0 or indptr[-1] != indices.shape[0]:
        raise ValueError(
            f"exclude_indptr must have {n_users + 1} entries from 0 to len(exclude_indices) = "
            f"{indices.shape[0]}, got shape {indptr.shape}"
        )
    if indices.ndim != 1 or (indptr.size > 1 and np.any(np.diff(indptr) < 0)):
        raise ValueError("exclude_indptr must be non-decreasing and exclude_indices 1-d")
    if indices.size and (indices.min() < 0 or indices.max() >= n_items):
        raise ValueError(f"exclude_indices must be item rows in [0, {n_items}), got {indices.min()}..{indices.max()}")
    return indptr, indices


def _block_top(s: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of ``s``: count, item rows and scores of its ``kk`` best finite entries, in list order."""
    n_rows, n_items = s.shape
    threshold = np.full(n_rows, _LOWEST, dtype=np.float32)  # drops only the excluded (-inf) entries
    if kk < n_items:
        # The kk-th largest of (at least kk) group maxima is at most the kk-th largest entry, since those
        # maxima are kk entries at least that large. Entries at or above it are therefore a superset of the
        # row's top kk and all its ties; with 2 * kk groups it holds about 1.4 * kk entries on random scores.
        width = max(1, n_items // (2 * kk))
        maxima = np.fmax.reduceat(s, np.arange(0, n_items, width), axis=1)
        n_groups = maxima.shape[1]
        np.fmax(threshold, np.partition(maxima, n_groups - kk, axis=1)[:, n_groups - kk], out=threshold)
    flat = np.flatnonzero(s >= threshold[:, None])  # flatnonzero: several times faster than 2-d nonzero
    rows, cols = np.divmod(flat, n_items)
    vals = s.ravel()[flat]
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    found = np.bincount(rows, minlength=n_rows)
    within = np.arange(rows.size) - (np.cumsum(found) - found)[rows] < kk
    return np.minimum(found, kk), cols[within].astype(np.int64), vals[within]
