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


def normalize_scores(candidates: pd.DataFrame, *, method: str) -> pd.Series:
    """Per (user, source) normalisation of ``score`` to [0, 1]; see the module docstring for the methods.

    Example:
        >>> df = pd.DataFrame({"user_id": ["u", "u"], "source": ["cf", "cf"], "score": [2.0, 4.0]})
        >>> normalize_scores(df, method="minmax").tolist()
        [0.0, 1.0]
    """
    groups = candidates.groupby([COL_USER, COL_SOURCE], sort=False)[COL_SCORE]
    if method == "minmax":
        lo = groups.transform("min")
        span = groups.transform("max") - lo
        with np.errstate(invalid="ignore", divide="ignore"):
            norm = (candidates[COL_SCORE] - lo) / span
        return norm.where(span > 0, 1.0).astype("float64")
    if method == "rank":
        rank = groups.rank(method="min", ascending=False)
        return (1.0 / np.log2(1.0 + rank)).astype("float64")
    raise ValueError(f"method must be one of {', '.join(NORMALIZATIONS)}, got {method!r}")


def cold_start_factor(n: pd.Series, min_interactions: int) -> pd.Series:
    """Scale of the collaborative weights for users with ``n`` interactions: ``clip(n / min, 0, 1)``."""
    if min_interactions <= 0:
        return pd.Series(1.0, index=n.index)
    return (n.astype("float64") / float(min_interactions)).clip(0.0, 1.0)


def combine(candidates: pd.DataFrame, *, n_interactions: pd.Series, cfg: BlendConfig) -> pd.DataFrame:
    """Normalises and weights the candidates and sums them per (user, product).

    Returns:
        ``user_id, product_id, score, sources`` (one row per pair; sources the OR of the proposing sources).
    """
    norm = normalize_scores(candidates, method=cfg.normalization)
    weights = candidates[COL_SOURCE].map(source_weights(cfg)).astype("float64")
    n = candidates[COL_USER].map(n_interactions).fillna(0)
    collaborative = candidates[COL_SOURCE].isin(COLLABORATIVE)
    factor = cold_start_factor(n, cfg.cold_start_min_interactions).where(collaborative, 1.0)
    parts = pd.DataFrame(
        {
            COL_USER: candidates[COL_USER].to_numpy(),
            COL_ITEM: candidates[COL_ITEM].to_numpy(),
            COL_SCORE: (norm * weights * factor).to_numpy(),
            # One row per (user, product, source) after deduplication, so the sum of the bits is their OR.
            COL_SOURCES: candidates[COL_SOURCE].map(SOURCE_BITS).astype("int64").to_numpy(),
        }
    )
    return parts.groupby([COL_USER, COL_ITEM], as_index=False, sort=False).agg(
        {COL_SCORE: "sum", COL_SOURCES: "sum"}
    )


def apply_filters(
    scored: pd.DataFrame, *, history: pd.DataFrame, products: pd.DataFrame, drop_viewed: bool
) -> pd.DataFrame:
    """Drops purchased (and, when ``drop_viewed``, viewed) products and unavailable or unknown products.

    Returns:
        ``scored`` restricted to the kept rows with the product's ``category`` added.
    """
    hist = history[list(HISTORY_COLUMNS)]
    seen = hist[COL_PURCHASED].fillna(False).astype(bool)
    if drop_viewed:
        seen = seen | hist[COL_VIEWED].fillna(False).astype(bool)
    drop = hist.loc[seen, [COL_USER, COL_ITEM]].drop_duplicates()
    if len(drop):
        marked = scored.merge(drop.assign(_drop=True), on=[COL_USER, COL_ITEM], how="left")
        scored = marked[marked["_drop"].isna()].drop(columns="_drop")
    catalogue = products[list(PRODUCT_COLUMNS)].drop_duplicates(COL_ITEM, keep="last")
    catalogue = catalogue[catalogue[COL_AVAILABLE].fillna(False).astype(bool)]
    return scored.merge(catalogue[[COL_ITEM, COL_CATEGORY]], on=COL_ITEM, how="inner")


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


def _diversify(ranked: pd.DataFrame, cfg: BlendConfig) -> pd.DataFrame:
    """Applies :func:`diversify_order` per user; ``ranked`` is sorted by user, then score descending."""
    cap, size, top_n = cfg.max_per_category, cfg.page_size, cfg.top_n
    pos = ranked.groupby(COL_USER, sort=False).cumcount().to_numpy()
    if cap <= 0 or cap >= size:
        return ranked[pos < top_n]
    # Fast path: a user whose plain top_n already respects the cap keeps it as it is (the greedy pass
    # would return the same order); only the others run the per-user loop.
    head = ranked[pos < top_n]
    page = pos[pos < top_n] // size
    per_page = head.groupby(
        [head[COL_USER].to_numpy(), page, head[COL_CATEGORY].to_numpy()], sort=False
    ).size()
    crowded = set(per_page[per_page > cap].index.get_level_values(0))
    if not crowded:
        return head
    keep_plain = head[~head[COL_USER].isin(crowded)]
    parts = [keep_plain]
    busy = ranked[ranked[COL_USER].isin(crowded)]
    # ``ranked`` is sorted by user, so each busy user is one contiguous slice: the loop works on integer
    # category codes and slice offsets, and one ``take`` builds the result.
    users = busy[COL_USER].to_numpy()
    codes = pd.factorize(busy[COL_CATEGORY])[0].tolist()
    cuts = np.flatnonzero(users[1:] != users[:-1]) + 1
    take: list[int] = []
    for start, end in zip(np.r_[0, cuts].tolist(), np.r_[cuts, len(users)].tolist(), strict=True):
        order = diversify_order(codes[start:end], page_size=size, max_per_category=cap, top_n=top_n)
        take.extend(start + i for i in order)
    parts.append(busy.iloc[take])
    return pd.concat(parts, ignore_index=True)


def _as_series(n_interactions: Mapping[str, int] | pd.Series) -> pd.Series:
    if isinstance(n_interactions, pd.Series):
        return n_interactions
    if isinstance(n_interactions, Mapping):
        return pd.Series(dict(n_interactions), dtype="float64")
    raise TypeError(
        f"n_interactions must be a mapping or a pandas Series, got {type(n_interactions).__name__}"
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
    counts = _as_series(n_interactions)
    unknown = set(candidates[COL_SOURCE].unique()) - set(SOURCES)
    if unknown:
        raise ValueError(
            f"candidates.source has unknown value(s) {sorted(map(str, unknown))} "
            f"(known: {', '.join(SOURCES)})"
        )
    cands = candidates[list(CANDIDATE_COLUMNS)].astype({COL_SCORE: "float64"})
    cands = cands[np.isfinite(cands[COL_SCORE].to_numpy())]
    if cands.empty:
        return empty_result()
    cands = cands.sort_values(COL_SCORE, ascending=False, kind="stable").drop_duplicates(
        [COL_USER, COL_ITEM, COL_SOURCE], keep="first"
    )
    scored = combine(cands.reset_index(drop=True), n_interactions=counts, cfg=cfg)
    kept = apply_filters(scored, history=history, products=products, drop_viewed=cfg.drop_viewed)
    if kept.empty:
        return empty_result()
    # Ties break on product id so that batch and API give the same order whatever the input order.
    ranked = kept.sort_values([COL_USER, COL_SCORE, COL_ITEM], ascending=[True, False, True], kind="stable")
    ranked = ranked[ranked.groupby(COL_USER, sort=False).cumcount() < cfg.top_n * POOL_FACTOR]
    out = _diversify(ranked.reset_index(drop=True), cfg)
    out = out.assign(**{COL_RANK: out.groupby(COL_USER, sort=False).cumcount() + 1})
    out = out.sort_values([COL_USER, COL_RANK], kind="stable").reset_index(drop=True)
    return out.astype({COL_SCORE: "float64", COL_SOURCES: "int64", COL_RANK: "int64"})[list(OUTPUT_COLUMNS)]
