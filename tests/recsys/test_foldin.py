"""fold_in reproduces Spark's own implicit-ALS user step (validates the serving-side solver)."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.foldin import fold_in


def test_no_ratings_gives_a_zero_vector():
    y = np.ones((3, 2))
    assert fold_in(y, y.T @ y, np.array([], dtype=int), np.array([]), reg_param=0.1, alpha=1.0).tolist() == [
        0,
        0,
    ]


def test_mismatched_rows_and_ratings_name_the_arguments():
    y = np.ones((3, 2))
    with pytest.raises(ValueError, match="item_rows"):
        fold_in(y, y.T @ y, np.array([0, 1]), np.array([1.0]), reg_param=0.1, alpha=1.0)


def test_matches_the_closed_form_normal_equations():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(6, 3))
    rows, ratings = np.array([1, 4]), np.array([2.0, 0.5])
    c = np.ones(6)
    p = np.zeros(6)
    c[rows] += 3.0 * ratings
    p[rows] = 1.0
    expected = np.linalg.solve(y.T @ np.diag(c) @ y + 0.2 * 2 * np.eye(3), y.T @ (c * p))
    got = fold_in(y, y.T @ y, rows, ratings, reg_param=0.2, alpha=3.0)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


@pytest.mark.spark
@pytest.mark.slow
def test_fold_in_reproduces_spark_user_factors(spark):
    from pyspark.ml.recommendation import ALS

    rng = np.random.default_rng(7)
    rows = [(u, i, float(rng.integers(1, 5))) for u in range(20) for i in range(15) if rng.random() < 0.35]
    data = spark.createDataFrame(rows, "user int, item int, rating float")
    model = ALS(
        rank=5,
        maxIter=10,
        regParam=0.1,
        alpha=2.0,
        implicitPrefs=True,
        seed=3,
        userCol="user",
        itemCol="item",
        ratingCol="rating",
    ).fit(data)
    items = sorted((r.id, r.features) for r in model.itemFactors.collect())
    users = {r.id: np.array(r.features) for r in model.userFactors.collect()}
    pos = {i: n for n, (i, _) in enumerate(items)}
    y = np.array([f for _, f in items], dtype=np.float32).astype(np.float64)
    gram = y.T @ y
    for u in (0, 7, 19):
        mine = [(pos[i], r) for uu, i, r in rows if uu == u]
        got = fold_in(
            y, gram, np.array([m[0] for m in mine]), np.array([m[1] for m in mine]), reg_param=0.1, alpha=2.0
        )
        np.testing.assert_allclose(got, users[u], rtol=1e-4, atol=1e-5)
