"""ALS training matrix, stable integer indexes and output shaping: pure DataFrame -> DataFrame functions.

The candidates come from :func:`candidates_broadcast` (numpy scoring of user blocks inside ``mapInArrow``
against broadcast item factors) or, when the item factors are too large to broadcast, from
:func:`candidates_table` over ``ALSModel.recommendForUserSubset``. Both give the same lists (one row per
user, :mod:`jobs.common.candidate_lists`), except that the latter's fixed over-fetch can leave a user with
many of their own products near the top short of ``top_n``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark import Broadcast
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import to_arrow_schema

from jobs.common import candidate_lists as CL
from jobs.common.confidence import interaction_confidence
from recsys import schema as S
from recsys.config import EventsConfig
from recsys.foldin import fold_in
from recsys.topk import top_n as topk_rows

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
        ``user_id, product_ids, scores, model_version``: each user's candidates best first
        (:mod:`jobs.common.candidate_lists`), float scores.

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
    rows = ranked.join(user_index, COL_USER_IDX).join(item_index, COL_ITEM_IDX)
    rows = rows.select(F.col(col_user).alias(S.COL_USER), F.col(col_item).alias(S.COL_ITEM), COL_SCORE, COL_RANK)
    lists = CL.to_lists(rows, score_type="float").withColumnRenamed(S.COL_USER, col_user)
    return lists.withColumn("model_version", F.lit(model_version))


class ItemMatrix(NamedTuple):
    """The item side of :func:`candidates_broadcast`, broadcast to the executors.

    Attributes:
        item_idx: int32, strictly ascending; row ``r`` of ``factors`` belongs to item ``item_idx[r]``, so the
            kernel's tie-break by row is the tie-break by ``item_idx``.
        factors: float32 ``[n_items, rank]``.
    """

    item_idx: np.ndarray
    factors: np.ndarray


def item_matrix(item_idx: np.ndarray, factors: np.ndarray) -> ItemMatrix:
    """Item factors streamed in any order, sorted by ``item_idx`` and checked, ready to broadcast.

    Example:
        >>> ids, y = factors_to_numpy(item_f, col_id="item_idx", rank=64)
        >>> bc = spark.sparkContext.broadcast(item_matrix(np.asarray(ids, dtype=np.int64), y))
    """
    item_idx = np.asarray(item_idx, dtype=np.int64)
    factors = np.asarray(factors, dtype=np.float32)
    if item_idx.ndim != 1 or factors.ndim != 2 or factors.shape[0] != item_idx.shape[0]:
        raise ValueError(f"item_idx {item_idx.shape} must give one index per row of factors {factors.shape}")
    order = np.argsort(item_idx, kind="stable")
    item_idx = item_idx[order]
    if item_idx.size and (np.any(np.diff(item_idx) == 0) or item_idx[0] < 0 or item_idx[-1] > 2**31 - 1):
        raise ValueError("item_idx must be distinct non-negative int32 values")
    return ItemMatrix(item_idx.astype(np.int32), np.ascontiguousarray(factors[order]))


def candidates_broadcast(
    user_factors: DataFrame,
    seen: DataFrame,
    users: DataFrame,
    item_index: DataFrame,
    *,
    item_factors: Broadcast[ItemMatrix],
    top_n: int,
    model_version: str,
    col_user: str = S.COL_USER,
    col_item: str = S.COL_ITEM,
) -> DataFrame:
    """Top-``top_n`` CF candidates of ``users`` scored in numpy against broadcast item factors, seen removed.

    The output of :func:`candidates_table` (same columns, order and ranks) without its costs: each user's row
    carries their factors and their seen ``item_idx`` list into ``mapInArrow``, where
    :func:`recsys.topk.top_n` scores a block of users with one matrix product and removes the seen items
    *before* the cut. There is no over-fetch, so every user gets ``min(top_n, unseen items)`` rows. The item
    factors must fit each executor's memory (``als.candidates_broadcast_max_mb`` decides in the job).

    Args:
        user_factors: ``id, features`` as ``ALSModel.userFactors`` (id is the ``user_idx``).
        seen: ``user_idx, item_idx`` pairs of the training matrix (removed from the candidates).
        users: ``user_id, user_idx`` of the users to score (the candidate subset of the user index).
        item_index: ``product_id, item_idx``.
        item_factors: The broadcast :class:`ItemMatrix` of the same model.
        top_n: Candidates kept per user.
        model_version: Tag of every row.

    Returns:
        ``user_id, product_ids, scores, model_version``: each user's candidates best first (ties by
        ``item_idx``), one row per user with at least one (:mod:`jobs.common.candidate_lists`).

    Example:
        >>> bc = spark.sparkContext.broadcast(item_matrix(item_idx, y))
        >>> cands = candidates_broadcast(model.userFactors, train, subset, item_index, item_factors=bc,
        ...                              top_n=100, model_version=version)
    """
    if top_n <= 0:
        raise ValueError(f"top_n must be positive, got {top_n}")
    seen_lists = seen.groupBy(COL_USER_IDX).agg(F.collect_list(COL_ITEM_IDX).alias("seen"))
    scored = (
        user_factors.select(F.col("id").alias(COL_USER_IDX), "features")
        .join(users.select(col_user, COL_USER_IDX), COL_USER_IDX)
        .join(seen_lists, COL_USER_IDX, "left")
        .select(col_user, "features", "seen")
    )
    # The product id of each row of the broadcast matrix, looked up once on the driver: the kernel writes the
    # lists with the ids, so no candidate row is joined with the item index.
    matrix_idx = item_factors.value.item_idx
    index = pd.DataFrame(item_index.select(COL_ITEM_IDX, col_item).toPandas())
    ids = index.set_index(COL_ITEM_IDX)[col_item].reindex(matrix_idx)
    if ids.isna().any():
        missing = matrix_idx[ids.isna().to_numpy()][:5].tolist()
        raise ValueError(f"item factors without a product id in the item index, e.g. item_idx {missing}")
    item_ids = users.sparkSession.sparkContext.broadcast(ids.to_numpy(object))
    schema = T.StructType(
        [
            T.StructField(col_user, T.StringType()),
            T.StructField(CL.COL_PRODUCT_IDS, T.ArrayType(T.StringType(), containsNull=False)),
            T.StructField(CL.COL_SCORES, T.ArrayType(T.FloatType(), containsNull=False)),
        ]
    )
    ranked = scored.mapInArrow(
        _arrow_scorer(item_factors, item_ids, top_n=top_n, schema=to_arrow_schema(schema)), schema
    )
    return ranked.withColumn("model_version", F.lit(model_version))


def _arrow_scorer(
    item_factors: Broadcast[ItemMatrix], item_ids: Broadcast[np.ndarray], *, top_n: int, schema: pa.Schema
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The ``mapInArrow`` function: ``user, features, seen`` batches to ``user, product_ids, scores`` lists."""

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        matrix = item_factors.value
        ids = pa.array(item_ids.value, pa.string())
        for batch in batches:
            if batch.num_rows == 0:
                continue
            x = _user_block(batch.column("features"), matrix.factors.shape[1])
            indptr, rows = _seen_rows(batch.column("seen"), matrix.item_idx)
            found = topk_rows(x, matrix.factors, top_n, exclude_indptr=indptr, exclude_indices=rows)
            if not found.items.size:
                continue
            per_user = np.diff(found.indptr)
            yield CL.list_batch(
                batch.column(schema.field(0).name),
                np.repeat(np.arange(batch.num_rows), per_user),
                ids.take(pa.array(found.items)),
                pa.array(found.scores, pa.float32()),
                schema=schema,
            )

    return score


def _user_block(features: pa.Array, rank: int) -> np.ndarray:
    """``[n, rank]`` float32 from a column of factor arrays (``flatten`` respects the batch's slice offset)."""
    if features.null_count:
        raise ValueError("a user factor array is null")
    flat = features.flatten().to_numpy(zero_copy_only=False)
    if flat.size != len(features) * rank:
        raise ValueError(f"user factors must have {rank} values each (the item factors' rank)")
    return flat.astype(np.float32, copy=False).reshape(len(features), rank)


def _seen_rows(seen: pa.Array, item_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR ``indptr, rows`` of the item-matrix rows of each user's seen items (null list: nothing seen)."""
    lengths = pc.fill_null(pc.list_value_length(seen), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = seen.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
    # An item without factors cannot be scored, so it needs no exclusion either.
    rows, known = _item_rows(item_idx, flat)
    owner = np.repeat(np.arange(len(seen)), lengths)
    indptr = np.zeros(len(seen) + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner[known], minlength=len(seen)), out=indptr[1:])
    return indptr, rows[known]


def _item_rows(item_idx: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``ids`` in the sorted ``item_idx`` and whether each id has a row (factors) at all."""
    rows = np.minimum(np.searchsorted(item_idx, ids), max(item_idx.size - 1, 0))
    known = item_idx[rows] == ids if item_idx.size else np.zeros(ids.size, dtype=bool)
    return rows, known


def fold_in_users(
    ratings: DataFrame,
    *,
    item_factors: Broadcast[ItemMatrix],
    gram: np.ndarray,
    reg_param: float,
    alpha: float,
) -> DataFrame:
    """User vectors solved against fixed item factors: the user step of ALS without refitting the items.

    Each user's ratings on the items of ``item_factors`` go through :func:`recsys.foldin.fold_in` (the
    API's solver, one ``rank x rank`` solve per user) inside ``mapInArrow``. Ratings of items without factors
    (products first seen after the fit) are left out; a user with no other rating gets no vector.

    Args:
        ratings: ``user_idx, item_idx, rating`` of the users to fold in.
        item_factors: The broadcast :class:`ItemMatrix` of the stored fit.
        gram: ``item_factors.T @ item_factors`` (float64 ``[rank, rank]``).
        reg_param: ALS ``regParam`` of the fit.
        alpha: ALS ``alpha`` of the fit.

    Returns:
        ``id, features`` as ``ALSModel.userFactors`` (``id`` is the ``user_idx``).

    Example:
        >>> bc = spark.sparkContext.broadcast(item_matrix(item_idx, y))
        >>> x = fold_in_users(train, item_factors=bc, gram=y.T @ y, reg_param=0.1, alpha=1.0)
    """
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
        raise ValueError(f"gram must be a square matrix, got shape {gram.shape}")
    lists = (
        ratings.groupBy(COL_USER_IDX)
        .agg(F.collect_list(F.struct(COL_ITEM_IDX, COL_RATING)).alias("_r"))
        .select(
            COL_USER_IDX, F.col(f"_r.{COL_ITEM_IDX}").alias("items"), F.col(f"_r.{COL_RATING}").alias("ratings")
        )
    )
    schema = T.StructType(
        [T.StructField("id", T.IntegerType()), T.StructField("features", T.ArrayType(T.FloatType()))]
    )
    return lists.mapInArrow(_arrow_folder(item_factors, gram, reg_param=reg_param, alpha=alpha), schema)


def _arrow_folder(
    item_factors: Broadcast[ItemMatrix], gram: np.ndarray, *, reg_param: float, alpha: float
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The ``mapInArrow`` function: ``user_idx, items, ratings`` batches to ``id, features`` rows."""

    def fold(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        matrix = item_factors.value
        rank = matrix.factors.shape[1]
        for batch in batches:
            if batch.num_rows == 0:
                continue
            items = batch.column("items")
            lengths = pc.fill_null(pc.list_value_length(items), 0).to_numpy(zero_copy_only=False)
            ends = np.cumsum(lengths)
            flat = items.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
            values = batch.column("ratings").flatten().to_numpy(zero_copy_only=False).astype(np.float64)
            rows, known = _item_rows(matrix.item_idx, flat)
            users = batch.column(COL_USER_IDX).to_numpy(zero_copy_only=False)
            kept: list[int] = []
            vectors: list[np.ndarray] = []
            for u in range(batch.num_rows):
                part = slice(int(ends[u] - lengths[u]), int(ends[u]))
                mask = known[part]
                if not mask.any():
                    continue
                x = fold_in(matrix.factors, gram, rows[part][mask], values[part][mask], reg_param=reg_param,
                            alpha=alpha)
                kept.append(int(users[u]))
                vectors.append(x.astype(np.float32))
            if not kept:
                continue
            flat_x = np.concatenate(vectors)
            offsets = pa.array(np.arange(len(kept) + 1, dtype=np.int32) * rank)
            yield pa.RecordBatch.from_arrays(
                [pa.array(kept, pa.int32()), pa.ListArray.from_arrays(offsets, pa.array(flat_x, pa.float32()))],
                names=["id", "features"],
            )

    return fold
