"""CF candidates scored in numpy against broadcast item factors, checked by hand and against Spark's own path."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.sql import functions as F

from jobs.als import transforms as tr
from jobs.als.model import build_als
from jobs.common.candidate_lists import to_rows
from recsys.config import AlsConfig

pytestmark = pytest.mark.spark

CANDS_SCHEMA = "user_id string, product_ids array<string>, scores array<float>, model_version string"


@contextmanager
def _arrow_batches_of(spark, rows: int):
    """Small Arrow batches, so the scorer sees sliced list arrays and several batches per partition."""
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    old = spark.conf.get(key)
    spark.conf.set(key, str(rows))
    try:
        yield
    finally:
        spark.conf.set(key, old)


def test_item_matrix_sorts_by_item_idx_and_rejects_duplicates():
    m = tr.item_matrix(np.array([7, 3, 5]), np.array([[7.0], [3.0], [5.0]]))
    assert m.item_idx.tolist() == [3, 5, 7] and m.item_idx.dtype == np.int32
    assert m.factors.tolist() == [[3.0], [5.0], [7.0]] and m.factors.dtype == np.float32
    with pytest.raises(ValueError, match="distinct"):
        tr.item_matrix(np.array([1, 1]), np.ones((2, 1)))
    with pytest.raises(ValueError, match="one index per row"):
        tr.item_matrix(np.array([1, 2]), np.ones((3, 1)))


def test_broadcast_candidates_by_hand(spark):
    # item_idx 3 and 7 have the same factors: u0 ties on them and the lower item_idx ranks first.
    item_idx = np.array([7, 3, 5, 9])
    y = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    user_factors = spark.createDataFrame(
        [(0, [1.0, 0.0]), (1, [1.0, 0.0]), (2, [0.0, 2.0]), (3, [1.0, 1.0])], "id int, features array<float>"
    )
    seen = spark.createDataFrame(
        [(1, 3), (1, 9), (2, 5), (2, 3), (2, 7), (3, 9)], "user_idx int, item_idx int"
    )  # u0 has no pairs: a null seen list
    subset = spark.createDataFrame([("u0", 0), ("u1", 1), ("u2", 2)], "user_id string, user_idx int")
    items = spark.createDataFrame([(f"p{i}", i) for i in (3, 5, 7, 9)], "product_id string, item_idx int")
    bc = spark.sparkContext.broadcast(tr.item_matrix(item_idx, y))
    out = tr.candidates_broadcast(user_factors, seen, subset, items, item_factors=bc, top_n=2, model_version="als-x")
    expected = spark.createDataFrame(
        [
            ("u0", ["p3", "p7"], [1.0, 1.0], "als-x"),
            ("u1", ["p7", "p5"], [1.0, 0.0], "als-x"),
            ("u2", ["p9"], [1.0], "als-x"),  # only one unseen item left; u3 is not in the subset
        ],
        CANDS_SCHEMA,
    )
    with _arrow_batches_of(spark, 2):
        assert_df_equality(out, expected, ignore_row_order=True, ignore_nullable=True)
    bc.destroy()


def test_broadcast_candidates_reject_a_non_positive_top_n(spark):
    df = spark.createDataFrame([(0, [1.0])], "id int, features array<float>")
    with pytest.raises(ValueError, match="top_n must be positive"):
        tr.candidates_broadcast(df, df, df, df, item_factors=None, top_n=0, model_version="x")  # type: ignore[arg-type]


# 14 users x 12 items, 3 or 4 products each: with top_n = 4 the old path's 2 x top_n = 8 fetched items keep at
# least 4 unseen ones for every user, so both paths must return the same full lists.
PAIRS = [
    (u, i, 1.0)
    for u in range(14)
    for i in sorted({(u * 5 + j * (u % 3 + 2)) % 12 for j in range(4)} | {u % 12})[: 3 + u % 2]
]


@pytest.mark.slow
def test_broadcast_candidates_equal_recommend_for_user_subset(spark):
    train = spark.createDataFrame(PAIRS, "user_idx int, item_idx int, rating float")
    model = build_als(AlsConfig(rank=3, max_iter=6, reg_param=0.05, alpha=2.0, seed=5)).fit(train)
    users = spark.createDataFrame([(f"u{u}", u) for u in range(14)], "user_id string, user_idx int")
    items = spark.createDataFrame([(f"p{i}", i) for i in range(12)], "product_id string, item_idx int")
    subset = users.where(F.col("user_idx") != 4)  # one user outside the candidate subset
    top_n = 4

    recs = model.recommendForUserSubset(subset.select("user_idx"), 2 * top_n)
    old = tr.candidates_table(recs, train, users, items, top_n=top_n, model_version="als-x").cache()
    rows = model.itemFactors.collect()
    bc = spark.sparkContext.broadcast(
        tr.item_matrix(np.array([r.id for r in rows]), np.array([r.features for r in rows]))
    )
    new = tr.candidates_broadcast(
        model.userFactors, train, subset, items, item_factors=bc, top_n=top_n, model_version="als-x"
    )
    with _arrow_batches_of(spark, 5):
        new_rows = to_rows(new).collect()
        assert_approx_df_equality(to_rows(new), to_rows(old), 1e-5, ignore_row_order=True, ignore_nullable=True)
    bc.destroy()
    old.unpersist()

    ranks: dict[str, list[int]] = {}
    for r in new_rows:
        ranks.setdefault(r.user_id, []).append(r["rank"])
    # Every subset user gets a full list (the old path's over-fetch was enough), user 4 gets none.
    assert {u: sorted(r) for u, r in ranks.items()} == {f"u{u}": [1, 2, 3, 4] for u in range(14) if u != 4}
    seen = {(f"u{u}", f"p{i}") for u, i, _ in PAIRS}
    assert not {(r.user_id, r.product_id) for r in new_rows} & seen
