"""The hybrid in the evaluation harness: CF, item-kNN, content and popular candidates, then the same blend.

Registered as ``hybrid`` (the weights of ``cfg.blend``) and as a small weight sweep ``hybrid:<variant>``
(:data:`SWEEP`). The candidates are built on the training side with the harness's own models (ALS,
item-kNN, content) at depth :data:`CANDIDATE_DEPTH` and cached for the split, so the sweep variants only
re-run the blend. The blend is :func:`jobs.blend.transforms.blend_users`, i.e. :func:`recsys.blend.blend`,
exactly as the batch job and the API run it; the harness's rule that no training product is recommended is
met with ``drop_viewed=True``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.blend import transforms as tr
from jobs.evaluate.models import ModelContext, als, content, itemknn, register
from recsys import schema as S
from recsys.config import BlendConfig

log = logging.getLogger(__name__)

CANDIDATE_DEPTH = 100
UNKNOWN_CATEGORY = "unknown"
# name -> (weight_cf, weight_itemknn, weight_content, weight_popular, max_per_category)
SWEEP: dict[str, tuple[float, float, float, float, int]] = {
    "cf1-knn1-ct0.3-pop0.1": (1.0, 1.0, 0.3, 0.1, 5),
    "cf1-knn0.5-ct0.3-pop0.1": (1.0, 0.5, 0.3, 0.1, 5),
    "cf0.5-knn1-ct0.3-pop0.1": (0.5, 1.0, 0.3, 0.1, 5),
    "cf1-knn1-ct0-pop0.1": (1.0, 1.0, 0.0, 0.1, 5),
    "cf1-knn1-ct0.3-pop0.3": (1.0, 1.0, 0.3, 0.3, 5),
    "cf1-knn1-ct0.1-pop0.1": (1.0, 1.0, 0.1, 0.1, 5),
    "cf1-knn1-ct0.3-pop0.1-nocap": (1.0, 1.0, 0.3, 0.1, 0),
}
_CACHE: dict[int, tuple[DataFrame, DataFrame, DataFrame]] = {}


def _candidates(train: DataFrame, products: DataFrame | None, ctx: ModelContext) -> tuple[DataFrame, ...]:
    """(enrichable candidates, history, products) for the test users, cached per training DataFrame."""
    key = id(train)
    if key in _CACHE:
        return _CACHE[key]
    deep = dataclasses.replace(ctx, k=CANDIDATE_DEPTH)
    bcfg = ctx.cfg.blend
    parts = [
        tr.tag_source(als(train, products, deep), source="cf"),
        tr.tag_source(itemknn(train, products, deep), source="itemknn"),
    ]
    if products is not None:
        try:
            parts.append(tr.tag_source(content(train, products, deep), source="content"))
        except ImportError as exc:
            log.warning("hybrid: no content candidates (%s)", exc)
    scores = tr.popularity_scores(
        train, events_cfg=ctx.cfg.events, half_life_days=bcfg.popular_half_life_days, as_of=ctx.split_time
    )
    catalogue = _catalogue(train, products)
    popular = tr.popular_lists(scores, catalogue, top_n=bcfg.popular_candidates)
    parts.append(tr.popular_candidates(ctx.users, popular, top_n=bcfg.popular_candidates))
    cands = parts[0]
    for p in parts[1:]:
        cands = cands.unionByName(p)
    history = tr.user_history(train.join(ctx.users, S.COL_USER, "left_semi"))
    cached = (cands.cache(), history.cache(), catalogue.cache())
    _CACHE.clear()  # one split at a time
    _CACHE[key] = cached
    return cached


def _catalogue(train: DataFrame, products: DataFrame | None) -> DataFrame:
    if products is not None:
        return products.select(
            S.COL_ITEM, S.COL_CATEGORY, F.coalesce(S.COL_AVAILABLE, F.lit(True)).alias(S.COL_AVAILABLE)
        )
    return (
        train.select(S.COL_ITEM)
        .distinct()
        .select(S.COL_ITEM, F.lit(UNKNOWN_CATEGORY).alias(S.COL_CATEGORY), F.lit(True).alias(S.COL_AVAILABLE))
    )


def hybrid_recommend(
    train: DataFrame, products: DataFrame | None, ctx: ModelContext, cfg: BlendConfig
) -> DataFrame:
    """Top ``ctx.k`` of the blend per test user as ``user_id, product_id, score`` (score falls with rank).

    The score returned is ``k + 1 - rank``: the diversified order is not the order of the blended scores,
    and the harness ranks by score.
    """
    cands, history, catalogue = _candidates(train, products, ctx)
    cfg = dataclasses.replace(cfg, drop_viewed=True, top_n=max(ctx.k, cfg.page_size))
    enriched = tr.enrich(cands, history, catalogue, tr.interaction_counts(history))
    recs = tr.explode_lists(tr.blend_users(enriched, cfg=cfg, partitions=ctx.cfg.spark.shuffle_partitions))
    return recs.where(F.col("rank") <= ctx.k).select(
        S.COL_USER, S.COL_ITEM, (F.lit(ctx.k + 1) - F.col("rank")).cast("double").alias("score")
    )


@register("hybrid")
def hybrid(train: DataFrame, products: DataFrame | None, ctx: ModelContext) -> DataFrame:
    """The blend with the weights of ``cfg.blend``."""
    return hybrid_recommend(train, products, ctx, ctx.cfg.blend)


def _variant(weights: tuple[float, float, float, float, int]) -> Callable[..., DataFrame]:
    cf, knn, ct, pop, cap = weights

    def fn(train: DataFrame, products: DataFrame | None, ctx: ModelContext) -> DataFrame:
        cfg = dataclasses.replace(
            ctx.cfg.blend,
            weight_cf=cf,
            weight_itemknn=knn,
            weight_content=ct,
            weight_popular=pop,
            max_per_category=cap,
        )
        return hybrid_recommend(train, products, ctx, cfg)

    return fn


for _name, _weights in SWEEP.items():
    register(f"hybrid:{_name}")(_variant(_weights))
