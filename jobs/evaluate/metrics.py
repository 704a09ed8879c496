"""Ranking metrics at k over top-k recommendations and held-out relevant items.

Precision, recall, nDCG and MAP come from Spark's own ``pyspark.ml.evaluation.RankingEvaluator`` because its
definitions match our protocols (binary relevance, every held-out item relevant, one row per evaluated user):

- precision@k = hits in the top k / k (also when fewer than k items were recommended);
- recall@k = hits in the top k / number of relevant items;
- nDCG@k = DCG with gain 1 / log2(rank + 1) over the ideal DCG of min(|relevant|, k) hits;
- MAP@k = sum of precision@i at each hit i <= k / min(|relevant|, k). This is Spark's definition; Microsoft
  Recommenders' older ``map_at_k`` divides by |relevant| instead, which is smaller for users with more than k
  relevant items.

Spark has no hit rate or catalogue coverage: both are computed here with plain DataFrame operations.
Evaluated users are the users of ``truth``; a user without recommendations scores 0 on every metric.
"""

from __future__ import annotations

from pyspark.ml.evaluation import RankingEvaluator
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from recsys import schema as S

SPARK_METRICS = {
    "precision": "precisionAtK",
    "recall": "recallAtK",
    "ndcg": "ndcgAtK",
    "map": "meanAveragePrecisionAtK",
}
METRIC_ORDER = ("hit_rate", "precision", "recall", "ndcg", "map", "coverage")


def ranking_frame(
    recs: DataFrame,
    truth: DataFrame,
    *,
    k: int,
    col_user: str = S.COL_USER,
    col_item: str = S.COL_ITEM,
    col_score: str = "score",
) -> DataFrame:
    """One row per evaluated user: ``prediction`` (top-k items, best first) and ``label`` (relevant items).

    Items are encoded as doubles (``RankingEvaluator`` wants numeric arrays) through a dense rank over the
    product ids of both inputs. Ties in score are broken by product id so the ranking is deterministic.

    Example:
        >>> frame = ranking_frame(recs, test_pairs, k=10)
    """
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    items = recs.select(col_item).union(truth.select(col_item)).distinct()
    code = items.withColumn("_code", F.dense_rank().over(Window.orderBy(col_item)).cast("double"))
    w = Window.partitionBy(col_user).orderBy(F.col(col_score).desc(), F.col(col_item))
    top = (
        recs.withColumn("_pos", F.row_number().over(w))
        .where(F.col("_pos") <= k)
        .join(code, col_item)
        .groupBy(col_user)
        .agg(F.sort_array(F.collect_list(F.struct("_pos", "_code"))).alias("_ranked"))
        .select(col_user, F.col("_ranked._code").alias("prediction"))
    )
    labels = (
        truth.select(col_user, col_item)
        .distinct()
        .join(code, col_item)
        .groupBy(col_user)
        .agg(F.collect_list("_code").alias("label"))
    )
    return labels.join(top, col_user, "left").select(
        col_user,
        F.coalesce(F.col("prediction"), F.array().cast("array<double>")).alias("prediction"),
        "label",
    )


def ranking_metrics(
    recs: DataFrame,
    truth: DataFrame,
    *,
    k: int,
    n_catalogue: int,
    col_user: str = S.COL_USER,
    col_item: str = S.COL_ITEM,
    col_score: str = "score",
) -> dict[str, float]:
    """Hit rate, precision, recall, nDCG, MAP at ``k`` and catalogue coverage of ``recs`` against ``truth``.

    Args:
        recs: ``user, item, score`` recommendations (extra rows beyond k per user are ignored).
        truth: ``user, item`` relevant (held-out) pairs; its users are the evaluated users.
        k: Cut-off.
        n_catalogue: Number of recommendable products (the coverage denominator).

    Returns:
        Metric name -> value; ``coverage`` is distinct recommended products in the evaluated users' top k
        over ``n_catalogue``.

    Example:
        >>> ranking_metrics(recs, test_pairs, k=10, n_catalogue=3600)["ndcg"]
        0.1
    """
    if n_catalogue <= 0:
        raise ValueError(f"n_catalogue must be positive, got {n_catalogue}")
    frame = ranking_frame(recs, truth, k=k, col_user=col_user, col_item=col_item, col_score=col_score).cache()
    out: dict[str, float] = {}
    for name, spark_name in SPARK_METRICS.items():
        ev = RankingEvaluator(predictionCol="prediction", labelCol="label", metricName=spark_name, k=k)
        out[name] = float(ev.evaluate(frame))
    hit = frame.agg(F.avg((F.size(F.array_intersect("prediction", "label")) > 0).cast("double"))).first()
    covered = frame.select(F.explode("prediction").alias("_code")).distinct().count()
    frame.unpersist()
    out["hit_rate"] = float(hit[0] or 0.0)
    out["coverage"] = covered / n_catalogue
    return {m: out[m] for m in METRIC_ORDER}
