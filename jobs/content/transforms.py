"""Content-based filtering transforms: product vectors, similar items, user profiles and content candidates.

The vectors (:mod:`jobs.content.features`) and the neighbour search (:mod:`jobs.content.neighbours`) live in
their own modules; this one adds the user side and the entry point of the evaluation harness.
"""

from __future__ import annotations

from datetime import datetime

from pyspark.ml.linalg import SparseVector
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.common.confidence import interaction_confidence
from jobs.content.features import COL_FEATURES, product_features
from jobs.content.neighbours import COL_NEIGHBOR, NEIGHBOURS_SCHEMA, similar_items
from recsys import schema as S
from recsys.config import ContentConfig, EventsConfig

__all__ = [
    "COL_NEIGHBOR",
    "NEIGHBOURS_SCHEMA",
    "content_candidates",
    "product_features",
    "recommend",
    "similar_items",
    "user_profiles",
    "vector_entries",
]

_ARRAYS = T.StructType(
    [
        T.StructField("i", T.ArrayType(T.IntegerType()), False),
        T.StructField("v", T.ArrayType(T.DoubleType()), False),
    ]
)


def vector_entries(features: DataFrame) -> DataFrame:
    """The non-zeros of each product vector as rows: ``product_id, index, value``.

    Example:
        >>> vector_entries(feats).columns
        ['product_id', 'index', 'value']
    """
    to_arrays = F.udf(lambda v: (v.indices.tolist(), v.values.tolist()), _ARRAYS)
    arrays = features.select(S.COL_ITEM, to_arrays(COL_FEATURES).alias("a"))
    return arrays.select(S.COL_ITEM, F.explode(F.arrays_zip("a.i", "a.v")).alias("e")).select(
        S.COL_ITEM, F.col("e.i").alias("index"), F.col("e.v").alias("value")
    )


def user_profiles(confidence: DataFrame, entries: DataFrame) -> DataFrame:
    """Each user's content profile: the confidence-weighted mean of the vectors of the products they touched.

    Args:
        confidence: ``user_id, product_id, confidence`` (from :func:`interaction_confidence`).
        entries: ``product_id, index, value`` from :func:`vector_entries`.

    Returns:
        ``user_id, index, value``: the non-zeros of ``sum_i c_i v_i / sum_i c_i`` (products without a vector
        count in neither sum).

    Example:
        >>> user_profiles(conf, vector_entries(feats)).columns
        ['user_id', 'index', 'value']
    """
    known = confidence.join(entries.select(S.COL_ITEM).distinct(), S.COL_ITEM, "left_semi")
    totals = known.groupBy(S.COL_USER).agg(F.sum("confidence").alias("_total"))
    return (
        known.join(entries, S.COL_ITEM)
        .groupBy(S.COL_USER, "index")
        .agg(F.sum(F.col("confidence") * F.col("value")).alias("_sum"))
        .join(totals, S.COL_USER)
        .where(F.col("_total") > 0)
        .select(S.COL_USER, "index", (F.col("_sum") / F.col("_total")).alias("value"))
    )


def content_candidates(
    confidence: DataFrame,
    neighbours: DataFrame,
    entries: DataFrame,
    *,
    top_n: int,
    recent_items: int,
    exclude_all_seen: bool = False,
) -> DataFrame:
    """Content candidates per user: products close to the user's profile and to their most recent products.

    The pool is the neighbours of the user's ``recent_items`` most recent products and of their
    ``recent_items`` highest-confidence ones. Each candidate scores
    ``0.5 * cos(profile, candidate) + 0.5 * max similarity to one of the recent products`` (0 when it is not
    a neighbour of one), so both the long-run taste and the last few products count.

    Args:
        confidence: ``user_id, product_id, confidence, last_ts, purchased``.
        neighbours: ``product_id, neighbor_id, score`` (item neighbours).
        entries: ``product_id, index, value`` (product vectors).
        top_n: Candidates kept per user.
        recent_items: Products per user seeding the pool from each of recency and confidence.
        exclude_all_seen: Drop every product the user interacted with, not only the purchased ones.

    Returns:
        ``user_id, product_id, score, rank`` with rank 1..top_n.

    Example:
        >>> content_candidates(conf, nbrs, vector_entries(feats), top_n=100, recent_items=5).columns
        ['user_id', 'product_id', 'score', 'rank']
    """
    if top_n <= 0 or recent_items <= 0:
        raise ValueError(f"top_n and recent_items must be positive (got {top_n}, {recent_items})")
    by_recency = Window.partitionBy(S.COL_USER).orderBy(F.col("last_ts").desc(), F.col(S.COL_ITEM))
    by_confidence = Window.partitionBy(S.COL_USER).orderBy(F.col("confidence").desc(), F.col(S.COL_ITEM))
    seeds = (
        confidence.withColumn("_recent_rank", F.row_number().over(by_recency))
        .withColumn("_conf_rank", F.row_number().over(by_confidence))
        .where((F.col("_recent_rank") <= recent_items) | (F.col("_conf_rank") <= recent_items))
        .select(S.COL_USER, S.COL_ITEM, (F.col("_recent_rank") <= recent_items).alias("_recent"))
    )
    pool = (
        seeds.join(neighbours.select(S.COL_ITEM, COL_NEIGHBOR, "score"), S.COL_ITEM)
        .groupBy(S.COL_USER, F.col(COL_NEIGHBOR).alias("_cand"))
        .agg(F.max(F.when(F.col("_recent"), F.col("score")).otherwise(F.lit(0.0))).alias("_recent_sim"))
    )
    seen = confidence if exclude_all_seen else confidence.where(F.col("purchased"))
    pool = pool.join(
        seen.select(S.COL_USER, F.col(S.COL_ITEM).alias("_cand")), [S.COL_USER, "_cand"], "left_anti"
    )
    profile = user_profiles(confidence, entries)
    unit = profile.withColumn(
        "value",
        F.col("value") / F.sqrt(F.sum(F.col("value") * F.col("value")).over(Window.partitionBy(S.COL_USER))),
    )
    dots = (
        pool.join(entries.withColumnRenamed(S.COL_ITEM, "_cand"), "_cand")
        .join(unit.withColumnRenamed("value", "_p"), [S.COL_USER, "index"])
        .groupBy(S.COL_USER, "_cand")
        .agg(F.sum(F.col("value") * F.col("_p")).alias("_cos"))
    )
    scored = pool.join(dots, [S.COL_USER, "_cand"], "left").select(
        S.COL_USER,
        F.col("_cand").alias(S.COL_ITEM),
        (F.lit(0.5) * F.coalesce(F.col("_cos"), F.lit(0.0)) + F.lit(0.5) * F.col("_recent_sim")).alias(
            "score"
        ),
    )
    order = Window.partitionBy(S.COL_USER).orderBy(F.col("score").desc(), F.col(S.COL_ITEM))
    return scored.withColumn("rank", F.row_number().over(order).cast("int")).where(F.col("rank") <= top_n)


def recommend(
    train: DataFrame,
    products: DataFrame,
    *,
    k: int,
    cfg: ContentConfig,
    events_cfg: EventsConfig,
    as_of: datetime,
) -> DataFrame:
    """Content recommendations for the evaluation harness: top ``k`` per user of ``train``, own items out.

    Args:
        train: Raw events ``user_id, product_id, event_type, quantity, ts``.
        products: ``product_id, title, category, brand, price``.
        k: Recommendations per user.
        cfg: Content settings (weights, title buckets, LSH, neighbours per product, recent items).
        events_cfg: Event weights and decay, the same as the ALS job's.
        as_of: The reference time of the decay (the end of the training period).

    Returns:
        ``user_id, product_id, score``.

    Example:
        >>> recommend(train, products, k=10, cfg=cfg.content, events_cfg=cfg.events, as_of=cutoff).columns
        ['user_id', 'product_id', 'score']
    """
    feats = product_features(products, weights=cfg.weights, title_features=cfg.title_features)
    nbrs = similar_items(feats, k=cfg.top_k, tables=cfg.lsh_tables, bits=cfg.lsh_bits, window=cfg.block_max)
    conf = interaction_confidence(train, cfg=events_cfg, as_of=as_of)
    cands = content_candidates(
        conf, nbrs, vector_entries(feats), top_n=k, recent_items=cfg.recent_items, exclude_all_seen=True
    )
    return cands.select(S.COL_USER, S.COL_ITEM, "score")


def profile_vector(rows: list[tuple[int, float]], size: int) -> SparseVector:
    """A profile's ``(index, value)`` rows as a ``SparseVector`` (for inspection and tests)."""
    ordered = sorted(rows)
    return SparseVector(size, [i for i, _ in ordered], [v for _, v in ordered])
