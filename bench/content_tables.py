"""Recall and time of the in-category LSH pass per (tables, window): how `content.lsh_tables` and `block_max`
were chosen.

    .venv/bin/python bench/content_tables.py [--products 400000] [--grid 3:2000,6:1000,...]

Builds the generated catalogue with Spark (the project's generator and feature code), takes its largest
top-level category as one shard in numpy, and for each ``tables:window`` point times
:func:`jobs.content.lsh.shard_neighbours` (the exact code the job runs in its pandas UDF) and measures the
tie-aware recall@K of ``--sample`` products against brute-force cosine over the shard. (On the generated
400k catalogue, for 300 sampled products of the largest category, the exact K-th neighbour score within the
category equalled the one over the whole catalogue in every case, so the shard recall is the catalogue recall
of this pass.)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from pyspark.sql import functions as F  # noqa: E402

from jobs.common.spark import build_spark  # noqa: E402
from jobs.content import lsh  # noqa: E402
from jobs.content.features import product_features, top_category  # noqa: E402
from jobs.content.neighbours import _mask, _price_position  # noqa: E402
from recsys.config import ContentConfig, SparkConfig  # noqa: E402

DEFAULT_GRID = "3:2000,4:2000,6:2000,4:1000,5:1000,6:1000,8:1000,6:500,12:500"


def shard_of_largest_category(products: int, seed: int, driver_memory: str) -> tuple[str, lsh.sp.csr_matrix, int]:
    from content import catalogue  # bench/content.py

    cfg = ContentConfig()
    spark = build_spark(SparkConfig(driver_memory=driver_memory, shuffle_partitions=8, log_level="ERROR"), "tables")
    try:
        items, _ = catalogue(spark, products=products, seed=seed)
        feats = product_features(items, weights=cfg.weights, title_features=cfg.title_features)
        feats = feats.withColumn("_cat", top_category(F.col("category"))).cache()
        name = feats.groupBy("_cat").count().orderBy(F.desc("count"), "_cat").first()["_cat"]
        pdf = feats.where(F.col("_cat") == name).select("product_id", "features").orderBy("product_id").toPandas()
    finally:
        spark.stop()
    vecs = [{"indices": v.indices, "values": v.values} for v in pdf["features"]]
    size = int(pdf["features"].iloc[0].size)
    return name, lsh.to_csr(vecs, size), products


def recall(found: lsh.Neighbours, queries: np.ndarray, good: list[np.ndarray], k: int) -> float:
    got: dict[int, set[int]] = {}
    for i, n in zip(found.item.tolist(), found.neighbour.tolist(), strict=True):
        got.setdefault(i, set()).add(n)
    hits = [len(got.get(int(q), set()) & set(g.tolist())) / k for q, g in zip(queries, good, strict=True)]
    return float(np.mean(hits))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--products", type=int, default=400_000)
    p.add_argument("--grid", default=DEFAULT_GRID, help="comma-separated tables:window points")
    p.add_argument("--sample", type=int, default=300)
    p.add_argument("--k", type=int, default=ContentConfig().top_k)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--driver-memory", default="6g")
    args = p.parse_args(argv)
    cfg = ContentConfig()
    name, x, _ = shard_of_largest_category(args.products, args.seed, args.driver_memory)
    n = x.shape[0]
    rng = np.random.default_rng(args.seed)
    queries = rng.choice(n, min(args.sample, n), replace=False)
    _, good, _ = lsh.exact_topk(x[queries], x, k=args.k, exclude=queries)
    tiebreak = _price_position(x)
    print(f"shard: category {name!r}, {n:,} products of a {args.products:,}-product catalogue; "
          f"{len(queries)} queries, K={args.k}, {cfg.lsh_bits} bits")
    print("| tables | window | shard seconds | tie-aware recall@K |")
    print("|---|---|---|---|")
    for point in args.grid.split(","):
        tables, window = (int(v) for v in point.split(":"))
        t0 = time.perf_counter()
        found = lsh.shard_neighbours(
            x, k=args.k, tables=tables, bits=cfg.lsh_bits, window=window, seed=cfg.seed, tiebreak=tiebreak,
            hash_mask=_mask(x.shape[1], category=True), center=True,
        )
        took = time.perf_counter() - t0
        print(f"| {tables} | {window} | {took:.1f} | {recall(found, queries, good, args.k):.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
