"""ALS fold-in: a user's vector from their interactions against fixed item factors (Hu, Koren, Volinsky 2008).

Spark MLlib's implicit ALS solves, for each user u with observed items I_u and ratings r_ui,

    (Y^T Y + Y_u^T (C_u - I) Y_u + lambda * n_u * I) x_u = Y_u^T C_u p_u

with confidence ``c_ui = 1 + alpha * |r_ui|``, preference ``p_ui = 1 if r_ui > 0 else 0`` and the
regularisation scaled by ``n_u``, the count of positive ratings (Spark's ALS-WR weighting). Using the
precomputed Gram matrix ``Y^T Y`` makes one solve cost O(|I_u| k^2 + k^3), independent of the catalogue size.
"""

from __future__ import annotations

import numpy as np


def fold_in(
    item_factors: np.ndarray,
    gram: np.ndarray,
    item_rows: np.ndarray,
    ratings: np.ndarray,
    *,
    reg_param: float,
    alpha: float,
) -> np.ndarray:
    """Solves for one user's factor vector as Spark's implicit ALS would in its user step.

    Args:
        item_factors: ``[n_items, k]`` item factors (may be a memory map).
        gram: ``[k, k]`` Gram matrix ``item_factors.T @ item_factors``.
        item_rows: Row indexes (into ``item_factors``) of the items the user interacted with.
        ratings: The user's rating (confidence input) for each of ``item_rows``.
        reg_param: ALS ``regParam``.
        alpha: ALS ``alpha``.

    Returns:
        The ``[k]`` user vector; zeros when the user has no ratings.

    Example:
        >>> x = fold_in(Y, Y.T @ Y, np.array([0, 3]), np.array([1.0, 1.0]), reg_param=0.1, alpha=1.0)
    """
    item_rows = np.asarray(item_rows, dtype=np.int64)
    ratings = np.asarray(ratings, dtype=np.float64)
    if item_rows.shape != ratings.shape:
        raise ValueError(f"item_rows {item_rows.shape} and ratings {ratings.shape} differ in shape")
    k = gram.shape[0]
    if item_rows.size == 0:
        return np.zeros(k)
    yu = np.asarray(item_factors[item_rows], dtype=np.float64)
    conf = 1.0 + alpha * np.abs(ratings)
    pref = (ratings > 0).astype(np.float64)
    a = gram + (yu.T * (conf - 1.0)) @ yu + reg_param * float(pref.sum()) * np.eye(k)
    b = yu.T @ (conf * pref)
    return np.linalg.solve(a, b)
