"""Item-kNN neighbours in numpy on product numbers: the fast path of ``itemknn_neighbors``.

The SQL version (:func:`jobs.evaluate.baselines.itemknn_neighbors`) self-joins the (user, product) pairs on
the user, counts each (i, j) in a hash aggregate, joins the support of i and of j, and ranks with a window:
at 1M events that is 13M joined rows, 8M distinct (i, j) rows through two joins and a sort. Here the pairs are
clustered by user once (:func:`clustered_pairs`) and read twice by ``mapInArrow`` kernels; each user's
products are deduplicated and capped to the most recent ``max_items_per_user`` (as
:func:`jobs.evaluate.baselines.capped_pairs`) in numpy:

1. :func:`supports`: the capped products, counted per product id, give the support ``|U_i|`` and the sorted
   distinct ids, collected on the driver (one row per product, the catalogue side like the blend's broadcast
   catalogue) and broadcast;
2. :func:`neighbors_from_supports`: each user's capped products are numbered by those ids and crossed, one
   ``(i, j)`` per ordered pair ``i != j``, counted within each chunk of users (:func:`counted_pairs`: each
   distinct pair of the chunk once, with its count) and packed (:func:`packed_pairs`: one row per ``i`` of
   the chunk, its ``j`` and counts as int32 bytes, so the shuffle moves tens of pairs per row instead of one
   Spark row per pair); clustered by ``i``, the counts are summed and the cosine ``co / sqrt(|U_i| |U_j|)``
   ranked per ``i`` (ties by neighbour id, as the SQL window) in numpy.

Same rows and same scores as the SQL version (tested).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.common.arrow_chunks import run_codes, sorted_codes, whole_key_tables
from jobs.common.chunks import cluster_by_key

COL_I, COL_J, COL_CO = "_i", "_j", "_co"
# One row per product i and chunk of users: the chunk's (j, co) of that i packed as int32 bytes.
PAIR_SCHEMA = T.StructType(
    [
        T.StructField(COL_I, T.IntegerType(), False),
        T.StructField(COL_J, T.BinaryType(), False),
        T.StructField(COL_CO, T.BinaryType(), False),
    ]
)
# Input rows (user, product) per call of the crossing kernel, and packed rows (one per i and chunk of users,
# tens of pairs each) per call of the ranking kernel.
CHUNK_ROWS = 100_000
PACKED_CHUNK_ROWS = 40_000
# Pairs per packed batch: 1 GiB of int32 per binary column, half of what Arrow's 32-bit offsets address.
MAX_PACKED_PAIRS = 1 << 28


def capped_codes(user: np.ndarray, item: np.ndarray, ts: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct ``(user, item)`` of the rows, each user's ``cap`` most recent items (then smallest item) only.

    Args:
        user: Run codes of the users (a user's rows contiguous).
        item: Product numbers (the sorted id order, so a smaller number is a smaller id).
        ts: Last-event time of each row as int64; equal everywhere when there is none (the cap then keeps the
            smallest ids, as :func:`jobs.evaluate.baselines.capped_pairs` without ``last_ts``).
        cap: Items kept per user.

    Returns:
        ``(user, item)`` sorted by user, then most recent first.
    """
    order = np.lexsort((item, -ts, user))
    user, item = user[order], item[order]
    key = user * (int(item.max(initial=0)) + 1) + item
    # Rows of one (user, item) are adjacent only after sorting on that key; keep each one's latest row,
    # which the lexsort above put first among them.
    first = np.zeros(len(key), dtype=bool)
    if len(key):
        by_key = np.argsort(key, kind="stable")
        k = key[by_key]
        first[by_key[np.r_[True, k[1:] != k[:-1]]]] = True
    user, item = user[first], item[first]
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]]) if len(user) else np.zeros(0, dtype=np.int64)
    pos = np.arange(len(user)) - np.repeat(starts, np.diff(np.r_[starts, len(user)]))
    keep = pos < cap
    return user[keep], item[keep]


def crossed_pairs(user: np.ndarray, item: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every ordered pair ``(i, j)``, ``i != j``, of distinct items of the same user (rows sorted by user)."""
    if not len(user):
        empty = np.zeros(0, dtype=np.int32)
        return empty, empty
    starts = np.flatnonzero(np.r_[True, user[1:] != user[:-1]])
    sizes = np.diff(np.r_[starts, len(user)])
    # Row r of user u pairs with each of u's rows: r repeated sizes[u] times against u's whole run.
    per_row = np.repeat(sizes, sizes)
    left = np.repeat(np.arange(len(user)), per_row)
    run_start = np.repeat(starts, sizes)
    offsets = np.repeat(np.cumsum(per_row) - per_row, per_row)
    right = np.repeat(run_start, per_row) + (np.arange(per_row.sum()) - offsets)
    off = left != right
    return item[left[off]].astype(np.int32), item[right[off]].astype(np.int32)


def counted_pairs(i: np.ndarray, j: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each distinct ``(i, j)`` of the rows once, with its number of rows; items are numbers below ``n``.

    A chunk of a few thousand users repeats pairs of popular products, so the shuffle by ``i`` moves fewer
    rows than there are crossed pairs.
    """
    key = np.sort(i.astype(np.int64) * np.int64(n) + j)
    if not len(key):
        empty = np.zeros(0, dtype=np.int32)
        return empty, empty, empty
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    co = np.diff(np.r_[first, len(key)])
    key = key[first]
    return (key // n).astype(np.int32), (key % n).astype(np.int32), co.astype(np.int32)


def _int32_binary(values: np.ndarray, bounds: np.ndarray) -> pa.BinaryArray:
    """``values[bounds[k]:bounds[k + 1]]`` (int32) as binary value ``k``; ``bounds`` starts at 0."""
    offsets = (np.asarray(bounds, dtype=np.int64) * 4).astype(np.int32)
    data = np.ascontiguousarray(values, dtype=np.int32)
    return pa.BinaryArray.from_buffers(
        pa.binary(), len(bounds) - 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def packed_pairs(
    i: np.ndarray, j: np.ndarray, co: np.ndarray, *, max_pairs: int = MAX_PACKED_PAIRS
) -> Iterator[pa.RecordBatch]:
    """The :data:`PAIR_SCHEMA` rows of ``(i, j, co)`` sorted by ``i``: one row per distinct ``i`` with its ``j`` and
    ``co`` as int32 bytes, in batches of at most ``max_pairs`` pairs (whole rows; a row has at most one pair per
    product).

    A chunk of users yields tens of millions of pairs at a few million events; as one Spark row each, the
    shuffle by ``i`` spends most of the item-kNN time on rows of 12 bytes. Packed, it moves tens of pairs per row.
    The batch limit keeps each binary column below Arrow's 2 GiB of 32-bit offsets, whatever
    ``max_items_per_user`` makes a chunk cross.
    """
    if max_pairs <= 0:
        raise ValueError(f"max_pairs must be positive, got {max_pairs}")
    if not len(i):
        yield _packed(i, j, co, np.zeros(0, dtype=np.int64))
        return
    starts = np.flatnonzero(np.r_[True, i[1:] != i[:-1]])
    ends = np.r_[starts[1:], len(i)]
    lo = 0
    while lo < len(starts):
        # The runs ending within max_pairs pairs of this batch's first one; at least that first run.
        hi = max(lo + 1, int(np.searchsorted(ends, starts[lo] + max_pairs, side="right")))
        a, b = starts[lo], ends[hi - 1]
        yield _packed(i[a:b], j[a:b], co[a:b], starts[lo:hi] - a)
        lo = hi


def _packed(i: np.ndarray, j: np.ndarray, co: np.ndarray, starts: np.ndarray) -> pa.RecordBatch:
    bounds = np.r_[starts, len(i)]
    return pa.RecordBatch.from_arrays(
        [pa.array(i[starts], pa.int32()), _int32_binary(j, bounds), _int32_binary(co, bounds)],
        names=[COL_I, COL_J, COL_CO],
    )


def _binary_int32(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """The int32 values of a column of :func:`_int32_binary` values, concatenated, and each row's count."""
    arr = col.combine_chunks()
    bounds = np.frombuffer(arr.buffers()[1], dtype=np.int32)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[bounds[0] : bounds[-1]]
    return data.view(np.int32), np.diff(bounds) // 4


def unpacked_pairs(rows: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(i, j, co)`` arrays, one entry per pair, of :func:`packed_pairs` rows."""
    j, sizes = _binary_int32(rows.column(COL_J))
    co, _ = _binary_int32(rows.column(COL_CO))
    i = np.repeat(rows.column(COL_I).combine_chunks().to_numpy(zero_copy_only=False), sizes)
    return i, j, co


def top_neighbors(
    i: np.ndarray, j: np.ndarray, co: np.ndarray, support: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cosine of each distinct ``(i, j)`` from its summed counts ``co`` and the supports; the ``m`` best per ``i``.

    All rows of an ``i`` must be in the arrays (a pair may come in several rows, one per chunk of users that
    counted it). Ties break on ``j`` (the neighbour id order).
    """
    n = np.int64(len(support))
    key = i.astype(np.int64) * n + j
    if not len(key):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    order = np.argsort(key, kind="stable")
    key = key[order]
    first = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    co = np.add.reduceat(co[order].astype(np.int64), first)
    key = key[first]
    a, b = key // n, key % n
    score = co / np.sqrt(support[a] * support[b])
    # key is sorted by (a, b): a stable sort on -score then a stable sort on a keeps b ascending among ties.
    order = np.argsort(-score, kind="stable")
    order = order[np.argsort(a[order], kind="stable")]
    a, b, score = a[order], b[order], score[order]
    starts = np.flatnonzero(np.r_[True, a[1:] != a[:-1]])
    pos = np.arange(len(a)) - np.repeat(starts, np.diff(np.r_[starts, len(a)]))
    keep = pos < m
    return a[keep], b[keep], score[keep]


def _capped(chunk: pa.Table, col_user: str, col_item: str, cap: int) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """The capped ``(user, item)`` codes of a chunk of whole users, and the chunk's sorted product ids."""
    item, ids = sorted_codes(chunk.column(col_item))
    ts = pc.fill_null(chunk.column("_ts"), 0).combine_chunks().to_numpy(zero_copy_only=False).astype(np.int64)
    user, item = capped_codes(run_codes(chunk.column(col_user)), item, ts, cap)
    return user, item, ids


def _supports(batches: Iterable[pa.RecordBatch], *, col_user: str, col_item: str, cap: int) -> Iterator[pa.RecordBatch]:
    for chunk in whole_key_tables(batches, col_user, CHUNK_ROWS):
        _, item, ids = _capped(chunk, col_user, col_item, cap)
        yield pa.RecordBatch.from_arrays([ids.take(pa.array(item))], names=[col_item])


def _cross(
    batches: Iterable[pa.RecordBatch], ids: pa.Array, *, col_user: str, col_item: str, cap: int
) -> Iterator[pa.RecordBatch]:
    for chunk in whole_key_tables(batches, col_user, CHUNK_ROWS):
        user, item, local = _capped(chunk, col_user, col_item, cap)
        # The chunk's ids to the global numbers (every id of the pairs is in ``ids``).
        glob = pc.index_in(local, value_set=ids).to_numpy(zero_copy_only=False).astype(np.int64)
        yield from packed_pairs(*counted_pairs(*crossed_pairs(user, glob[item]), len(ids)))


def _rank(
    batches: Iterable[pa.RecordBatch], ids: pa.Array, support: np.ndarray, *, m: int, col_item: str, col_nbr: str
) -> Iterator[pa.RecordBatch]:
    for chunk in whole_key_tables(batches, COL_I, PACKED_CHUNK_ROWS):
        a, b, score = top_neighbors(*unpacked_pairs(chunk), support, m)
        yield pa.RecordBatch.from_arrays(
            [ids.take(pa.array(a)), ids.take(pa.array(b)), pa.array(score, pa.float64())],
            names=[col_item, col_nbr, "score"],
        )


def clustered_pairs(pairs: DataFrame, *, partitions: int, col_user: str, col_item: str) -> DataFrame:
    """``user, product, _ts`` (last event time in microseconds, null without ``last_ts``), clustered by user."""
    ts = F.unix_micros(F.col("last_ts")) if "last_ts" in pairs.columns else F.lit(None).cast("long")
    return cluster_by_key(pairs.select(col_user, col_item, ts.alias("_ts")), col_user, partitions)


def supports(rows: DataFrame, *, max_items_per_user: int, col_user: str, col_item: str) -> DataFrame:
    """``product_id, count``: the users of each product after the cap, from :func:`clustered_pairs` rows."""
    schema = T.StructType([T.StructField(col_item, T.StringType(), False)])
    capped = rows.mapInArrow(
        lambda it: _supports(it, col_user=col_user, col_item=col_item, cap=max_items_per_user), schema
    )
    return capped.groupBy(col_item).count()


def neighbors_from_supports(
    rows: DataFrame,
    support: pd.DataFrame,
    *,
    m: int,
    max_items_per_user: int,
    partitions: int,
    col_user: str,
    col_item: str,
    col_nbr: str,
) -> DataFrame:
    """Top-``m`` cosine neighbours of each product, computed on product numbers (module docstring).

    Args:
        rows: :func:`clustered_pairs` of the ``user, product[, last_ts]`` rows.
        support: :func:`supports` of the same rows, collected (one row per distinct product).
        m: Neighbours kept per product.
        max_items_per_user: Products per user that enter the crossing.
        partitions: Partitions of the shuffle by product.

    Returns:
        ``product_id, neighbor_id, score``, as :func:`jobs.evaluate.baselines.itemknn_neighbors`.

    Example:
        >>> rows = clustered_pairs(pairs, partitions=8, col_user="user_id", col_item="product_id")
        >>> sup = supports(rows, max_items_per_user=500, col_user="user_id", col_item="product_id").toPandas()
        >>> neighbors_from_supports(rows, sup, m=100, max_items_per_user=500, partitions=8, ...)
    """
    spark = rows.sparkSession
    support = support.sort_values(col_item, kind="stable")
    ids = pa.array(support[col_item].to_numpy(object), pa.string())
    bc_ids = spark.sparkContext.broadcast(ids)
    bc_support = spark.sparkContext.broadcast(support["count"].to_numpy(np.int64))
    crossed = rows.mapInArrow(
        lambda it: _cross(it, bc_ids.value, col_user=col_user, col_item=col_item, cap=max_items_per_user),
        PAIR_SCHEMA,
    )
    schema = T.StructType(
        [
            T.StructField(col_item, T.StringType(), False),
            T.StructField(col_nbr, T.StringType(), False),
            T.StructField("score", T.DoubleType(), False),
        ]
    )
    return cluster_by_key(crossed, COL_I, partitions).mapInArrow(
        lambda it: _rank(it, bc_ids.value, bc_support.value, m=m, col_item=col_item, col_nbr=col_nbr), schema
    )
