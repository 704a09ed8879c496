"""The hybrid in the evaluation harness: CF, item-kNN, content and popular candidates, then the same blend.

Registered as ``hybrid`` (the weights of ``cfg.blend``) and as the family ``hybrid:<spec>`` (any weights,
:func:`parse_variant`; the sweep of docs/evaluation.md, :data:`SWEEP`, is registered by name). The
candidates are built on the training side with the harness's own models (ALS, item-kNN, content) at depth
:data:`CANDIDATE_DEPTH` and cached for the split, so the sweep variants only re-run the blend. The blend is
:func:`jobs.blend.transforms.blend_users`, i.e. :func:`recsys.blend.blend`, exactly as the batch job and the
API run it; the harness's rule that no training product is recommended is met with ``drop_viewed=True``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.blend import transforms as tr
from jobs.evaluate.models import ModelContext, als, content, itemknn, register, register_family
from recsys import schema as S
from recsys.config import BlendConfig

log = logging.getLogger(__name__)

CANDIDATE_DEPTH = 100
UNKNOWN_CATEGORY = "unknown"
# The sweep of docs/evaluation.md, registered by name so that `--models hybrid:<name>` lists them; any other
# `hybrid:<spec>` (see :func:`parse_variant`) works as well.
SWEEP: tuple[str, ...] = (
    "cf1-knn0-ct0-pop0-nocap",
    "cf1-knn1-ct0.3-pop0.1-cap5",
    "cf1-knn0.5-ct0.1-pop0.3-nocap",
    "cf1-knn0.5-ct0.1-pop0.3-cap5",
    "cf1-knn0.5-ct0.1-pop0.3-rank-cap10",
    "cf1-knn0.5-ct0.3-pop0.3-cap10",
    "cf1-knn0.3-ct0.1-pop0.3-cap10",
    "cf1-knn0.5-ct0-pop0.3-cap10",
    "cf1-knn0.5-ct0.1-pop0.5-cap10",
    "cf1-knn1-ct0.1-pop0.3-cap10",
)
_SPEC_KEYS = {"cf": "weight_cf", "knn": "weight_itemknn", "ct": "weight_content", "pop": "weight_popular"}
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
    # Checkpointed, not just cached: the candidates' lineage (ALS, item-kNN self-join, content) is long, and
    # every sweep variant would otherwise carry it (and its plan string) again.
    cached = (cands.localCheckpoint(), history.localCheckpoint(), catalogue.localCheckpoint())
    _CACHE.clear()  # one split at a time
    _CACHE[key] = cached
    return cached


def _catalogue(train: DataFrame, products: DataFrame | None) -> DataFrame:
    """Every product counts as available here: the harness measures the ranking, and the availability filter
    is a business rule the single models do not apply. With it, a held-out interaction with a product that is
    unavailable *now* would be a miss for the hybrid only (on the generated sample, ALS through the blend scored
    nDCG@10 0.294 with the filter instead of ALS's 0.309)."""
    if products is not None:
        return products.select(S.COL_ITEM, S.COL_CATEGORY, F.lit(True).alias(S.COL_AVAILABLE))
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


def parse_variant(spec: str, base: BlendConfig) -> BlendConfig:
    """``base`` with the weights and diversity cap named by ``spec``.

    ``spec`` is dash-separated parts: ``cf<w>``, ``knn<w>``, ``ct<w>``, ``pop<w>`` (weights of ALS, item-kNN,
    content and popularity), ``cap<n>`` (``max_per_category``), ``nocap`` (``cap0``), ``rank`` or ``minmax``
    (the normalisation). Parts left out keep ``base``'s value.

    Example:
        >>> parse_variant("cf1-knn0.5-nocap", BlendConfig()).weight_itemknn
        0.5
    """
    changes: dict[str, object] = {}
    for part in spec.split("-"):
        if part == "nocap":
            changes["max_per_category"] = 0
        elif part in ("rank", "minmax"):
            changes["normalization"] = part
        elif part.startswith("cap") and part[3:].isdigit():
            changes["max_per_category"] = int(part[3:])
        else:
            key = next((k for k in sorted(_SPEC_KEYS, key=len, reverse=True) if part.startswith(k)), None)
            try:
                value = float(part[len(key) :]) if key else float("nan")
            except ValueError:
                value = float("nan")
            if key is None or not value >= 0:
                raise ValueError(
                    f"hybrid variant {spec!r}: cannot read {part!r} (parts: cf<w>, knn<w>, ct<w>, pop<w>, "
                    "cap<n>, nocap, rank, minmax; weights >= 0)"
                )
            changes[_SPEC_KEYS[key]] = value
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


@register_family("hybrid")
def variant(spec: str) -> Callable[..., DataFrame]:
    """The model ``hybrid:<spec>``: the blend with ``cfg.blend`` changed as ``spec`` says."""
    parse_variant(spec, BlendConfig())  # fail on a bad spec before any Spark work

    def fn(train: DataFrame, products: DataFrame | None, ctx: ModelContext) -> DataFrame:
        return hybrid_recommend(train, products, ctx, parse_variant(spec, ctx.cfg.blend))

    return fn


for _name in SWEEP:
    register(f"hybrid:{_name}")(variant(_name))
