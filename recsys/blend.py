"""The hybrid blend: one Spark-free function shared by the batch job and the API's on-demand path.

:func:`blend` turns per-source candidates into one ranked, filtered and diversified list per user:

1. **Normalise** each source's scores per user (``cfg.normalization``):

   - ``minmax`` (default): ``(s - min) / (max - min)`` over the user's candidates from that source, 1.0 when
     they all tie. The sources live on unrelated scales (ALS dot products, cosines, co-occurrence sums,
     decayed event counts) and on scales that differ between users (an active user's ALS scores are larger),
     so each is mapped to [0, 1] per user; min-max keeps the score gaps inside a source, which rank-based
     normalisation throws away, and is the CombSUM/CombMNZ normalisation of the fusion literature.
   - ``rank``: ``1 / log2(1 + r)`` with ``r`` the rank inside the source (the DCG discount): robust to
     outliers, blind to gaps.

2. **Combine** with the weights of ``cfg`` (``weight_cf``, ``weight_content``, ``weight_itemknn``,
   ``weight_popular``): ``score = sum_s w_s * norm_s`` over the sources that proposed the item (a source that
   did not propose it adds 0). **Cold start**: for a user with ``n`` interactions, ``n <
   cold_start_min_interactions``, the collaborative weights (cf, itemknn) are scaled by
   ``n / cold_start_min_interactions``, so a new user leans on content and popularity and moves smoothly to
   the full blend (a user with no interaction at all gets content and popularity only).
3. **Filter**: drop products the user purchased (and merely viewed ones when ``cfg.drop_viewed``), products
   marked unavailable, and products absent from ``products`` (nothing to show for them).
4. **Diversify** (:func:`diversify_order`): pages of ``page_size`` positions hold at most
   ``max_per_category`` products of one category.
5. Keep the top ``cfg.top_n`` with the score and the sources bitmask (:data:`recsys.encoding.SOURCE_BITS`),
   which makes every answer explainable.

The work is done on integer codes (one ``pd.factorize`` per id column, then
:func:`recsys.blend_arrays.blend_arrays`, numpy only), so one user's call costs well under a millisecond and a
batch chunk of thousands of users the same per row. The API's on-demand path calls ``blend_arrays`` directly
with its own codes and builds no DataFrame. The public pandas-level steps (:func:`normalize_scores`,
:func:`combine`, :func:`apply_filters`) are thin wrappers over the same coded helpers. Scores are summed per
(user, product) as pandas' ``groupby().sum()`` sums them (input order, Kahan-compensated), so the ties that
break on product id are the same ties as before.

Example:
    >>> import pandas as pd
    >>> from recsys.config import BlendConfig
    >>> cands = pd.DataFrame({"user_id": ["u1", "u1"], "product_id": ["p1", "p2"],
    ...                       "source": ["cf", "popular"], "score": [0.9, 5.0]})
    >>> hist = pd.DataFrame(columns=["user_id", "product_id", "purchased", "viewed"])
    >>> prods = pd.DataFrame({"product_id": ["p1", "p2"], "category": ["a", "b"], "available": [True, True]})
    >>> out = blend(cands, history=hist, products=prods, n_interactions={"u1": 10}, cfg=BlendConfig())
    >>> out["product_id"].tolist()
    ['p1', 'p2']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from recsys.blend_arrays import (
    COLLABORATIVE,
    NORMALIZATIONS,
    POOL_FACTOR,
    SOURCES,
    Blended,
    _cold_start,
    _normalize,
    _Pairs,
    _score_pairs,
    blend_arrays,
    check_config,
    diversify_order,
    seen_keys,
    source_weights,
)
from recsys.config import BlendConfig
from recsys.schema import COL_AVAILABLE, COL_CATEGORY, COL_ITEM, COL_USER

COL_SOURCE = "source"
COL_SCORE = "score"
COL_SOURCES = "sources"
COL_RANK = "rank"
COL_PURCHASED = "purchased"
COL_VIEWED = "viewed"

OUTPUT_COLUMNS: tuple[str, ...] = (COL_USER, COL_ITEM, COL_SCORE, COL_SOURCES, COL_RANK)
CANDIDATE_COLUMNS: tuple[str, ...] = (COL_USER, COL_ITEM, COL_SOURCE, COL_SCORE)
HISTORY_COLUMNS: tuple[str, ...] = (COL_USER, COL_ITEM, COL_PURCHASED, COL_VIEWED)
PRODUCT_COLUMNS: tuple[str, ...] = (COL_ITEM, COL_CATEGORY, COL_AVAILABLE)
__all__ = [
    "COLLABORATIVE",
    "NORMALIZATIONS",
    "POOL_FACTOR",
    "SOURCES",
    "apply_filters",
    "blend",
    "check_config",
    "cold_start_factor",
    "combine",
    "diversify_order",
    "empty_result",
    "normalize_scores",
    "source_weights",
]


def _require(frame: pd.DataFrame, name: str, columns: Sequence[str]) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{name} is missing column(s) {', '.join(missing)} (has {', '.join(map(str, frame.columns))})"
        )


def empty_result() -> pd.DataFrame:
    """A result with no rows and the output columns and dtypes."""
    return pd.DataFrame(
        {
            COL_USER: pd.Series(dtype=object),
            COL_ITEM: pd.Series(dtype=object),
            COL_SCORE: pd.Series(dtype="float64"),
            COL_SOURCES: pd.Series(dtype="int64"),
            COL_RANK: pd.Series(dtype="int64"),
        }
    )


def _encode(
    first: pd.Series, *others: pd.Series, na_as_value: bool = False
) -> tuple[list[np.ndarray], np.ndarray]:
    """Integer codes of the values of ``first`` and of ``others``, with one hash table for all of them.

    Returns:
        The codes of each column (``first``'s values get 0..k-1 by first appearance; a value of ``others``
        that ``first`` lacks, and NA unless ``na_as_value``, gets -1) and the k distinct values of ``first``.
    """
    values = [column.to_numpy() for column in (first, *others)]
    joined = np.concatenate(values) if others else values[0]
    codes, uniques = pd.factorize(joined, use_na_sentinel=not na_as_value)
    parts = np.split(codes.astype(np.int64, copy=False), np.cumsum([len(v) for v in values])[:-1])
    k = int(parts[0].max()) + 1 if len(parts[0]) else 0
    distinct = np.asarray(uniques[:k])
    if distinct.dtype != values[0].dtype and values[0].dtype != object:
        distinct = distinct.astype(values[0].dtype)
    return [parts[0]] + [np.where(part < k, part, -1) for part in parts[1:]], distinct


def _sort_codes(codes: list[np.ndarray], distinct: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Relabels :func:`_encode` codes so that they follow the order ``sort_values`` gives the values."""
    if len(distinct) <= 1:
        return codes, distinct
    rank, ordered = pd.factorize(distinct, sort=True)
    return [np.where(c >= 0, rank[c], -1) for c in codes], np.asarray(ordered)


def _source_codes(source: pd.Series) -> np.ndarray:
    """The position of each row's source in :data:`SOURCES`; raises ``ValueError`` naming unknown ones."""
    codes, uniques = pd.factorize(source)
    unknown = set(uniques) - set(SOURCES)
    if unknown or (codes < 0).any():
        unknown = set(source.unique()) - set(SOURCES)
        raise ValueError(
            f"candidates.source has unknown value(s) {sorted(map(str, unknown))} "
            f"(known: {', '.join(SOURCES)})"
        )
    lookup = np.array([SOURCES.index(s) for s in uniques], dtype=np.int64)
    return lookup[codes]


def _interaction_counts(n_interactions: Mapping[str, int] | pd.Series, users: np.ndarray) -> np.ndarray:
    """Interactions of each of ``users`` as floats, 0 for a missing user (or a missing value)."""
    if isinstance(n_interactions, pd.Series):
        found = pd.Series(users, dtype=object).map(n_interactions).fillna(0).astype("float64").to_numpy()
    elif isinstance(n_interactions, Mapping):
        found = np.array([n_interactions.get(u) for u in users.tolist()], dtype=np.float64)
    else:
        raise TypeError(
            f"n_interactions must be a mapping or a pandas Series, got {type(n_interactions).__name__}"
        )
    return np.where(np.isnan(found), 0.0, found)


def _flag(column: pd.Series) -> np.ndarray:
    if column.dtype == bool:
        return column.to_numpy()
    return column.fillna(False).astype(bool).to_numpy()


def _seen(
    history: pd.DataFrame, user: np.ndarray, item: np.ndarray, n_items: int, drop_viewed: bool
) -> np.ndarray:
    """Pair keys ``user * n_items + item`` of the purchased (and, if ``drop_viewed``, viewed) history rows.

    ``user`` and ``item`` are the codes of the history rows (-1: not among the candidates).
    """
    viewed = _flag(history[COL_VIEWED]) if drop_viewed else np.zeros(len(history), dtype=bool)
    return seen_keys(
        user, item, _flag(history[COL_PURCHASED]), viewed, n_items=n_items, drop_viewed=drop_viewed
    )


def _catalogue(products: pd.DataFrame, item: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Per product code: the row of ``products`` that describes it, and that row's category code.

    ``item`` holds the codes of the rows of ``products``. A product's last row wins; the row is -1 when the
    product is absent or unavailable, the category code -1 when the row is, or the category is missing.
    """
    listed = np.flatnonzero(item >= 0)[::-1]
    found, first = np.unique(item[listed], return_index=True)
    last = listed[first]
    available = _flag(products[COL_AVAILABLE])[last]
    row = np.full(n_items, -1, dtype=np.int64)
    row[found[available]] = last[available]
    category = pd.factorize(products[COL_CATEGORY].to_numpy())[0].astype(np.int64)
    return row, np.append(category, -1)[row]


def normalize_scores(candidates: pd.DataFrame, *, method: str) -> pd.Series:
    """Per (user, source) normalisation of ``score`` to [0, 1]; see the module docstring for the methods.

    Example:
        >>> df = pd.DataFrame({"user_id": ["u", "u"], "source": ["cf", "cf"], "score": [2.0, 4.0]})
        >>> normalize_scores(df, method="minmax").tolist()
        [0.0, 1.0]
    """
    (user,), users = _encode(candidates[COL_USER])
    (source,), sources = _encode(candidates[COL_SOURCE])
    group = np.where((user >= 0) & (source >= 0), user * len(sources) + source, -1)
    score = candidates[COL_SCORE].astype("float64").to_numpy()
    norm = _normalize(group, score, len(users) * len(sources), method)
    return pd.Series(norm, index=candidates.index, name=COL_SCORE, dtype="float64")


def cold_start_factor(n: pd.Series, min_interactions: int) -> pd.Series:
    """Scale of the collaborative weights for users with ``n`` interactions: ``clip(n / min, 0, 1)``."""
    if min_interactions <= 0:
        return pd.Series(1.0, index=n.index)
    factor = _cold_start(n.astype("float64").to_numpy(), min_interactions)
    return pd.Series(factor, index=n.index, name=n.name)


def combine(candidates: pd.DataFrame, *, n_interactions: pd.Series, cfg: BlendConfig) -> pd.DataFrame:
    """Normalises and weights the candidates and sums them per (user, product).

    Returns:
        ``user_id, product_id, score, sources`` (one row per pair; sources the OR of the proposing sources).
    """
    source = _source_codes(candidates[COL_SOURCE])
    (user,), users = _encode(candidates[COL_USER])
    (item,), items = _encode(candidates[COL_ITEM])
    pairs = _score_pairs(
        user,
        item,
        source,
        candidates[COL_SCORE].astype("float64").to_numpy(),
        counts=_interaction_counts(n_interactions, users),
        n_items=max(len(items), 1),
        cfg=cfg,
    )
    # In order of first appearance, as ``groupby(sort=False)``.
    pairs = _Pairs(*(column[np.argsort(pairs.first, kind="stable")] for column in pairs))
    return pd.DataFrame(
        {
            COL_USER: users[pairs.user],
            COL_ITEM: items[pairs.item],
            COL_SCORE: pairs.score,
            COL_SOURCES: pairs.sources,
        }
    )


def apply_filters(
    scored: pd.DataFrame, *, history: pd.DataFrame, products: pd.DataFrame, drop_viewed: bool
) -> pd.DataFrame:
    """Drops purchased (and, when ``drop_viewed``, viewed) products and unavailable or unknown products.

    Returns:
        ``scored`` restricted to the kept rows with the product's ``category`` added.
    """
    (user, hist_user), _ = _encode(scored[COL_USER], history[COL_USER], na_as_value=True)
    (item, prod_item, hist_item), items = _encode(
        scored[COL_ITEM], products[COL_ITEM], history[COL_ITEM], na_as_value=True
    )
    n_items = max(len(items), 1)
    row, _ = _catalogue(products, prod_item, len(items))
    keep = ~np.isin(user * n_items + item, _seen(history, hist_user, hist_item, n_items, drop_viewed))
    keep &= row[item] >= 0
    kept = scored[keep].reset_index(drop=True)
    category = products[COL_CATEGORY].take(row[item[keep]]).reset_index(drop=True)
    return kept.assign(**{COL_CATEGORY: category})


def _result(users: np.ndarray, items: np.ndarray, out: Blended) -> pd.DataFrame:
    return pd.DataFrame(
        {
            COL_USER: users[out.user],
            COL_ITEM: items[out.item],
            COL_SCORE: out.score,
            COL_SOURCES: out.sources,
            COL_RANK: out.rank,
        }
    )


def blend(
    candidates: pd.DataFrame,
    *,
    history: pd.DataFrame,
    products: pd.DataFrame,
    n_interactions: Mapping[str, int] | pd.Series,
    cfg: BlendConfig,
) -> pd.DataFrame:
    """Blends per-source candidates into the final ranked list of each user (see the module docstring).

    Args:
        candidates: ``user_id, product_id, source, score``; source one of :data:`SOURCES`. A repeated
            (user, product, source) keeps its best score.
        history: ``user_id, product_id, purchased, viewed`` (bools): the pairs to filter out.
        products: ``product_id, category, available``; candidates missing here are dropped.
        n_interactions: Interactions per user (for the cold-start weighting); a missing user counts 0.
        cfg: The ``blend`` configuration.

    Returns:
        ``user_id, product_id, score, sources, rank``: per user at most ``cfg.top_n`` rows in display order
        (rank 1..n); users whose every candidate was filtered out have no rows.

    Raises:
        ValueError: A frame lacks a column, a source is unknown, or a config value cannot work.

    Example:
        >>> blend(cands, history=hist, products=prods, n_interactions={"u1": 10}, cfg=BlendConfig())
    """
    check_config(cfg)
    _require(candidates, "candidates", CANDIDATE_COLUMNS)
    _require(history, "history", HISTORY_COLUMNS)
    _require(products, "products", PRODUCT_COLUMNS)
    if not isinstance(n_interactions, (pd.Series, Mapping)):
        raise TypeError(
            f"n_interactions must be a mapping or a pandas Series, got {type(n_interactions).__name__}"
        )
    source = _source_codes(candidates[COL_SOURCE])
    score = candidates[COL_SCORE].to_numpy()
    if score.dtype != np.float64:
        score = candidates[COL_SCORE].astype("float64").to_numpy()
    (user, hist_user), users = _sort_codes(*_encode(candidates[COL_USER], history[COL_USER]))
    (item, prod_item, hist_item), items = _encode(candidates[COL_ITEM], products[COL_ITEM], history[COL_ITEM])
    row, category = _catalogue(products, prod_item, max(len(items), 1))
    out = blend_arrays(
        user,
        item,
        source,
        score,
        items=items,
        listed=row[: len(items)] >= 0,
        category=category[: len(items)],
        counts=_interaction_counts(n_interactions, users),
        cfg=cfg,
        hist_user=hist_user,
        hist_item=hist_item,
        purchased=_flag(history[COL_PURCHASED]),
        viewed=_flag(history[COL_VIEWED]),
    )
    if not len(out.rank):
        return empty_result()
    return _result(users, items, out)
