"""The blend on integer codes: numpy arrays in, numpy arrays out, no DataFrame.

:func:`blend_arrays` is the whole of :func:`recsys.blend.blend` (normalise, weight, cold-start ramp, sum,
filter, rank with ties broken on product id, diversify, top ``cfg.top_n``) on candidates already coded as
integers. :func:`recsys.blend.blend` encodes its DataFrames (one ``pd.factorize`` per id column) and calls it;
the API's on-demand path codes one user's candidates itself (a dict of a few hundred ids) and calls it
directly, so no DataFrame is built on the request path. Both give the same lists to the bit (tested in
``tests/recsys/test_blend.py``).

Codes: user and product codes are ``0..n-1`` (``-1`` for NA). The code values themselves do not matter: ties
between equal scores break on the product id (``items[code]``), not on the code, and sums run in input order.

Example:
    >>> from recsys.config import BlendConfig
    >>> out = blend_arrays(
    ...     np.array([0, 0]), np.array([0, 1]), np.array([SOURCES.index("cf"), SOURCES.index("popular")]),
    ...     np.array([0.9, 5.0]), items=np.array(["p1", "p2"], dtype=object),
    ...     listed=np.array([True, True]), category=np.array([0, 1]), counts=np.array([10.0]),
    ...     cfg=BlendConfig())
    >>> out.item.tolist(), out.rank.tolist()
    ([0, 1], [1, 2])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from recsys.config import BlendConfig
from recsys.encoding import SOURCE_BITS

SOURCES: tuple[str, ...] = ("cf", "content", "itemknn", "popular")
COLLABORATIVE: frozenset[str] = frozenset({"cf", "itemknn"})
NORMALIZATIONS: tuple[str, ...] = ("minmax", "rank")
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


def _best_per_source(
    rows: np.ndarray, user: np.ndarray, item: np.ndarray, source: np.ndarray, score: np.ndarray, n_items: int
) -> np.ndarray:
    """``rows`` by score, best first (ties in input order), keeping each (user, product, source) once."""
    rows = rows[np.argsort(-score[rows], kind="stable")]
    key = (user[rows] * (n_items + 1) + item[rows] + 1) * len(SOURCES) + source[rows]
    _, first = np.unique(key, return_index=True)
    return rows[np.sort(first)]


def seen_keys(
    user: np.ndarray,
    item: np.ndarray,
    purchased: np.ndarray,
    viewed: np.ndarray,
    *,
    n_items: int,
    drop_viewed: bool,
) -> np.ndarray:
    """Pair keys ``user * n_items + item`` of the history rows to filter out: purchased (and viewed ones too
    when ``drop_viewed``); rows with a code -1 (not among the candidates) are left out."""
    seen = purchased | viewed if drop_viewed else purchased
    known = seen & (user >= 0) & (item >= 0)
    return user[known] * n_items + item[known]


def _ranking(
    user: np.ndarray, score: np.ndarray, item: np.ndarray, items: np.ndarray, *, ids_sorted: bool = False
) -> np.ndarray:
    """Positions in order of user, score descending, then product id (``items[item]``) for equal scores.

    Ties break on product id so that batch and API give the same order whatever the input order. Product
    ids are compared only where scores tie: sorting every id would cost more than the whole blend. With
    ``ids_sorted`` (item codes in product id order) and rows in (user, item) order, two stable sorts (score,
    then user) keep equal scores in id order without comparing ids.
    """
    if ids_sorted:
        order = np.argsort(-score, kind="stable")
        return order[np.argsort(user[order], kind="stable")]
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
    # same order); only the others go through the greedy pages.
    crowded = _crowded(user, pos, category, cfg)
    plain = np.flatnonzero((pos < top_n) & ~crowded)
    busy = np.flatnonzero(crowded)
    take, rank = _greedy_pages(user[busy], category[busy], cap=cap, size=size, top_n=top_n)
    rows = np.r_[plain, busy[take]]
    ranks = np.r_[pos[plain] + 1, rank]
    shown = np.lexsort((ranks, user[rows]))
    return rows[shown], ranks[shown]


def _greedy_pages(
    user: np.ndarray, category: np.ndarray, *, cap: int, size: int, top_n: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`diversify_order` for every user of a pool at once, one numpy pass per page.

    ``user`` runs are contiguous, each in score order. On a page, the greedy scan places an item while the
    page has room and its category has fewer than ``cap`` items there, so the items placed are the first
    ``room`` of those whose position among the user's remaining items of their category is below ``cap``.
    A user whose page is not filled stops there, as in :func:`diversify_order`.

    Returns:
        Positions into ``user`` of the items shown and their 1-based ranks.
    """
    if not len(user):
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    n_users = int(user.max()) + 1
    n_categories = int(category.max()) + 2  # -1 (unknown) is a category of its own, as in diversify_order
    placed = np.zeros(n_users, dtype=np.int64)
    left = np.arange(len(user))
    take: list[np.ndarray] = []
    rank: list[np.ndarray] = []
    while len(left):
        u = user[left]
        key = u * n_categories + category[left] + 1
        order = np.argsort(key, kind="stable")
        within = np.empty(len(left), dtype=np.int64)
        within[order] = _positions(key[order])
        fits = np.flatnonzero(within < cap)
        # Runs of u stay contiguous, so this is each fitting item's position among its user's fitting items.
        seen = _positions(u[fits])
        room = np.minimum(size, top_n - placed)
        now = seen < room[u[fits]]
        shown = fits[now]
        take.append(left[shown])
        rank.append(placed[u[shown]] + seen[now] + 1)
        filled = np.bincount(u[shown], minlength=n_users)
        go_on = (filled == room) & (placed + filled < top_n)
        placed += filled
        waiting = go_on[u]
        waiting[shown] = False
        left = left[waiting]
    return np.concatenate(take), np.concatenate(rank)


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



class Blended(NamedTuple):
    """The blended lists, ordered by user code then rank: one row per shown (user, product)."""

    user: np.ndarray
    item: np.ndarray
    score: np.ndarray
    sources: np.ndarray
    rank: np.ndarray


def _empty() -> Blended:
    none = np.empty(0, dtype=np.int64)
    return Blended(none, none, np.empty(0, dtype=np.float64), none, none)


def _check_arrays(**arrays: tuple[np.ndarray, int]) -> None:
    for name, (array, size) in arrays.items():
        if array.ndim != 1 or len(array) != size:
            raise ValueError(f"{name} must be a 1-d array of length {size}, got shape {array.shape}")


def blend_arrays(
    user: np.ndarray,
    item: np.ndarray,
    source: np.ndarray,
    score: np.ndarray,
    *,
    items: np.ndarray,
    listed: np.ndarray,
    category: np.ndarray,
    counts: np.ndarray,
    cfg: BlendConfig,
    hist_user: np.ndarray | None = None,
    hist_item: np.ndarray | None = None,
    purchased: np.ndarray | None = None,
    viewed: np.ndarray | None = None,
    ids_sorted: bool = False,
) -> Blended:
    """Blends coded candidates into each user's ranked, filtered and diversified list (see :mod:`recsys.blend`).

    Args:
        user: User code of each candidate row (``0..len(counts)-1``, -1 for NA: the row is ignored).
        item: Product code of each candidate row (``0..len(items)-1``, -1 for NA).
        source: Position of each row's source in :data:`SOURCES`.
        score: Score of each row (float64; non-finite rows are ignored). A repeated (user, product, source)
            keeps its best score.
        items: The product id of each product code; ties between equal blended scores break on it.
        listed: Per product code: in the catalogue and available (False: the product is dropped).
        category: Per product code: category code (any integers, compared for equality), -1 when unknown.
        counts: Per user code: interactions (the cold-start ramp).
        cfg: The ``blend`` configuration.
        hist_user, hist_item: Codes of the history rows (-1: not among the candidates).
        purchased, viewed: Flags of the history rows. The four history arrays go together; omit them all for
            no history.
        ids_sorted: The codes of the listed products are in product id order (``items`` sorted over them),
            as the batch kernel's catalogue rows are: equal scores then rank by code, the same order at a
            fraction of the cost. False (the default) compares the tied ids themselves.

    Returns:
        :class:`Blended`, ordered by user code then rank (1..n, at most ``cfg.top_n`` per user).

    Raises:
        ValueError: Arrays of the wrong length, a source code outside :data:`SOURCES`, or a config value that
            cannot work.
    """
    check_config(cfg)
    n_rows, n_items = len(item), len(items)
    _check_arrays(
        user=(user, n_rows), source=(source, n_rows), score=(score, n_rows), listed=(listed, n_items),
        category=(category, n_items),
    )
    if n_rows and (source.min() < 0 or source.max() >= len(SOURCES)):
        raise ValueError(f"source codes must be 0..{len(SOURCES) - 1} (positions in {', '.join(SOURCES)})")
    history = (hist_user, hist_item, purchased, viewed)
    if hist_user is None or hist_item is None or purchased is None or viewed is None:
        if any(a is not None for a in history):
            raise ValueError("hist_user, hist_item, purchased and viewed go together: give all four or none")
        hist_user = hist_item = np.empty(0, dtype=np.int64)
        purchased = viewed = np.empty(0, dtype=bool)
    n_hist = len(hist_user)
    _check_arrays(hist_item=(hist_item, n_hist), purchased=(purchased, n_hist), viewed=(viewed, n_hist))
    score = score.astype(np.float64, copy=False)
    key_items = max(n_items, 1)
    rows = np.flatnonzero(np.isfinite(score) & (user >= 0))
    if not len(rows):
        return _empty()
    rows = _best_per_source(rows, user, item, source, score, key_items)
    pairs = _score_pairs(
        user[rows], item[rows], source[rows], score[rows], counts=counts, n_items=key_items, cfg=cfg
    )
    seen = seen_keys(hist_user, hist_item, purchased, viewed, n_items=key_items, drop_viewed=cfg.drop_viewed)
    keep = listed[pairs.item] & ~np.isin(pairs.user * key_items + pairs.item, seen)
    pairs = _Pairs(*(column[keep] for column in pairs))
    # The pairs run by user then item code (_score_pairs), as the ids_sorted ranking needs.
    ranked = _ranking(pairs.user, pairs.score, pairs.item, items, ids_sorted=ids_sorted)
    ranked = ranked[_positions(pairs.user[ranked]) < cfg.top_n * POOL_FACTOR]
    shown, rank = _diversify(pairs.user[ranked], category[pairs.item[ranked]], cfg)
    if not len(shown):
        return _empty()
    chosen = ranked[shown]
    return Blended(
        pairs.user[chosen],
        pairs.item[chosen],
        pairs.score[chosen].astype(np.float64),
        pairs.sources[chosen].astype(np.int64),
        rank.astype(np.int64),
    )
