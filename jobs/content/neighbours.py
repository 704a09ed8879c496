"""Spark wiring of the item-neighbour search: shards scored in pandas UDFs by :mod:`jobs.content.lsh`.

Two passes, both blocked so no task ever scores more than ``window`` items against each other:

- In-category: one shard per top-level category, ``tables`` LSH tables over every feature except price
  (items with the same signature are then ordered by price position), exact cosine in windows.
- Cross-category: every product hashed once more on its brand and title features only; the leading bits
  of that signature pick a shard of about ``SHARD_WINDOWS`` windows (one shard for a small catalogue), and
  inside it, sorted by the signature, only pairs from different categories are scored. Each product's
  top-``k`` cross-category pairs are co-grouped with its category's shard and merged with the in-category
  candidates there, so every product's list is decided in one place, without a second shuffle of all pairs.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.content import lsh
from jobs.content.features import BRAND_OFFSET, COL_FEATURES, PRICE_DIM, PRICE_OFFSET, top_category
from recsys import schema as S

COL_NEIGHBOR = "neighbor_id"
SHARD_WINDOWS = 4

NEIGHBOURS_SCHEMA = T.StructType(
    [
        T.StructField(S.COL_ITEM, T.StringType(), False),
        T.StructField(COL_NEIGHBOR, T.StringType(), False),
        T.StructField("score", T.DoubleType(), False),
        T.StructField("rank", T.IntegerType(), False),
    ]
)
_CROSS_SCHEMA = T.StructType(
    [
        T.StructField("_shard_category", T.StringType(), False),
        T.StructField(S.COL_ITEM, T.StringType(), False),
        T.StructField(COL_NEIGHBOR, T.StringType(), False),
        T.StructField("score", T.DoubleType(), False),
    ]
)
_ARRAYS_SCHEMA = T.StructType(
    [
        T.StructField(S.COL_ITEM, T.StringType(), False),
        T.StructField("_shard_category", T.StringType(), True),
        T.StructField("_size", T.IntegerType(), False),
        T.StructField("_indices", T.ArrayType(T.IntegerType()), False),
        T.StructField("_values", T.ArrayType(T.DoubleType()), False),
        T.StructField("_tiebreak", T.DoubleType(), False),
        T.StructField("_shard", T.LongType(), True),
    ]
)


def _price_position(x: lsh.sp.csr_matrix) -> np.ndarray:
    cos_b = x[:, PRICE_OFFSET + 2].toarray().ravel()
    sin_b = x[:, PRICE_OFFSET + 3].toarray().ravel()
    return np.arctan2(sin_b, cos_b)


def _mask(size: int, *, category: bool) -> np.ndarray:
    mask = np.ones(size, bool)
    mask[PRICE_OFFSET : PRICE_OFFSET + PRICE_DIM] = False
    if not category:
        mask[:BRAND_OFFSET] = False
    return mask


def _csr(pdf: pd.DataFrame) -> lsh.sp.csr_matrix:
    size = int(pdf["_size"].iloc[0])
    return lsh.to_csr(
        ({"indices": i, "values": v} for i, v in zip(pdf["_indices"], pdf["_values"], strict=True)), size
    )


def _to_arrays(*, bits: int, seed: int, cross: bool):
    """Vectors as index/value arrays, their price position, and the shard of the cross-category pass."""

    def convert(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            if pdf.empty:
                continue
            vecs = pdf[COL_FEATURES]
            size = int(vecs.iloc[0]["size"])
            x = lsh.to_csr(vecs, size)
            out = pdf[[S.COL_ITEM, "_shard_category"]].copy()
            out["_size"] = size
            out["_indices"] = [np.asarray(v["indices"], np.int32) for v in vecs]
            out["_values"] = [np.asarray(v["values"], np.float64) for v in vecs]
            out["_tiebreak"] = _price_position(x)
            out["_shard"] = None
            if cross:
                local, columns = lsh.localise(x)
                masked = local @ lsh.sp.diags(_mask(size, category=False)[columns].astype(np.float64))
                sig = lsh.signatures(masked, columns, seed=seed, bits=bits, center=False)
                out["_shard"] = sig.astype(np.int64)
            yield out

    return convert


def _cross_scorer(*, k: int, bits: int, window: int, seed: int):
    def score(pdf: pd.DataFrame) -> pd.DataFrame:
        pdf = pdf.sort_values(S.COL_ITEM, kind="stable").reset_index(drop=True)
        x = _csr(pdf)
        found = lsh.shard_neighbours(
            x,
            k=k,
            tables=1,
            bits=bits,
            window=window,
            seed=seed,
            tiebreak=pdf["_tiebreak"].to_numpy(),
            hash_mask=_mask(x.shape[1], category=False),
            center=False,
            groups=pd.factorize(pdf["_shard_category"])[0],
        )
        ids = pdf[S.COL_ITEM].to_numpy()
        return pd.DataFrame(
            {
                "_shard_category": pdf["_shard_category"].to_numpy()[found.item],
                S.COL_ITEM: ids[found.item],
                COL_NEIGHBOR: ids[found.neighbour],
                "score": found.score,
            }
        )

    return score


def _category_scorer(*, k: int, tables: int, bits: int, window: int, seed: int):
    def score(pdf: pd.DataFrame, extra: pd.DataFrame) -> pd.DataFrame:
        if pdf.empty:
            return pd.DataFrame({c: [] for c in NEIGHBOURS_SCHEMA.fieldNames()})
        pdf = pdf.sort_values(S.COL_ITEM, kind="stable").reset_index(drop=True)
        x = _csr(pdf)
        found = lsh.shard_neighbours(
            x,
            k=k,
            tables=tables,
            bits=bits,
            window=window,
            seed=seed,
            tiebreak=pdf["_tiebreak"].to_numpy(),
            hash_mask=_mask(x.shape[1], category=True),
            center=True,
        )
        ids = pdf[S.COL_ITEM].to_numpy()
        # Positions in the sorted union of ids, so ties are broken by neighbour id across both passes.
        every = np.unique(np.concatenate([ids, extra[COL_NEIGHBOR].to_numpy(dtype=object)]).astype(str))
        own = np.searchsorted(every, ids.astype(str))
        merged = lsh.merge_topk(
            np.concatenate(
                [own[found.item], np.searchsorted(every, extra[S.COL_ITEM].to_numpy().astype(str))]
            ),
            np.concatenate(
                [own[found.neighbour], np.searchsorted(every, extra[COL_NEIGHBOR].to_numpy().astype(str))]
            ),
            np.concatenate([found.score, extra["score"].to_numpy(np.float64)]),
            k=k,
        )
        return pd.DataFrame(
            {
                S.COL_ITEM: every[merged.item],
                COL_NEIGHBOR: every[merged.neighbour],
                "score": merged.score.astype(np.float64),
                "rank": merged.rank.astype(np.int32),
            }
        )

    return score


def similar_items(
    features: DataFrame,
    *,
    k: int,
    tables: int = 6,
    bits: int = 16,
    window: int = 1000,
    seed: int = 17,
    cross_category: bool = True,
) -> DataFrame:
    """Top-``k`` most similar products of every product by cosine of the content vectors.

    Args:
        features: ``product_id, category, features`` from :func:`jobs.content.features.product_features`.
        k: Neighbours per product.
        tables: LSH tables of the in-category pass.
        bits: Hyperplanes per LSH signature.
        window: Largest block of items scored against each other exactly.
        seed: Seed of the hyperplanes (a rerun gives the same neighbours).
        cross_category: Also search neighbours in other categories (brand/title LSH pass).

    Returns:
        ``product_id, neighbor_id, score, rank`` with ``rank`` 1..k (score descending, then neighbour id).

    Example:
        >>> similar_items(product_features(products, weights=w, title_features=4096), k=50).columns
        ['product_id', 'neighbor_id', 'score', 'rank']
    """
    for col in (S.COL_ITEM, S.COL_CATEGORY, COL_FEATURES):
        if col not in features.columns:
            raise ValueError(f"features: missing column {col!r} (has {', '.join(features.columns)})")
    if k <= 0 or tables <= 0 or window < 2:
        raise ValueError(f"need k > 0, tables > 0, window >= 2 (got k={k}, tables={tables}, window={window})")
    if not 0 < bits <= 62:
        raise ValueError(f"bits must be in 1..62, got {bits}")
    base = features.select(
        S.COL_ITEM,
        F.coalesce(top_category(F.col(S.COL_CATEGORY)), F.lit("")).alias("_shard_category"),
        COL_FEATURES,
    )
    vectors = base.mapInPandas(_to_arrays(bits=bits, seed=seed + 1, cross=cross_category), _ARRAYS_SCHEMA)
    if cross_category:
        # Shards of about SHARD_WINDOWS windows: the leading bits of the brand/title signature, as many as the
        # catalogue size needs (none for a small catalogue, which is then searched across categories exactly).
        size = vectors.agg(F.count(F.lit(1)).alias("_n")).select(
            F.least(
                F.lit(bits), F.greatest(F.lit(0), F.ceil(F.log2(F.col("_n") / F.lit(SHARD_WINDOWS * window))))
            )
            .cast("int")
            .alias("_prefix")
        )
        vectors = (
            vectors.crossJoin(F.broadcast(size))
            .withColumn("_shard", F.expr(f"shiftright(_shard, {bits} - _prefix)"))
            .drop("_prefix")
        )
        across = vectors.groupBy("_shard").applyInPandas(
            _cross_scorer(k=k, bits=bits, window=window, seed=seed + 1), _CROSS_SCHEMA
        )
    else:
        across = features.sparkSession.createDataFrame([], _CROSS_SCHEMA)
    return (
        vectors.drop("_shard")
        .groupBy("_shard_category")
        .cogroup(across.groupBy("_shard_category"))
        .applyInPandas(
            _category_scorer(k=k, tables=tables, bits=bits, window=window, seed=seed), NEIGHBOURS_SCHEMA
        )
    )


def exact_candidates(features: DataFrame, queries: pd.DataFrame, *, k: int) -> DataFrame:
    """Brute-force check: for each query, every product scoring at least its per-partition k-th cosine.

    The union over partitions holds, for each query, the global top-``k`` and everything tied with it, so
    :func:`tie_aware_recall` can tell a correct neighbour from a wrong one without trusting the LSH scores.

    Args:
        features: ``product_id, features`` of the whole catalogue.
        queries: ``product_id`` and ``features`` (``SparseVector``) of the sampled products (small).
        k: Neighbours per query.

    Returns:
        ``query_id, product_id, score``.
    """
    q_ids = queries[S.COL_ITEM].to_numpy()
    q_vecs = [{"indices": v.indices, "values": v.values, "size": v.size} for v in queries[COL_FEATURES]]

    def check(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for pdf in batches:
            if pdf.empty or not len(q_ids):
                continue
            size = int(pdf[COL_FEATURES].iloc[0]["size"])
            x = lsh.to_csr(pdf[COL_FEATURES], size)
            ids = pdf[S.COL_ITEM].to_numpy()
            q = lsh.to_csr(q_vecs, size)
            pos = {p: i for i, p in enumerate(ids)}
            exclude = np.array([pos.get(p, -1) for p in q_ids])
            _, rows, scores = lsh.exact_topk(q, x, k=k, exclude=exclude)
            yield pd.DataFrame(
                {
                    "query_id": np.repeat(q_ids, [len(r) for r in rows]),
                    S.COL_ITEM: ids[np.concatenate(rows)] if rows else [],
                    "score": np.concatenate(scores) if scores else [],
                }
            )

    schema = "query_id string, product_id string, score double"
    return features.select(S.COL_ITEM, COL_FEATURES).mapInPandas(check, schema)


def tie_aware_recall(exact: pd.DataFrame, returned: pd.DataFrame, *, k: int) -> dict[str, float]:
    """Recall@k of returned neighbours against exact cosine, counting ties as correct.

    A returned neighbour is correct when its true cosine is at least the exact k-th neighbour's cosine.

    Args:
        exact: ``query_id, product_id, score`` from :func:`exact_candidates` (collected).
        returned: ``product_id, neighbor_id`` of the sampled products (collected).
        k: Neighbours per product.

    Returns:
        ``recall`` (tie-aware) and ``recall_strict`` (returned ids among the exact top-k by score, then id),
        averaged over the queries; ``queries`` counted.

    Example:
        >>> tie_aware_recall(exact_pdf, returned_pdf, k=50)["recall"]
        0.99
    """
    tie, strict, n = 0.0, 0.0, 0
    got = returned.groupby(S.COL_ITEM)[COL_NEIGHBOR].apply(set).to_dict()
    for query, rows in exact.groupby("query_id"):
        ranked = rows.sort_values(["score", S.COL_ITEM], ascending=[False, True])
        kk = min(k, len(ranked))
        if kk == 0:
            continue
        kth = ranked["score"].iloc[kk - 1]
        good = set(ranked.loc[ranked["score"] >= kth - 1e-9, S.COL_ITEM])
        mine = got.get(query, set())
        tie += len(mine & good) / kk
        strict += len(mine & set(ranked[S.COL_ITEM].iloc[:kk])) / kk
        n += 1
    return {
        "recall": tie / n if n else float("nan"),
        "recall_strict": strict / n if n else float("nan"),
        "queries": float(n),
    }
