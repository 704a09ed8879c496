"""The shape of the candidate tables (``cf_candidates``, ``content_candidates``): one row per user.

A row holds the user's candidates best first: ``user_id, product_ids, scores`` (the rank of a candidate is
its place in the lists, from 1), plus the ``model_version`` of the job that wrote it. One row per user
instead of one per (user, candidate) is what the blend needs, and it costs far less to move: at 4M
generated events (100 candidates for each of 103,864 users) a table of rows was 10.4M rows to write, read
and shuffle by user into the blend, a table of lists 0.1M (``docs/blend.md``, "Candidate lists").

The kernels that score users build the lists directly (:func:`list_batch`); the Spark join versions and the
tests go through :func:`to_lists` and :func:`to_rows`.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys import schema as S

COL_PRODUCT_IDS = "product_ids"
COL_SCORES = "scores"
COL_SCORE = "score"
COL_RANK = "rank"


def to_lists(rows: DataFrame, *, score_type: str) -> DataFrame:
    """``user_id, product_id, score, rank`` rows (rank 1 the best) -> ``user_id, product_ids, scores`` lists in
    rank order, scores cast to ``score_type``; other columns are dropped.

    Example:
        >>> to_lists(ranked, score_type="float").columns
        ['user_id', 'product_ids', 'scores']
    """
    entry = F.struct(F.col(COL_RANK), F.col(S.COL_ITEM), F.col(COL_SCORE).cast(score_type).alias(COL_SCORE))
    ranked = rows.groupBy(S.COL_USER).agg(F.sort_array(F.collect_list(entry)).alias("_l"))
    return ranked.select(
        S.COL_USER,
        F.col(f"_l.{S.COL_ITEM}").alias(COL_PRODUCT_IDS),
        F.col(f"_l.{COL_SCORE}").alias(COL_SCORES),
    )


def to_rows(lists: DataFrame) -> DataFrame:
    """A candidate table's lists as ``user_id, product_id, score, rank`` rows (and any other column kept).

    Example:
        >>> to_rows(lake.read_table(spark, path)).where("rank <= 10")
    """
    others = [c for c in lists.columns if c not in (S.COL_USER, COL_PRODUCT_IDS, COL_SCORES)]
    exploded = lists.select(
        S.COL_USER, *others, F.posexplode(F.arrays_zip(COL_PRODUCT_IDS, COL_SCORES)).alias("_pos", "_c")
    )
    return exploded.select(
        S.COL_USER,
        F.col(f"_c.{COL_PRODUCT_IDS}").alias(S.COL_ITEM),
        F.col(f"_c.{COL_SCORES}").alias(COL_SCORE),
        (F.col("_pos") + 1).cast("int").alias(COL_RANK),
        *others,
    )


def list_batch(
    users: pa.Array,
    user_rows: np.ndarray,
    items: pa.Array,
    scores: pa.Array,
    *,
    schema: pa.Schema,
) -> pa.RecordBatch:
    """One row per user from candidate rows grouped by user, best first within each user.

    Args:
        users: The user ids the rows point into.
        user_rows: For each candidate row, its user's place in ``users``; non-decreasing.
        items: The candidate product ids, one per row.
        scores: The candidate scores, one per row.
        schema: ``user_id, product_ids, scores`` (the list types of the table).

    Returns:
        The users with at least one candidate, in ``user_rows`` order.
    """
    user_rows = np.asarray(user_rows, dtype=np.int64)
    if len(user_rows):
        starts = np.flatnonzero(np.r_[True, user_rows[1:] != user_rows[:-1]])
    else:
        starts = np.zeros(0, dtype=np.int64)
    offsets = pa.array(np.r_[starts, len(user_rows)].astype(np.int32))
    ids_field, scores_field = schema.field(COL_PRODUCT_IDS), schema.field(COL_SCORES)
    return pa.RecordBatch.from_arrays(
        [
            users.take(pa.array(user_rows[starts])).cast(schema.field(S.COL_USER).type),
            pa.ListArray.from_arrays(offsets, items.cast(ids_field.type.value_type), type=ids_field.type),
            pa.ListArray.from_arrays(offsets, scores.cast(scores_field.type.value_type), type=scores_field.type),
        ],
        schema=schema,
    )


def candidate_counts(lists: DataFrame) -> dict[str, int]:
    """``rows`` (candidates), ``users`` and distinct ``products`` of a candidate table, in one pass (no list
    is empty: a user without candidates has no row).

    Example:
        >>> candidate_counts(lake.read_table(spark, path))["users"]
    """
    flat = lists.select(S.COL_USER, F.explode(COL_PRODUCT_IDS).alias("_p"))
    row = flat.agg(
        F.count(F.lit(1)).alias("rows"), F.countDistinct(S.COL_USER).alias("users"), F.countDistinct("_p")
    ).first()
    assert row is not None  # an aggregate always has one row
    return {"rows": int(row[0]), "users": int(row[1]), "products": int(row[2])}
