"""The blend in one pass over user-clustered rows, with the catalogue side broadcast: the job's fast path.

The join version (:func:`jobs.blend.transforms.blend_users` after ``popular_candidates``,
``itemknn_recommend`` and ``enrich``) builds every (user, candidate) row in Spark: the item-kNN scores alone
are a join of each user's history with the neighbour lists (one row per history product and neighbour) and a
window, then the candidate union is joined three more times. At 1M events that took minutes and ran out of
execution memory on a 3 GB driver. Everything it joins on the product side is small next to the users: the
catalogue (category, availability), the item-kNN neighbour lists and the popular head. So here those are
packed into numpy arrays (:class:`BlendCatalogue`), broadcast once, and each user's history rows and CF and
content candidates travel together through one shuffle (:func:`jobs.common.chunks.cluster_by_key`) into
``mapInArrow``, where :func:`score_chunk` computes the item-kNN and popular candidates and calls the shared
:func:`recsys.blend_arrays.blend_arrays` (the function the API's on-demand path calls). Same rule and same
lists as the join version (tested); the job falls back to it when the catalogue passes
``blend.broadcast_max_products``.

The kernel stays in Arrow and numpy (:mod:`jobs.common.arrow_chunks`): no pandas conversion of the millions
of rows, product ids coded with ``pyarrow.compute.index_in``, users coded by their runs (a user's rows are
contiguous), and the lists built as Arrow list arrays over offsets, so no Python object is made per row or
per shown product.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import to_arrow_schema
from scipy import sparse

from jobs.blend import transforms as tr
from jobs.common.arrow_chunks import run_codes, whole_key_tables
from jobs.common.candidate_lists import COL_PRODUCT_IDS, COL_SCORES
from jobs.common.chunks import cluster_by_key
from jobs.evaluate.baselines import COL_NEIGHBOR
from recsys import blend as B
from recsys import schema as S
from recsys.blend_arrays import SOURCES, Blended, blend_arrays
from recsys.config import BlendConfig

COL_KIND = "kind"
HISTORY, CF, CONTENT = 0, 1, 2
_KIND_SOURCE = {CF: SOURCES.index("cf"), CONTENT: SOURCES.index("content")}
_ITEMKNN = SOURCES.index("itemknn")
_POPULAR = SOURCES.index("popular")
# Rows per kernel call: a few hundred users (about 22 history rows and 2 candidate-list rows each). At 4M events
# 10k rows took the blend of the users from 68.8 to 41.4 s against 200k (docs/blend.md, "Candidate lists").
CHUNK_ROWS = 10_000
# What the kernel returns to mapInArrow: RECOMMENDATIONS_SCHEMA in Arrow, list items non-null.
ARROW_SCHEMA = to_arrow_schema(tr.RECOMMENDATIONS_SCHEMA)


@dataclass(frozen=True)
class BlendCatalogue:
    """The product side of the blend, one row per product id (sorted, so a smaller row is a smaller id).

    ``listed``: in the catalogue and available; ``category``: category code, -1 when unknown. The item-kNN
    lists are stored reversed, keyed by the neighbour (``knn_indptr`` CSR over rows): product ``i``'s slice
    holds every ``j`` that has ``i`` among its nearest products, with ``cos(i, j)``, so a user's history row
    ``i`` adds ``cos(i, j)`` to candidate ``j`` (the neighbourhood of the candidate, as
    :func:`jobs.evaluate.baselines.itemknn_recommend`). ``popular``: the global head offered to every user.
    """

    ids: np.ndarray
    listed: np.ndarray
    category: np.ndarray
    knn_indptr: np.ndarray
    knn_cand: np.ndarray
    knn_score: np.ndarray
    popular_item: np.ndarray
    popular_score: np.ndarray

    @cached_property
    def id_array(self) -> pa.StringArray:
        """``ids`` as an Arrow array, built once per copy of the catalogue on first use (in each Python worker,
        after the broadcast is read): the kernel looks product ids up in it and takes the shown ids from it."""
        return pa.array(self.ids, type=pa.string())

    @cached_property
    def knn_matrix(self) -> sparse.csr_matrix:
        """The reversed item-kNN lists as a products x products CSR matrix (row ``i``: the ``j`` with ``cos(i, j)``),
        built once per copy of the catalogue like :attr:`id_array`."""
        n = len(self.ids)
        return sparse.csr_matrix((self.knn_score, self.knn_cand, self.knn_indptr), shape=(n, n))

    @cached_property
    def positive_scores(self) -> bool:
        """Every item-kNN cosine is above 0 (co-occurrence cosines are), so no sum of them is 0."""
        return bool((self.knn_score > 0).all())


def blend_catalogue(products: pd.DataFrame, knn: pd.DataFrame, popular: pd.DataFrame) -> BlendCatalogue:
    """Packs ``product_id, category, available``, ``product_id, neighbor_id, score`` (item-kNN) and the
    popular head ``product_id, score`` (best first).

    Example:
        >>> cat = blend_catalogue(products.toPandas(), nbrs.toPandas(), head.toPandas())
    """
    # pd.unique hashes the millions of neighbour ids; only the distinct ones are sorted.
    ids = np.sort(
        pd.unique(
            np.concatenate(
                [
                    products[S.COL_ITEM].to_numpy(object),
                    knn[S.COL_ITEM].to_numpy(object),
                    knn[COL_NEIGHBOR].to_numpy(object),
                    popular[S.COL_ITEM].to_numpy(object),
                ]
            )
        ).astype(object)
    )
    index = pd.Index(ids)
    rows = index.get_indexer(products[S.COL_ITEM])
    listed = np.zeros(len(ids), dtype=bool)
    listed[rows] = products[S.COL_AVAILABLE].fillna(False).astype(bool).to_numpy()
    category = np.full(len(ids), -1, dtype=np.int64)
    category[rows] = pd.factorize(products[S.COL_CATEGORY].to_numpy(object))[0]
    nbr = index.get_indexer(knn[COL_NEIGHBOR])
    cand = index.get_indexer(knn[S.COL_ITEM])
    order = np.lexsort((cand, nbr))
    nbr, cand, score = nbr[order], cand[order], knn["score"].to_numpy(np.float64)[order]
    indptr = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(np.bincount(nbr, minlength=len(ids)), out=indptr[1:])
    return BlendCatalogue(
        ids=ids,
        listed=listed,
        category=category,
        knn_indptr=indptr,
        knn_cand=cand.astype(np.int64),
        knn_score=score,
        popular_item=index.get_indexer(popular[S.COL_ITEM]).astype(np.int64),
        popular_score=popular["score"].to_numpy(np.float64),
    )


def _group_starts(key: np.ndarray) -> np.ndarray:
    """Start of each run of equal values in a sorted array."""
    if not len(key):
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, key[1:] != key[:-1]])


def _may_be_top(user: np.ndarray, score: np.ndarray, k: int | np.ndarray, bins: int = 64) -> np.ndarray:
    """A mask over rows sorted by ``user`` keeping every row that can be among its user's ``k`` best scores
    (``k`` an int, or an array indexed by user code: each user's own ``k``).

    Each user's scores are put in ``bins`` equal-width bins between its lowest and highest; the rows kept are
    those in the highest bins that together hold at least ``k`` rows (all of a user's rows when it has fewer).
    The bin of a score never decreases with the score, so the ``k``-th best score and every row tied with it
    are kept: sorting only what is kept gives the same top ``k``, ties included, as sorting everything, and
    far fewer rows than a user's thousands of item-kNN pairs are left to sort.
    """
    if len(user) == 0:
        return np.zeros(0, dtype=bool)
    starts = _group_starts(user)
    group = np.cumsum(np.r_[False, user[1:] != user[:-1]])
    lo = np.minimum.reduceat(score, starts)[group]
    span = np.maximum.reduceat(score, starts)[group] - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = np.where(span > 0, (score - lo) / span, 0.0)
    slot = np.minimum((scaled * bins).astype(np.int64), bins - 1)
    sizes = np.bincount(group * bins + slot, minlength=len(starts) * bins).reshape(len(starts), bins)
    # tail[g, b]: rows of group g in bins b and above; the cut is the highest bin whose tail holds k rows.
    tail = np.cumsum(sizes[:, ::-1], axis=1)[:, ::-1]
    need = np.asarray(k)[user[starts]][:, None] if np.ndim(k) else np.asarray(k)
    cut = np.maximum((tail >= need).sum(axis=1) - 1, 0)
    return slot >= cut[group]


def _summed_pairs(pu: np.ndarray, cand: np.ndarray, weight: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct keys ``user * n + cand`` (sorted) and the sum of ``weight`` over each one's rows, in row order."""
    key = pu * n + cand
    order = np.argsort(key, kind="stable")
    key = key[order]
    first = _group_starts(key)
    return key[first], np.add.reduceat(weight[order], first)


def _product_sums(
    u: np.ndarray, i: np.ndarray, cat: BlendCatalogue, n: int, *, sparse_product: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(user, j, sum)``: each candidate ``j`` of each user's history rows ``i`` with its summed cosines, each
    sum taken in history row order then neighbour order; rows grouped by user (in user order).

    With positive cosines the history (users x products, CSR) times the reversed neighbour lists
    (:attr:`BlendCatalogue.knn_matrix`) gives them: scipy's product keeps one accumulator of ``n`` cells and
    touches only the pairs, in that same order, so the sums are the same to the bit; its columns are left
    unsorted inside a user's row. It leaves out a sum of 0, which only a zero or negative cosine can make;
    such a catalogue takes a sort of the pairs instead.
    """
    if sparse_product and cat.positive_scores:
        n_users = int(u[-1]) + 1
        hist = sparse.csr_matrix((np.ones(len(i)), i, np.searchsorted(u, np.arange(n_users + 1))), shape=(n_users, n))
        summed = hist @ cat.knn_matrix
        rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(summed.indptr))
        return rows, summed.indices.astype(np.int64), summed.data
    starts, ends = cat.knn_indptr[i], cat.knn_indptr[i + 1]
    counts = ends - starts
    flat = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(counts.sum())
    key, sums = _summed_pairs(np.repeat(u, counts), cat.knn_cand[flat], cat.knn_score[flat], n)
    return key // n, key % n, sums


def itemknn_candidates(
    hist_user: np.ndarray,
    hist_item: np.ndarray,
    cat: BlendCatalogue,
    *,
    k: int,
    sparse_product: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per user, the ``k`` best ``sum over history i of cos(i, j)`` products ``j`` not in the history.

    ``hist_user`` is non-decreasing (a user's rows contiguous, as the kernel's run codes). Ties break on the
    product id (the row). ``sparse_product`` False forces the sort of the pairs (tests). Returns
    ``(user, item, score)`` arrays.
    """
    known = hist_item >= 0
    u, i = hist_user[known], hist_item[known]
    empty = np.zeros(0, dtype=np.int64)
    if not len(u):
        return empty, empty, np.zeros(0, dtype=np.float64)
    n = max(len(cat.ids), 1)
    user, item, sums = _product_sums(u, i, cat, n, sparse_product=sparse_product)
    # The user's own products are still among the sums: keeping what may be in the user's k + (history rows)
    # best keeps every row of its k best others, and leaves few rows for the sorts below.
    maybe = _may_be_top(user, sums, k + np.bincount(u, minlength=int(u[-1]) + 1))
    key, sums = user[maybe] * n + item[maybe], sums[maybe]
    order = np.argsort(key, kind="stable")
    key, sums = key[order], sums[order]
    # The user's own products out: key is sorted, so each history key is found by binary search.
    if len(key):
        own = u * n + i
        at = np.minimum(np.searchsorted(key, own), len(key) - 1)
        fresh = np.ones(len(key), dtype=bool)
        fresh[at[key[at] == own]] = False
        key, sums = key[fresh], sums[fresh]
    user, item = key // n, key % n
    # key is sorted, so rows run by user then product id: stable sorts (score, then user) keep equal scores
    # in product id order. Two argsorts beat np.lexsort's by a quarter here.
    order = np.argsort(-sums, kind="stable")
    order = order[np.argsort(user[order], kind="stable")]
    user, item, sums = user[order], item[order], sums[order]
    starts = _group_starts(user)
    pos = np.arange(len(user)) - np.repeat(starts, np.diff(np.r_[starts, len(user)]))
    keep = pos < k
    return user[keep], item[keep], sums[keep]


def _column(rows: pa.Table, name: str) -> pa.Array:
    return rows.column(name).combine_chunks()


def _index_in(values: pa.Array, value_set: pa.Array) -> np.ndarray:
    """Position of each value in ``value_set``, -1 when absent (a null matches a null of ``value_set``)."""
    if value_set.type != values.type:
        value_set = value_set.cast(values.type)
    found = pc.index_in(values, value_set=value_set)
    return pc.fill_null(found, -1).to_numpy().astype(np.int64)


def _flags(rows: pa.Table, name: str) -> np.ndarray:
    return pc.fill_null(_column(rows, name), False).to_numpy(zero_copy_only=False)


def _product_codes(
    pid: pa.Array, kind: np.ndarray, cat: BlendCatalogue
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per row, the catalogue row of its product; returns ``(code, items, listed, category)``.

    Candidate products outside the catalogue still count in their source's normalisation; they get codes
    after the catalogue's (unlisted, no category) and are dropped by the filter as in the join version. A
    history product outside the catalogue gets the code of such a candidate when there is one, else -1.
    """
    code = _index_in(pid, cat.id_array)
    unknown = (code < 0) & (kind != HISTORY)
    if not unknown.any():
        return code, cat.ids, cat.listed, cat.category
    extra = pc.unique(pid.filter(pa.array(unknown)))
    n = len(cat.ids)
    code[unknown] = n + _index_in(pid.filter(pa.array(unknown)), extra)
    hist_unknown = (code < 0) & (kind == HISTORY)
    found = _index_in(pid.filter(pa.array(hist_unknown)), extra)
    code[np.flatnonzero(hist_unknown)[found >= 0]] = n + found[found >= 0]
    items = np.concatenate([cat.ids, extra.to_numpy(zero_copy_only=False).astype(object)])
    listed = np.concatenate([cat.listed, np.zeros(len(extra), dtype=bool)])
    category = np.concatenate([cat.category, np.full(len(extra), -1, dtype=np.int64)])
    return code, items, listed, category


def _list_array(offsets: pa.Array, values: pa.Array, field: pa.Field) -> pa.ListArray:
    return pa.ListArray.from_arrays(offsets, values, type=field.type)


def _candidates(
    user: np.ndarray,
    code: np.ndarray,
    kind: np.ndarray,
    score: np.ndarray,
    n_users: int,
    cat: BlendCatalogue,
    *,
    itemknn_k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(user, item, source, score)`` of every candidate: the CF and content rows, the item-kNN candidates of
    the history rows (catalogue products only) and the popular head for every user."""
    hist = kind == HISTORY
    hist_item = code[hist]
    knn_user, knn_item, knn_score = itemknn_candidates(
        user[hist], np.where(hist_item < len(cat.ids), hist_item, -1), cat, k=itemknn_k
    )
    cand = ~hist
    n_pop = len(cat.popular_item)
    return (
        np.concatenate([user[cand], knn_user, np.repeat(np.arange(n_users), n_pop)]),
        np.concatenate([code[cand], knn_item, np.tile(cat.popular_item, n_users)]),
        np.concatenate(
            [
                np.where(kind[cand] == CF, _KIND_SOURCE[CF], _KIND_SOURCE[CONTENT]),
                np.full(len(knn_user), _ITEMKNN),
                np.full(n_users * n_pop, _POPULAR),
            ]
        ),
        np.concatenate([score[cand], knn_score, np.tile(cat.popular_score, n_users)]),
    )


def _lists(user_ids: pa.Array, out: Blended, cat: BlendCatalogue) -> pa.RecordBatch:
    """One :data:`ARROW_SCHEMA` row per user code (``user_ids``), from :func:`blend_arrays`' output; a user
    with nothing shown gets empty lists."""
    # out runs by user code; codes past the catalogue's are unlisted, so every item shown is a catalogue row.
    offsets = pa.array(np.searchsorted(out.user, np.arange(len(user_ids) + 1)).astype(np.int32))
    schema = ARROW_SCHEMA
    return pa.RecordBatch.from_arrays(
        [
            user_ids.cast(schema.field(S.COL_USER).type),
            _list_array(offsets, cat.id_array.take(pa.array(out.item)), schema.field(tr.COL_PRODUCT_IDS)),
            _list_array(offsets, pa.array(out.score.astype(np.float32)), schema.field(tr.COL_SCORES)),
            _list_array(offsets, pa.array(out.sources.astype(np.int32)), schema.field(tr.COL_SOURCES)),
        ],
        schema=schema,
    )


def _flat_rows(rows: pa.Table) -> tuple[pa.Array, np.ndarray, pa.Array, np.ndarray, np.ndarray, pa.Table]:
    """The kernel's rows one per (user, product): the history rows first, in row order, then each CF and
    content row's lists flattened, best first. Returns ``(user_ids, user, product_id, kind, score, history)``:
    the users in order of appearance, each row's user code, product id, kind and score (NaN for history
    rows), and the history rows themselves (for their flags)."""
    users = _column(rows, S.COL_USER)
    # A user's rows are contiguous, so its run is its code: codes in order of appearance, as pd.factorize.
    user = run_codes(users)
    user_ids = users.take(pa.array(np.flatnonzero(np.diff(user, prepend=-1))))
    kind = _column(rows, COL_KIND).to_numpy(zero_copy_only=False).astype(np.int64)
    hist_rows, list_rows = np.flatnonzero(kind == HISTORY), pa.array(np.flatnonzero(kind != HISTORY))
    history = rows.select([S.COL_ITEM, B.COL_PURCHASED, B.COL_VIEWED]).take(pa.array(hist_rows))
    ids = _column(rows, COL_PRODUCT_IDS).take(list_rows)
    scores = _column(rows, COL_SCORES).take(list_rows)
    lengths = pc.fill_null(pc.list_value_length(ids), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    if not np.array_equal(lengths, pc.fill_null(pc.list_value_length(scores), 0).to_numpy(zero_copy_only=False)):
        raise ValueError("a candidate row has not as many scores as product ids")
    parent = np.repeat(list_rows.to_numpy(), lengths)
    hist_pid = _column(history, S.COL_ITEM)
    cand_pid = pc.list_flatten(ids)
    product_id = pa.concat_arrays([hist_pid, cand_pid.cast(hist_pid.type)])
    score = np.concatenate(
        [np.full(len(hist_rows), np.nan), pc.list_flatten(scores).to_numpy(zero_copy_only=False).astype(np.float64)]
    )
    return (
        user_ids,
        np.concatenate([user[hist_rows], user[parent]]),
        product_id,
        np.concatenate([kind[hist_rows], kind[parent]]),
        score,
        history,
    )


def score_chunk(rows: pa.Table, cat: BlendCatalogue, *, cfg: BlendConfig, itemknn_k: int) -> pa.RecordBatch:
    """The blended lists of the whole users of ``rows`` (history rows and CF/content candidate lists).

    Args:
        rows: ``user_id, product_id, kind, purchased, viewed, product_ids, scores`` (:func:`blend_rows`), each
            user's rows contiguous (:func:`jobs.common.arrow_chunks.whole_key_tables`). Rows without a user are
            ignored.
        cat: The broadcast product side.
        cfg: The ``blend`` configuration.
        itemknn_k: Item-kNN candidates per user (``blend.itemknn_top_n``).

    Returns:
        ``user_id, product_ids, scores, sources`` (:data:`ARROW_SCHEMA`), one row per user of ``rows`` in
        order of appearance; a user whose every candidate is filtered out gets empty lists.

    Example:
        >>> batch = score_chunk(pa.Table.from_batches(batches), cat, cfg=BlendConfig(), itemknn_k=100)
    """
    users = _column(rows, S.COL_USER)
    if users.null_count:
        rows = rows.filter(pc.is_valid(users))
    user_ids, user, product_id, kind, score, history = _flat_rows(rows)
    n_users = len(user_ids)
    code, items, listed, category = _product_codes(product_id, kind, cat)
    hist = kind == HISTORY
    hist_user, hist_item = user[hist], code[hist]
    out = blend_arrays(
        *_candidates(user, code, kind, score, n_users, cat, itemknn_k=itemknn_k),
        items=items,
        listed=listed,
        category=category,
        counts=np.bincount(hist_user, minlength=n_users).astype(np.float64),
        cfg=cfg,
        hist_user=hist_user,
        hist_item=hist_item,
        purchased=_flags(history, B.COL_PURCHASED),
        viewed=_flags(history, B.COL_VIEWED),
        # Catalogue rows are sorted by id, and the codes past them are unlisted, so never ranked.
        ids_sorted=True,
    )
    return _lists(user_ids, out, cat)


def blend_rows(history: DataFrame, cf: DataFrame | None, content: DataFrame | None) -> DataFrame:
    """The kernel's input: history rows (``user_history``), one per (user, product), and one row per user of
    the CF and content candidate tables with their lists (:mod:`jobs.common.candidate_lists`), tagged.

    Example:
        >>> blend_rows(user_history(events), cf_candidates, content_candidates)
    """
    null_flag = F.lit(None).cast("boolean")
    out = history.select(
        S.COL_USER,
        S.COL_ITEM,
        F.lit(HISTORY).cast("byte").alias(COL_KIND),
        F.col(B.COL_PURCHASED),
        F.col(B.COL_VIEWED),
        F.lit(None).cast("array<string>").alias(COL_PRODUCT_IDS),
        F.lit(None).cast("array<double>").alias(COL_SCORES),
    )
    for frame, kind in ((cf, CF), (content, CONTENT)):
        if frame is not None:
            out = out.unionByName(
                frame.select(
                    S.COL_USER,
                    F.lit(None).cast("string").alias(S.COL_ITEM),
                    F.lit(kind).cast("byte").alias(COL_KIND),
                    null_flag.alias(B.COL_PURCHASED),
                    null_flag.alias(B.COL_VIEWED),
                    F.col(COL_PRODUCT_IDS),
                    F.col(COL_SCORES).cast("array<double>").alias(COL_SCORES),
                )
            )
    return out


def blend_users_broadcast(
    rows: DataFrame,
    cat: BlendCatalogue,
    *,
    cfg: BlendConfig,
    itemknn_k: int,
    partitions: int,
    chunk_rows: int = CHUNK_ROWS,
) -> DataFrame:
    """:func:`score_chunk` over ``rows`` clustered by user, the catalogue broadcast once.

    Returns:
        ``user_id, product_ids, scores, sources``, one row per user of ``rows``.

    Example:
        >>> blend_users_broadcast(blend_rows(hist, cf, content), cat, cfg=cfg.blend, itemknn_k=100,
        ...                       partitions=8)
    """
    B.check_config(cfg)
    bc = rows.sparkSession.sparkContext.broadcast(cat)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        arrays = bc.value
        for chunk in whole_key_tables(batches, S.COL_USER, chunk_rows):
            yield score_chunk(chunk, arrays, cfg=cfg, itemknn_k=itemknn_k)

    return cluster_by_key(rows, S.COL_USER, partitions).mapInArrow(run, tr.RECOMMENDATIONS_SCHEMA)
