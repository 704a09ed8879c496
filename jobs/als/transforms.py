"""ALS training matrix, stable integer indexes and output shaping: pure DataFrame -> DataFrame functions."""

from __future__ import annotations

from datetime import datetime, timedelta

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from jobs.common.confidence import interaction_confidence
from recsys import schema as S
from recsys.config import EventsConfig

COL_USER_IDX = "user_idx"
COL_ITEM_IDX = "item_idx"
COL_RATING = "rating"
COL_SCORE = "score"
COL_RANK = "rank"


def training_matrix(
    events: DataFrame,
    *,
    events_cfg: EventsConfig,
    as_of: datetime,
    binary_confidence: bool,
    col_user: str = S.COL_USER,
    col_item: str = S.COL_ITEM,
) -> DataFrame:
    """One ALS rating per (user, product): the decayed, weighted confidence, or 1 when binary.

    Args:
        events: Raw interaction rows (user, product, event_type, quantity, ts).
        events_cfg: Event weights, half-life and quantity cap.
        as_of: Reference time of the time decay (the data cut-off), so reruns agree.
        binary_confidence: Every interacted pair gets rating 1 (the confidence column is kept for reference).

    Returns:
        ``user_id, product_id, rating, confidence, n_events, last_ts``.

    Example:
        >>> m = training_matrix(events, events_cfg=cfg.events, as_of=cut, binary_confidence=True)
    """
    conf = interaction_confidence(events, cfg=events_cfg, as_of=as_of, col_user=col_user, col_item=col_item)
    rating = F.lit(1.0) if binary_confidence else F.col("confidence")
    return conf.where(F.col("confidence") > 0).select(
        col_user, col_item, rating.cast("float").alias(COL_RATING), "confidence", "n_events", "last_ts"
    )


def new_index_rows(ids: DataFrame, existing: DataFrame, *, col_id: str, col_idx: str) -> DataFrame:
    """Index rows for the ids not yet in ``existing``: numbered after its largest index, in id order.

    Existing ids keep their index, so factors and candidates stay comparable across runs. The numbering
    uses one global window: the rows are only the *new* ids of a run, which stay few after the first run.

    Args:
        ids: A DataFrame with column ``col_id`` (duplicates allowed).
        existing: The current index table ``col_id, col_idx`` (may be empty).
        col_id: The id column (``user_id`` or ``product_id``).
        col_idx: The int index column (``user_idx`` or ``item_idx``).

    Returns:
        ``col_id, col_idx`` for new ids only.

    Example:
        >>> new = new_index_rows(ratings.select("user_id"), user_index, col_id="user_id", col_idx="user_idx")
    """
    offset = existing.agg(F.coalesce(F.max(col_idx) + 1, F.lit(0)).alias("_offset"))
    fresh = ids.select(col_id).distinct().join(existing.select(col_id), col_id, "left_anti")
    numbered = fresh.withColumn("_n", F.row_number().over(Window.orderBy(col_id)) - 1)
    return numbered.crossJoin(offset).select(
        col_id, (F.col("_offset") + F.col("_n")).cast("int").alias(col_idx)
    )


def indexed_ratings(
    ratings: DataFrame,
    user_index: DataFrame,
    item_index: DataFrame,
    *,
    col_user: str = S.COL_USER,
    col_item: str = S.COL_ITEM,
) -> DataFrame:
    """The ratings with integer ``user_idx`` and ``item_idx`` as ALS needs them.

    Example:
        >>> train = indexed_ratings(ratings, user_index, item_index)
    """
    return (
        ratings.join(user_index, col_user)
        .join(item_index, col_item)
        .select(COL_USER_IDX, COL_ITEM_IDX, COL_RATING)
    )


def active_users(
    events: DataFrame,
    *,
    as_of: datetime,
    window_days: int,
    col_user: str = S.COL_USER,
    col_ts: str = S.COL_TS,
) -> DataFrame:
    """Users with an event in the ``window_days`` before ``as_of`` (the users who get CF candidates).

    Example:
        >>> users = active_users(events, as_of=cut, window_days=30)
    """
    if window_days <= 0:
        raise ValueError(f"window_days must be positive, got {window_days}")
    since = as_of - timedelta(days=window_days)
    return events.where(F.col(col_ts) >= F.lit(since)).select(col_user).distinct()


def factors_table(
    factors: DataFrame, index: DataFrame, *, col_id: str, col_idx: str, model_version: str
) -> DataFrame:
    """ALS factors (``id, features``) joined back to the external ids and tagged with the model version.

    Example:
        >>> users = factors_table(model.userFactors, user_index, col_id="user_id", col_idx="user_idx",
        ...                       model_version="als-20260101T000000Z")
    """
    return (
        factors.withColumnRenamed("id", col_idx)
        .join(index, col_idx)
        .select(
            col_id, col_idx, F.col("features").alias("factors"), F.lit(model_version).alias("model_version")
        )
    )


def candidates_table(
    recs: DataFrame,
    seen: DataFrame,
    user_index: DataFrame,
    item_index: DataFrame,
    *,
    top_n: int,
    model_version: str,
    col_user: str = S.COL_USER,
    col_item: str = S.COL_ITEM,
) -> DataFrame:
    """Top-``top_n`` CF candidates per user from ``recommendForUserSubset`` output, seen items removed.

    Args:
        recs: ``user_idx, recommendations: array<struct<item_idx, rating>>`` as Spark's ALS model returns.
        seen: ``user_idx, item_idx`` pairs of the training matrix (removed from the candidates).
        user_index: ``user_id, user_idx``.
        item_index: ``product_id, item_idx``.
        top_n: Candidates kept per user.
        model_version: Tag of every row.

    Returns:
        ``user_id, product_id, score, rank, model_version`` (rank 1 is the best).

    Example:
        >>> cands = candidates_table(recs, seen, users, items, top_n=100, model_version=version)
    """
    if top_n <= 0:
        raise ValueError(f"top_n must be positive, got {top_n}")
    flat = recs.select(COL_USER_IDX, F.explode("recommendations").alias("r")).select(
        COL_USER_IDX, F.col(f"r.{COL_ITEM_IDX}").alias(COL_ITEM_IDX), F.col("r.rating").alias(COL_SCORE)
    )
    kept = flat.join(seen.select(COL_USER_IDX, COL_ITEM_IDX), [COL_USER_IDX, COL_ITEM_IDX], "left_anti")
    w = Window.partitionBy(COL_USER_IDX).orderBy(F.col(COL_SCORE).desc(), F.col(COL_ITEM_IDX))
    ranked = kept.withColumn(COL_RANK, F.row_number().over(w)).where(F.col(COL_RANK) <= top_n)
    return (
        ranked.join(user_index, COL_USER_IDX)
        .join(item_index, COL_ITEM_IDX)
        .select(
            col_user,
            col_item,
            F.col(COL_SCORE).cast("float").alias(COL_SCORE),
            COL_RANK,
            F.lit(model_version).alias("model_version"),
        )
    )
