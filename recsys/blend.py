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

The work is done on integer codes (one ``pd.factorize`` per id column, numpy after that), so one user's
call costs well under a millisecond and a batch chunk of thousands of users the same per row. The public
pandas-level steps (:func:`normalize_scores`, :func:`combine`, :func:`apply_filters`) are thin wrappers
over the same coded helpers. Scores are summed per (user, product) as pandas' ``groupby().sum()`` sums them
(input order, Kahan-compensated), so the ties that break on product id are the same ties as before.

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
from typing import NamedTuple

import numpy as np
import pandas as pd

from recsys.config import BlendConfig
from recsys.encoding import SOURCE_BITS
from recsys.schema import COL_AVAILABLE, COL_CATEGORY, COL_ITEM, COL_USER

COL_SOURCE = "source"
COL_SCORE = "score"
COL_SOURCES = "sources"
COL_RANK = "rank"
COL_PURCHASED = "purchased"
COL_VIEWED = "viewed"

SOURCES: tuple[str, ...] = ("cf", "content", "itemknn", "popular")
COLLABORATIVE: frozenset[str] = frozenset({"cf", "itemknn"})
NORMALIZATIONS: tuple[str, ...] = ("minmax", "rank")
OUTPUT_COLUMNS: tuple[str, ...] = (COL_USER, COL_ITEM, COL_SCORE, COL_SOURCES, COL_RANK)
CANDIDATE_COLUMNS: tuple[str, ...] = (COL_USER, COL_ITEM, COL_SOURCE, COL_SCORE)
HISTORY_COLUMNS: tuple[str, ...] = (COL_USER, COL_ITEM, COL_PURCHASED, COL_VIEWED)
PRODUCT_COLUMNS: tuple[str, ...] = (COL_ITEM, COL_CATEGORY, COL_AVAILABLE)
# The diversity pass sees at most this many of a user's best candidates per top_n item: enough to refill the
# pages from other categories, few enough that the greedy pass stays a few hundred steps.
POOL_FACTOR = 3


def source_weights(cfg: BlendConfig) -> dict[str, float]:
    """The configured weight of each candidate source."""
    return {
        "cf": cfg.weight_cf,
        "content": cfg.weight_content,
        "itemknn": cfg.weight_itemknn,
        "popular": cfg.weight_popular,
    }


def check_config(cfg: BlendConfig) -> None:
    """Raises ``ValueError`` naming the ``blend`` key whose value cannot work."""
    if cfg.normalization not in NORMALIZATIONS:
        raise ValueError(
            f"blend.normalization must be one of {', '.join(NORMALIZATIONS)}, got {cfg.normalization!r}"
        )
    for name, weight in source_weights(cfg).items():
        if not np.isfinite(weight) or weight < 0:
            raise ValueError(f"blend.weight_{name} must be a finite number >= 0, got {weight}")
    for key in ("top_n", "page_size"):
        if getattr(cfg, key) < 1:
            raise ValueError(f"blend.{key} must be >= 1, got {getattr(cfg, key)}")


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


def _cold_start(n: np.ndarray, min_interactions: int) -> np.ndarray:
    if min_interactions <= 0:
        return np.ones(len(n))
    return np.clip(n / float(min_interactions), 0.0, 1.0)


def _minmax(group: np.ndarray, score: np.ndarray, n_groups: int) -> np.ndarray:
    """Min-max per group; 1.0 where the group ties or is NA (``group`` -1); NaN scores ignored, as pandas."""
    slot = np.where(group >= 0, group, n_groups)
    lo = np.full(n_groups + 1, np.inf)
    hi = np.full(n_groups + 1, -np.inf)
    np.fmin.at(lo, slot, score)
    np.fmax.at(hi, slot, score)
    lo[n_groups] = hi[n_groups] = np.nan
    span = (hi - lo)[slot]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        norm = (score - lo[slot]) / span
        return np.where(span > 0, norm, 1.0)


def _rank_desc(group: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Rank inside each group, best first, ties sharing the lowest (pandas ``method="min"``); NaN for NA."""
    rows = np.flatnonzero((group >= 0) & ~np.isnan(score))
    rows = rows[np.lexsort((-score[rows], group[rows]))]
    g, s = group[rows], score[rows]
    at = np.arange(len(rows))
    new_group = np.r_[True, g[1:] != g[:-1]]
    new_value = new_group | np.r_[True, s[1:] != s[:-1]]
    group_start = np.maximum.accumulate(np.where(new_group, at, 0))
    value_start = np.maximum.accumulate(np.where(new_value, at, 0))
    rank = np.full(len(group), np.nan)
    rank[rows] = value_start - group_start + 1
    return rank


def _normalize(group: np.ndarray, score: np.ndarray, n_groups: int, method: str) -> np.ndarray:
    if method == "minmax":
        return _minmax(group, score, n_groups)
    if method == "rank":
        return 1.0 / np.log2(1.0 + _rank_desc(group, score))
    raise ValueError(f"method must be one of {', '.join(NORMALIZATIONS)}, got {method!r}")


def _kahan_sums(label: np.ndarray, at: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """Per-label sums exactly as pandas' ``groupby().sum()``: row order, Kahan-compensated, NaN skipped.

    ``at`` is each row's position among its label's rows. Summing the same terms in another order can change
    the last bit, and with it the order of two items whose scores tie: the batch and the API must agree to
    the bit, so the compensation and the order are kept.
    """
    total = np.zeros(n_groups)
    comp = np.zeros(n_groups)
    for k in range(int(at.max()) + 1 if len(at) else 0):
        step = (at == k) & ~np.isnan(values)
        lab, val = label[step], values[step]
        y = val - comp[lab]
        t = total[lab] + y
        c = t - total[lab] - y
        # An infinite term makes the compensation NaN; pandas resets it so the sum stays infinite.
        comp[lab] = np.where(np.isnan(c), 0.0, c)
        total[lab] = t
    return total


def _positions(keys: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... inside each run of equal consecutive ``keys``."""
    n = len(keys)
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if n else np.empty(0, dtype=np.int64)
    return np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))


class _Pairs(NamedTuple):
    """One entry per (user, product): codes, blended score, sources bits, first candidate row."""

    user: np.ndarray
    item: np.ndarray
    score: np.ndarray
    sources: np.ndarray
    first: np.ndarray


def _score_pairs(
    user: np.ndarray,
    item: np.ndarray,
    source: np.ndarray,
    score: np.ndarray,
    *,
    counts: np.ndarray,
    n_items: int,
    cfg: BlendConfig,
) -> _Pairs:
    """Normalises, weights and sums coded candidates per (user, product), in (user, product) code order.

    Rows with an NA code (-1) count in the normalisation of their group but make no pair, as in pandas.
    """
    group = np.where(user >= 0, user * len(SOURCES) + source, -1)
    norm = _normalize(group, score, len(counts) * len(SOURCES), cfg.normalization)
    weights = np.array([source_weights(cfg)[s] for s in SOURCES], dtype=np.float64)
    collaborative = np.array([s in COLLABORATIVE for s in SOURCES])
    # The extra last entry serves the NA user code -1 (its rows make no pair).
    ramp = np.append(_cold_start(counts, cfg.cold_start_min_interactions), 1.0)[user]
    part = norm * weights[source] * np.where(collaborative[source], ramp, 1.0)
    bits = np.array([SOURCE_BITS[s] for s in SOURCES], dtype=np.int64)[source]
    rows = np.flatnonzero((user >= 0) & (item >= 0))
    key = user[rows] * n_items + item[rows]
    # A stable sort keeps each pair's rows in input order: the order pandas sums them in.
    rows = rows[np.argsort(key, kind="stable")]
    key = user[rows] * n_items + item[rows]
    start = np.r_[True, key[1:] != key[:-1]] if len(key) else np.zeros(0, dtype=bool)
    label = np.cumsum(start) - 1
    n_pairs = int(start.sum())
    total = _kahan_sums(label, _positions(key), part[rows], n_pairs)
    # One row per (user, product, source) after deduplication, so the sum of the bits is their OR.
    sources = np.bincount(label, weights=bits[rows], minlength=n_pairs).astype(np.int64)
    keys = key[start]
    return _Pairs(keys // n_items, keys % n_items, total, sources, rows[start])


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
    seen = _flag(history[COL_PURCHASED])
    if drop_viewed:
        seen = seen | _flag(history[COL_VIEWED])
    known = seen & (user >= 0) & (item >= 0)
    return user[known] * n_items + item[known]


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


def _ranking(user: np.ndarray, score: np.ndarray, item: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Positions in order of user, score descending, then product id (``items[item]``) for equal scores.

    Ties break on product id so that batch and API give the same order whatever the input order. Product
    ids are compared only where scores tie: sorting every id would cost more than the whole blend.
    """
    order = np.lexsort((-score, user))
    u, s = user[order], score[order]
    tie = (u[1:] == u[:-1]) & (s[1:] == s[:-1])
    if not tie.any():
        return order
    tied = np.unique(item[order[np.r_[tie, False] | np.r_[False, tie]]])
    rank = np.zeros(len(items), dtype=np.int64)
    try:
        rank[tied[np.argsort(items[tied], kind="stable")]] = np.arange(len(tied))
    except TypeError:  # ids of mixed types: pandas' own ordering of them
        rank[tied] = pd.factorize(items[tied], sort=True)[0]
    return np.lexsort((rank[item], -score, user))


def _crowded(user: np.ndarray, pos: np.ndarray, category: np.ndarray, cfg: BlendConfig) -> np.ndarray:
    """Per row: does the row's user have a page of its plain top_n over the category cap (NA not counted)?"""
    head = np.flatnonzero((pos < cfg.top_n) & (category >= 0))
    if not len(head):
        return np.zeros(len(user), dtype=bool)
    n_pages = cfg.top_n // cfg.page_size + 1
    n_categories = int(category.max()) + 1
    key = (user[head] * n_pages + pos[head] // cfg.page_size) * n_categories + category[head]
    keys, sizes = np.unique(key, return_counts=True)
    return np.isin(user, keys[sizes > cfg.max_per_category] // (n_pages * n_categories))


def _diversify(user: np.ndarray, category: np.ndarray, cfg: BlendConfig) -> tuple[np.ndarray, np.ndarray]:
    """Rows to show and their ranks, per user, for a pool sorted by user then score (best first)."""
    cap, size, top_n = cfg.max_per_category, cfg.page_size, cfg.top_n
    pos = _positions(user)
    if cap <= 0 or cap >= size:
        rows = np.flatnonzero(pos < top_n)
        return rows, pos[rows] + 1
    # A user whose plain top_n already respects the cap keeps it as it is (the greedy pass would return the
    # same order); only the others run the per-user loop, each over its contiguous slice of the pool.
    crowded = _crowded(user, pos, category, cfg)
    plain = np.flatnonzero((pos < top_n) & ~crowded)
    busy = np.flatnonzero(crowded)
    cuts = np.flatnonzero(np.diff(user[busy])) + 1
    codes = category[busy].tolist()
    take: list[int] = []
    rank: list[int] = []
    for start, end in zip(np.r_[0, cuts].tolist(), np.r_[cuts, len(busy)].tolist(), strict=True):
        order = diversify_order(codes[start:end], page_size=size, max_per_category=cap, top_n=top_n)
        take.extend(busy[start] + i for i in order)
        rank.extend(range(1, len(order) + 1))
    rows = np.r_[plain, np.array(take, dtype=np.int64)]
    ranks = np.r_[pos[plain] + 1, np.array(rank, dtype=np.int64)]
    shown = np.lexsort((ranks, user[rows]))
    return rows[shown], ranks[shown]


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


def diversify_order(
    categories: Sequence[object], *, page_size: int, max_per_category: int, top_n: int
) -> list[int]:
    """The positions of a score-sorted list to keep, in display order, under the per-page category cap.

    Greedy, page by page: scan the not-yet-placed items in score order and place each one whose category has
    fewer than ``max_per_category`` items on the current page, until the page holds ``page_size`` items; the
    items skipped wait for the next page (where they come first, being better). When a page cannot be filled
    without breaking the cap, the list ends there: every later position would be on that same page. The cost
    is O(pool x pages), a few thousand steps for a pool of 300 and 5 pages. A cap of 0 or one at least the
    page size disables the rule.

    Args:
        categories: The category of each item, best item first.
        page_size: Positions per page.
        max_per_category: The most items of one category on a page.
        top_n: The most items kept.

    Returns:
        Indexes into ``categories`` in display order.

    Example:
        >>> diversify_order(["a", "a", "a", "b"], page_size=2, max_per_category=1, top_n=4)
        [0, 3, 1]
    """
    n = len(categories)
    if max_per_category <= 0 or max_per_category >= page_size:
        return list(range(min(n, top_n)))
    remaining = list(range(n))
    order: list[int] = []
    while remaining and len(order) < top_n:
        room = min(page_size, top_n - len(order))
        counts: dict[object, int] = {}
        page: list[int] = []
        rest: list[int] = []
        for idx in remaining:
            cat = categories[idx]
            if len(page) < room and counts.get(cat, 0) < max_per_category:
                counts[cat] = counts.get(cat, 0) + 1
                page.append(idx)
            else:
                rest.append(idx)
        order.extend(page)
        if len(page) < room:
            break
        remaining = rest
    return order


def _best_per_source(
    rows: np.ndarray, user: np.ndarray, item: np.ndarray, source: np.ndarray, score: np.ndarray, n_items: int
) -> np.ndarray:
    """``rows`` by score, best first (ties in input order), keeping each (user, product, source) once."""
    rows = rows[np.argsort(-score[rows], kind="stable")]
    key = (user[rows] * (n_items + 1) + item[rows] + 1) * len(SOURCES) + source[rows]
    _, first = np.unique(key, return_index=True)
    return rows[np.sort(first)]


def _result(users: np.ndarray, items: np.ndarray, pairs: _Pairs, rank: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            COL_USER: users[pairs.user],
            COL_ITEM: items[pairs.item],
            COL_SCORE: pairs.score.astype(np.float64),
            COL_SOURCES: pairs.sources.astype(np.int64),
            COL_RANK: rank.astype(np.int64),
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
    n_items = max(len(items), 1)
    rows = np.flatnonzero(np.isfinite(score) & (user >= 0))
    if not len(rows):
        return empty_result()
    rows = _best_per_source(rows, user, item, source, score, n_items)
    pairs = _score_pairs(
        user[rows],
        item[rows],
        source[rows],
        score[rows],
        counts=_interaction_counts(n_interactions, users),
        n_items=n_items,
        cfg=cfg,
    )
    row, category = _catalogue(products, prod_item, n_items)
    seen = _seen(history, hist_user, hist_item, n_items, cfg.drop_viewed)
    keep = (row[pairs.item] >= 0) & ~np.isin(pairs.user * n_items + pairs.item, seen)
    pairs = _Pairs(*(column[keep] for column in pairs))
    ranked = _ranking(pairs.user, pairs.score, pairs.item, items)
    ranked = ranked[_positions(pairs.user[ranked]) < cfg.top_n * POOL_FACTOR]
    shown, rank = _diversify(pairs.user[ranked], category[pairs.item[ranked]], cfg)
    if not len(shown):
        return empty_result()
    return _result(users, items, _Pairs(*(column[ranked[shown]] for column in pairs)), rank)
