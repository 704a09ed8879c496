"""Ranking metrics (Spark's RankingEvaluator plus hit rate and coverage) against a numpy reference."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.evaluate.metrics import ranking_metrics

pytestmark = pytest.mark.spark

K = 3
RECS = {  # user -> ranked recommendations (best first)
    "u1": ["a", "b", "c", "d"],
    "u2": ["c", "a", "e"],
    "u3": ["e", "d"],  # fewer than k
    "u4": ["b", "c", "a"],  # no hit
}
TRUTH = {"u1": ["b", "d", "x"], "u2": ["c", "e"], "u3": ["d"], "u4": ["x"], "u5": ["a"]}  # u5: no recs


def np_metrics(recs, truth, k, n_catalogue):
    """Plain-Python reference with the same definitions as the module docstring."""
    p, r, n, m, h = [], [], [], [], []
    for user, rel in truth.items():
        top = recs.get(user, [])[:k]
        hits = np.array([1.0 if item in rel else 0.0 for item in top])
        cnt = hits.sum()
        p.append(cnt / k)
        r.append(cnt / len(rel))
        dcg = float((hits / np.log2(np.arange(2, len(hits) + 2))).sum()) if len(hits) else 0.0
        idcg = float((1.0 / np.log2(np.arange(2, min(len(rel), k) + 2))).sum())
        n.append(dcg / idcg)
        prec_at_hits = [hits[: i + 1].sum() / (i + 1) for i in range(len(hits)) if hits[i]]
        m.append(sum(prec_at_hits) / min(len(rel), k))
        h.append(1.0 if cnt > 0 else 0.0)
    covered = {i for user in truth for i in recs.get(user, [])[:k]}
    return {
        "hit_rate": np.mean(h),
        "precision": np.mean(p),
        "recall": np.mean(r),
        "ndcg": np.mean(n),
        "map": np.mean(m),
        "coverage": len(covered) / n_catalogue,
    }


def test_metrics_match_numpy_reference(spark):
    rec_rows = [(u, item, float(10 - pos)) for u, items in RECS.items() for pos, item in enumerate(items)]
    recs = spark.createDataFrame(rec_rows, "user_id string, product_id string, score double")
    truth = spark.createDataFrame(
        [(u, i) for u, items in TRUTH.items() for i in items], "user_id string, product_id string"
    )
    got = ranking_metrics(recs, truth, k=K, n_catalogue=6)
    expected = np_metrics(RECS, TRUTH, K, 6)
    assert list(got) == ["hit_rate", "precision", "recall", "ndcg", "map", "coverage"]
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-9), name


def test_hand_computed_values_for_one_user(spark):
    recs = spark.createDataFrame(
        [("u", "a", 3.0), ("u", "b", 2.0), ("u", "c", 1.0)], "user_id string, product_id string, score double"
    )
    truth = spark.createDataFrame([("u", "b"), ("u", "z")], "user_id string, product_id string")
    got = ranking_metrics(recs, truth, k=2, n_catalogue=4)
    # top-2 = [a, b]; one hit at rank 2
    assert got["precision"] == pytest.approx(0.5)
    assert got["recall"] == pytest.approx(0.5)
    assert got["ndcg"] == pytest.approx((1 / np.log2(3)) / (1 + 1 / np.log2(3)))
    assert got["map"] == pytest.approx((1 / 2) / 2)
    assert got["hit_rate"] == 1.0 and got["coverage"] == pytest.approx(0.5)


def test_arguments_are_checked(spark):
    df = spark.createDataFrame([("u", "a", 1.0)], "user_id string, product_id string, score double")
    with pytest.raises(ValueError, match="k must be positive"):
        ranking_metrics(df, df.select("user_id", "product_id"), k=0, n_catalogue=1)
    with pytest.raises(ValueError, match="n_catalogue"):
        ranking_metrics(df, df.select("user_id", "product_id"), k=1, n_catalogue=0)
