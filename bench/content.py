"""Benchmark of the content neighbour search: wall time and tie-aware recall@K against exact cosine.

    .venv/bin/python bench/content.py                       # 20k (with the naive MLlib join), 100k, 400k
    .venv/bin/python bench/content.py --sizes 20000 --no-mllib

For each catalogue size: build the feature vectors (cached, not timed), time ``similar_items`` end to end
(its result written to Spark's no-op sink), then check a random sample of products against brute-force
cosine over the whole catalogue. At 20k the naive MLlib ``BucketedRandomProjectionLSH.approxSimilarityJoin``
runs in the same session for comparison. Catalogues come from the project's generator when it is present
(``jobs.generate.transforms.generate_products``), else from the small generator below.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pyspark.ml.feature import BucketedRandomProjectionLSH  # noqa: E402
from pyspark.sql import DataFrame, SparkSession, Window  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from jobs.common.spark import build_spark  # noqa: E402
from jobs.content.features import product_features  # noqa: E402
from jobs.content.neighbours import exact_candidates, similar_items, tie_aware_recall  # noqa: E402
from recsys.config import ContentConfig, SparkConfig  # noqa: E402

log = logging.getLogger("bench.content")

ADJECTIVES = [f"adj{i}" for i in range(40)]
COLOURS = ["red", "blue", "green", "black", "white", "grey", "pink", "gold", "silver", "navy"]


def fallback_products(spark: SparkSession, *, products: int, seed: int) -> DataFrame:
    """A catalogue like the generator's: 24 categories (half with sub-categories), 6 brands each, titles of
    a category noun, a shared adjective and sometimes a colour, log-normal prices rounded to .99."""
    r = lambda i: F.rand(seed * 100 + i)  # noqa: E731
    cat = F.floor(F.pow(r(1), 1.3) * 24).cast("int")
    sub = F.floor(r(2) * 4).cast("int")
    adj = F.element_at(
        F.array(*[F.lit(a) for a in ADJECTIVES]), (F.floor(F.pow(r(3), 2) * 40) + 1).cast("int")
    )
    colour = F.element_at(F.array(*[F.lit(c) for c in COLOURS]), (F.floor(r(4) * 10) + 1).cast("int"))
    noun = F.concat(F.lit("noun"), cat, F.lit("x"), F.floor(r(5) * 5).cast("int"))
    return spark.range(products).select(
        F.format_string("P%07d", "id").alias("product_id"),
        F.concat_ws(" ", adj, F.when(r(6) < 0.5, colour), F.lit("the"), noun).alias("title"),
        F.when(cat % 2 == 0, F.concat(F.lit("cat"), cat, F.lit("/sub"), sub))
        .otherwise(F.concat(F.lit("cat"), cat))
        .alias("category"),
        F.when(r(7) < 0.03, F.lit("Generic"))
        .otherwise(F.concat(F.lit("brand"), cat, F.lit("_"), F.floor(F.pow(r(8), 2) * 6).cast("int")))
        .alias("brand"),
        (F.round(F.exp(F.lit(2.5) + cat / F.lit(8.0) + F.randn(seed * 100 + 9) * 0.6)) + F.lit(0.99)).alias(
            "price"
        ),
    )


def catalogue(spark: SparkSession, *, products: int, seed: int) -> tuple[DataFrame, str]:
    try:
        gen = importlib.import_module("jobs.generate.transforms")
        if hasattr(gen, "generate_products"):
            now = datetime(2026, 1, 1, tzinfo=UTC)
            return gen.generate_products(spark, products=products, seed=seed, now=now), "jobs.generate"
    except ModuleNotFoundError:
        pass
    return fallback_products(spark, products=products, seed=seed), "bench fallback"


def recall_of(features: DataFrame, found: DataFrame, *, k: int, sample: int, seed: int) -> dict[str, float]:
    queries = features.orderBy(F.rand(seed)).limit(sample).toPandas()
    exact = exact_candidates(features, queries, k=k).toPandas()
    ids = list(queries["product_id"])
    returned = found.where(F.col("product_id").isin(ids)).toPandas()
    return tie_aware_recall(exact, returned, k=k)


def mllib_join(features: DataFrame, *, k: int) -> tuple[DataFrame, float]:
    """The naive approach: BucketedRandomProjectionLSH self-join, then the top k per product."""
    model = BucketedRandomProjectionLSH(
        inputCol="features", outputCol="hashes", bucketLength=1.0, numHashTables=3, seed=7
    ).fit(features)
    start = time.perf_counter()
    pairs = (
        model.approxSimilarityJoin(features, features, 1.0, distCol="dist")
        .select(
            F.col("datasetA.product_id").alias("product_id"),
            F.col("datasetB.product_id").alias("neighbor_id"),
            (1 - F.col("dist") * F.col("dist") / 2).alias("score"),
        )
        .where(F.col("product_id") != F.col("neighbor_id"))
    )
    order = Window.partitionBy("product_id").orderBy(F.col("score").desc(), "neighbor_id")
    top = pairs.withColumn("rank", F.row_number().over(order)).where(F.col("rank") <= k).cache()
    top.count()
    return top, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="20000,100000,400000")
    p.add_argument("--sample", type=int, default=500)
    p.add_argument("--k", type=int, default=ContentConfig().top_k)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--no-mllib", action="store_true")
    p.add_argument("--driver-memory", default="3g")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = ContentConfig()
    spark = build_spark(
        SparkConfig(driver_memory=args.driver_memory, shuffle_partitions=8, log_level="ERROR"),
        "bench-content",
    )
    times: dict[int, float] = {}
    for n in [int(s) for s in args.sizes.split(",")]:
        products, source = catalogue(spark, products=n, seed=args.seed)
        feats = product_features(products, weights=cfg.weights, title_features=cfg.title_features)
        feats = feats.repartition(8).cache()
        feats.count()
        start = time.perf_counter()
        found = similar_items(feats, k=args.k, tables=cfg.lsh_tables, bits=cfg.lsh_bits, window=cfg.block_max)
        found = found.cache()
        rows = found.count()
        times[n] = time.perf_counter() - start
        rec = recall_of(feats, found, k=args.k, sample=args.sample, seed=args.seed)
        print(
            f"n={n:>7} ({source}): similar_items {times[n]:7.1f} s, {rows:,} rows, "
            f"tie-aware recall@{args.k} {rec['recall']:.4f} (strict {rec['recall_strict']:.4f}, "
            f"{int(rec['queries'])} products)",
            flush=True,
        )
        if n == 20000 and not args.no_mllib:
            top, secs = mllib_join(feats, k=args.k)
            mrec = recall_of(feats, top, k=args.k, sample=args.sample, seed=args.seed)
            print(
                f"n={n:>7} MLlib approxSimilarityJoin {secs:7.1f} s, tie-aware recall@{args.k} "
                f"{mrec['recall']:.4f} (strict {mrec['recall_strict']:.4f}); "
                f"speed-up {secs / times[n]:.1f}x",
                flush=True,
            )
            top.unpersist()
        found.unpersist()
        feats.unpersist()
    if 100000 in times and 400000 in times:
        print(f"time growth 100k -> 400k: {times[400000] / times[100000]:.2f}x (target <= 4.5x)")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
