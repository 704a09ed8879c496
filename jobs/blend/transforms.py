"""Blend job transforms: popularity lists, candidate union, the shared blend applied per user, similar items.

Pure ``DataFrame -> DataFrame`` functions (no IO, no actions). The per-user scoring and filtering is
:func:`recsys.blend.blend` itself, run inside ``mapInPandas`` on user-clustered partitions, so the batch job
and the API's on-demand path cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pandas as pd
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.common.chunks import cluster_by_key, whole_key_chunks
from jobs.common.confidence import event_weight
from recsys import blend as B
from recsys import schema as S
from recsys.config import BlendConfig, EventsConfig
from recsys.encoding import SOURCE_BITS

COL_SCORE = "score"
COL_RANK = "rank"
COL_NEIGHBOR = "neighbor_id"
COL_N_INTERACTIONS = "n_interactions"
COL_PRODUCT_IDS = "product_ids"
COL_SCORES = "scores"
COL_SOURCES = "sources"
COL_MODEL_VERSION = "model_version"
# Candidate rows handed to one call of the shared blend inside mapInPandas (a few hundred users).
BLEND_CHUNK_ROWS = 100_000

# One row per user: the blended list in display order (the load job encodes it as it is).
RECOMMENDATIONS_SCHEMA = T.StructType(
    [
        T.StructField(S.COL_USER, T.StringType(), False),
        T.StructField(COL_PRODUCT_IDS, T.ArrayType(T.StringType(), False), False),
        T.StructField(COL_SCORES, T.ArrayType(T.FloatType(), False), False),
        T.StructField(COL_SOURCES, T.ArrayType(T.IntegerType(), False), False),
    ]
)


def _decay(col_ts: str, as_of: datetime, half_life_days: float) -> Column:
    age_days = F.greatest(
        (F.lit(as_of).cast("timestamp").cast("double") - F.col(col_ts).cast("double")) / 86400.0, F.lit(0.0)
    )
    return F.pow(F.lit(0.5), age_days / F.lit(half_life_days))


def popularity_scores(
    events: DataFrame,
    *,
    events_cfg: EventsConfig,
    half_life_days: float,
    as_of: datetime,
    col_user: str = S.COL_USER,
    col_item: str = S.COL_ITEM,
    col_ts: str = S.COL_TS,
) -> DataFrame:
    """Time-decayed popularity: per product, the sum over users of their strongest decayed event.

    A user counts once per product, with ``max(event type weight * 0.5 ** (age_days / half_life_days))``
    over their events on it: one shopper replaying a page a thousand times weighs as one shopper, a purchase
    outweighs a view, and last week's interest outweighs last year's. Ages are measured back from ``as_of``
    (the latest event), so a rerun on the same data gives the same scores.

    Args:
        events: Interaction rows (user, product, event_type, ts).
        events_cfg: The event type weights (quantities are ignored here).
        half_life_days: Half-life of the decay (``blend.popular_half_life_days``).
        as_of: Reference time of the decay.

    Returns:
        ``product_id, score``.

    Example:
        >>> popularity_scores(events, events_cfg=cfg.events, half_life_days=7.0, as_of=latest)
    """
    if half_life_days <= 0:
        raise ValueError(f"half_life_days must be positive, got {half_life_days}")
    unit = EventsConfig(weights=events_cfg.weights, half_life_days=events_cfg.half_life_days, quantity_cap=1)
    weight = event_weight(unit) * _decay(col_ts, as_of, half_life_days)
    per_user = events.groupBy(col_user, col_item).agg(F.max(weight).alias("_w"))
    return per_user.groupBy(col_item).agg(F.sum("_w").cast("double").alias(COL_SCORE))


def popular_lists(scores: DataFrame, products: DataFrame, *, top_n: int) -> DataFrame:
    """The global and per-category lists of the most popular available products.

    Args:
        scores: ``product_id, score`` from :func:`popularity_scores`.
        products: The catalogue (``product_id, category, available``).
        top_n: Products kept per list.

    Returns:
        ``category, product_id, score, rank``; ``category`` is null for the global list.

    Example:
        >>> popular_lists(popularity_scores(...), products, top_n=200)
    """
    if top_n <= 0:
        raise ValueError(f"top_n must be positive, got {top_n}")
    avail = products.where(F.col(S.COL_AVAILABLE)).select(S.COL_ITEM, S.COL_CATEGORY)
    scored = scores.join(avail, S.COL_ITEM).where(F.col(COL_SCORE) > 0)
    glob = scored.withColumn(S.COL_CATEGORY, F.lit(None).cast("string"))
    both = glob.unionByName(scored)
    w = Window.partitionBy(S.COL_CATEGORY).orderBy(F.col(COL_SCORE).desc(), F.col(S.COL_ITEM))
    return (
        both.withColumn(COL_RANK, F.row_number().over(w))
        .where(F.col(COL_RANK) <= top_n)
        .select(S.COL_CATEGORY, S.COL_ITEM, COL_SCORE, COL_RANK)
    )


def user_history(events: DataFrame, *, col_user: str = S.COL_USER, col_item: str = S.COL_ITEM) -> DataFrame:
    """One row per (user, product): ``purchased`` and ``viewed`` flags as :func:`recsys.blend.blend` wants.

    Any event that is not a purchase (view, click, add to cart) counts as viewed.

    Example:
        >>> user_history(events)
    """
    is_purchase = F.col(S.COL_EVENT_TYPE) == "purchase"
    return events.groupBy(col_user, col_item).agg(
        F.max(is_purchase.cast("int")).cast("boolean").alias(B.COL_PURCHASED),
        F.max((~is_purchase).cast("int")).cast("boolean").alias(B.COL_VIEWED),
    )


def interaction_counts(history: DataFrame, *, col_user: str = S.COL_USER) -> DataFrame:
    """Distinct products each user interacted with: the ``n`` of the cold-start rule.

    Example:
        >>> interaction_counts(user_history(events))
    """
    return history.groupBy(col_user).agg(F.count(F.lit(1)).cast("int").alias(COL_N_INTERACTIONS))


def tag_source(candidates: DataFrame, *, source: str) -> DataFrame:
    """``user_id, product_id, source, score`` from a candidates table (cf, content or itemknn)."""
    if source not in SOURCE_BITS:
        raise ValueError(f"source must be one of {', '.join(SOURCE_BITS)}, got {source!r}")
    return candidates.select(
        S.COL_USER,
        S.COL_ITEM,
        F.lit(source).alias(B.COL_SOURCE),
        F.col(COL_SCORE).cast("double").alias(COL_SCORE),
    )


def popular_candidates(users: DataFrame, popular: DataFrame, *, top_n: int) -> DataFrame:
    """The ``top_n`` globally popular products offered to every user as ``popular`` candidates.

    Example:
        >>> popular_candidates(users, popular_lists(...), top_n=50)
    """
    head = popular.where(F.col(S.COL_CATEGORY).isNull() & (F.col(COL_RANK) <= top_n)).select(
        S.COL_ITEM, F.lit("popular").alias(B.COL_SOURCE), COL_SCORE
    )
    return users.select(S.COL_USER).distinct().crossJoin(F.broadcast(head))


def enrich(candidates: DataFrame, history: DataFrame, products: DataFrame, counts: DataFrame) -> DataFrame:
    """Candidates with the per-pair flags, the product's category and availability and the user's count.

    Only the (user, product) pairs that are candidates are carried, so every blend input for a user arrives
    on that user's rows.

    Example:
        >>> enrich(candidates, user_history(events), products, interaction_counts(history))
    """
    return (
        candidates.join(history, [S.COL_USER, S.COL_ITEM], "left")
        .join(products.select(S.COL_ITEM, S.COL_CATEGORY, S.COL_AVAILABLE), S.COL_ITEM, "left")
        .join(counts, S.COL_USER, "left")
        .select(
            S.COL_USER,
            S.COL_ITEM,
            B.COL_SOURCE,
            COL_SCORE,
            F.coalesce(B.COL_PURCHASED, F.lit(False)).alias(B.COL_PURCHASED),
            F.coalesce(B.COL_VIEWED, F.lit(False)).alias(B.COL_VIEWED),
            S.COL_CATEGORY,
            S.COL_AVAILABLE,
            F.coalesce(COL_N_INTERACTIONS, F.lit(0)).alias(COL_N_INTERACTIONS),
        )
    )


def blend_pandas(rows: pd.DataFrame, cfg: BlendConfig) -> pd.DataFrame:
    """Runs :func:`recsys.blend.blend` on enriched rows of whole users; returns one list row per user.

    Users whose every candidate is filtered out get an empty list (so an incremental load can clear them).
    """
    users = pd.unique(rows[S.COL_USER])
    hist = rows.loc[rows[B.COL_PURCHASED] | rows[B.COL_VIEWED], list(B.HISTORY_COLUMNS)]
    prods = rows.loc[rows[S.COL_CATEGORY].notna(), list(B.PRODUCT_COLUMNS)].drop_duplicates(S.COL_ITEM)
    counts = rows.drop_duplicates(S.COL_USER).set_index(S.COL_USER)[COL_N_INTERACTIONS]
    out = B.blend(
        rows[list(B.CANDIDATE_COLUMNS)], history=hist, products=prods, n_interactions=counts, cfg=cfg
    )
    grouped = out.groupby(S.COL_USER, sort=False)
    lists = pd.DataFrame(
        {
            COL_PRODUCT_IDS: grouped[S.COL_ITEM].agg(list),
            COL_SCORES: grouped[B.COL_SCORE].agg(list),
            COL_SOURCES: grouped[B.COL_SOURCES].agg(list),
        }
    ).reindex(users)
    for col in (COL_PRODUCT_IDS, COL_SCORES, COL_SOURCES):
        lists[col] = [v if isinstance(v, list) else [] for v in lists[col]]
    return lists.rename_axis(S.COL_USER).reset_index()


def blend_users(
    enriched: DataFrame, *, cfg: BlendConfig, partitions: int, chunk_rows: int = BLEND_CHUNK_ROWS
) -> DataFrame:
    """Applies the shared blend to every user of ``enriched`` (output of :func:`enrich`).

    The rows are clustered by user (:func:`jobs.common.chunks.cluster_by_key`), then ``mapInPandas`` streams
    the Arrow batches, holding back the last (possibly incomplete) user of a batch until the next one: each
    user's rows reach :func:`recsys.blend.blend` together, and memory stays one batch plus one user.

    Args:
        enriched: Output of :func:`enrich`.
        cfg: The ``blend`` configuration.
        partitions: Partitions of the per-user shuffle.
        chunk_rows: Rows buffered per call of the shared blend.

    Returns:
        ``user_id, product_ids, scores, sources`` (:data:`RECOMMENDATIONS_SCHEMA`), one row per user.

    Example:
        >>> blend_users(enrich(...), cfg=cfg.blend, partitions=8)
    """
    B.check_config(cfg)
    if partitions <= 0 or chunk_rows <= 0:
        raise ValueError(f"partitions and chunk_rows must be positive, got {partitions} and {chunk_rows}")

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        # Arrow batches are small (10k rows, a few dozen users); the blend's fixed cost per call is paid
        # once per chunk_rows rows instead.
        for chunk in whole_key_chunks(batches, S.COL_USER, chunk_rows):
            yield blend_pandas(chunk, cfg)

    clustered = cluster_by_key(enriched, S.COL_USER, partitions)
    return clustered.mapInPandas(run, RECOMMENDATIONS_SCHEMA)


def explode_lists(recs: DataFrame) -> DataFrame:
    """``user_id, product_id, score, sources, rank`` rows from the one-row-per-user lists.

    Example:
        >>> explode_lists(blend_users(...)).where("rank <= 10")
    """
    z = F.arrays_zip(COL_PRODUCT_IDS, COL_SCORES, COL_SOURCES)
    return recs.select(S.COL_USER, F.posexplode(z).alias("_pos", "_z")).select(
        S.COL_USER,
        F.col("_z." + COL_PRODUCT_IDS).alias(S.COL_ITEM),
        F.col("_z." + COL_SCORES).cast("double").alias(COL_SCORE),
        F.col("_z." + COL_SOURCES).alias(COL_SOURCES),
        (F.col("_pos") + 1).alias(COL_RANK),
    )


def similar_items(
    content: DataFrame | None,
    itemknn: DataFrame | None,
    products: DataFrame,
    *,
    weight_content: float,
    weight_itemknn: float,
    top_n: int,
) -> DataFrame:
    """Neighbours per product for ``similar:item:{id}``: content and co-occurrence neighbours merged.

    Both inputs score with cosines in [0, 1], so they are combined as they are:
    ``weight_itemknn * cos_cooccurrence + weight_content * cos_content``; an unavailable neighbour is dropped.

    Args:
        content: ``product_id, neighbor_id, score`` of the content job, or None.
        itemknn: ``product_id, neighbor_id, score`` of item-kNN, or None.
        products: The catalogue.
        weight_content: Weight of the content cosine.
        weight_itemknn: Weight of the co-occurrence cosine.
        top_n: Neighbours kept per product.

    Returns:
        ``product_id, neighbor_id, score, sources, rank`` (sources: the bits of ``content`` and ``itemknn``).

    Example:
        >>> similar_items(item_neighbors, knn, products, weight_content=0.3, weight_itemknn=1.0, top_n=50)
    """
    parts = []
    for frame, source, weight in ((content, "content", weight_content), (itemknn, "itemknn", weight_itemknn)):
        if frame is not None:
            parts.append(
                frame.select(
                    S.COL_ITEM,
                    COL_NEIGHBOR,
                    (F.col(COL_SCORE).cast("double") * F.lit(weight)).alias(COL_SCORE),
                    F.lit(SOURCE_BITS[source]).alias(COL_SOURCES),
                )
            )
    if not parts:
        raise ValueError("similar_items needs content or itemknn neighbours")
    union = parts[0] if len(parts) == 1 else parts[0].unionByName(parts[1])
    avail = products.where(F.col(S.COL_AVAILABLE)).select(F.col(S.COL_ITEM).alias(COL_NEIGHBOR))
    merged = (
        union.join(avail, COL_NEIGHBOR)
        .groupBy(S.COL_ITEM, COL_NEIGHBOR)
        .agg(F.sum(COL_SCORE).alias(COL_SCORE), F.sum(COL_SOURCES).cast("int").alias(COL_SOURCES))
    )
    w = Window.partitionBy(S.COL_ITEM).orderBy(F.col(COL_SCORE).desc(), F.col(COL_NEIGHBOR))
    return merged.withColumn(COL_RANK, F.row_number().over(w)).where(F.col(COL_RANK) <= top_n)
