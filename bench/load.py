"""Bulk-load throughput of ``recommendations:user:{id}`` keys against ``redis-benchmark`` SET.

Starts its own redis-server on a free loopback port (no persistence) and stops it at the end. For each user
count it writes a synthetic ``recommendations`` Delta table (100 products per user from a 20k catalogue),
then times, on that table, the load job's two paths from ``local[2]``:

- the Spark path, ``jobs.load.main.write_kind``: the Spark job that reads the table, joins the ids in the JVM
  (``wire_lists``), and encodes each Arrow batch and sends pipelined ``SET ... EX`` in ``mapInArrow``;
- the direct path, ``jobs.load.direct``: ``plain_files`` (the snapshot's files, the table checked for deletion
  vectors) and ``write_user_lists`` (each task reads its files with pyarrow and runs the same writer).

It reads Redis' memory per user after the Spark path, and runs against the same server, with the same value
size and pipeline depth:

- ``redis-benchmark -t set -d <mean value bytes> -P <pipeline_size> -n <users>`` (the issue's reference; it
  overwrites one key, ``key:__rand_int__``, n times), and
- ``redis-benchmark -P <pipeline_size> -n <users> -r <users> SET key:__rand_int__ <value> EX <ttl>`` (new
  keys with a TTL, as the load writes).

Each path runs twice on the same table: the first (cold) run of the Spark path includes starting the Python
workers and importing pyarrow and redis in them, a one-off cost of every Spark job (the direct path runs
after it, in the same workers); the second (warm) run is the throughput figure. Both are printed, with the
table's file count and the load average next to each row. "Writer alone" is ``write_rows`` over the same
rows as in-memory Arrow batches (read and shaped by the direct path's reader before the clock starts) in
this process, one connection.

    .venv/bin/python bench/load.py [--users 100000,1000000] [--list-size 100]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pyspark.sql import functions as F  # noqa: E402

from jobs.common import lake  # noqa: E402
from jobs.common.spark import build_spark  # noqa: E402
from jobs.load import direct  # noqa: E402
from jobs.load import transforms as tr  # noqa: E402
from jobs.load.main import write_kind  # noqa: E402
from jobs.load.writer import Target, write_rows  # noqa: E402
from recsys.config import RedisConfig, SparkConfig  # noqa: E402
from recsys.localredis import LocalRedis  # noqa: E402

CATALOGUE = 20_000
TTL = 3600


def synthetic_recs(spark, users: int, list_size: int, path: str) -> None:
    """``user_id, product_ids, scores, sources, scored_at`` for ``users`` users, as a Delta table (overwritten)."""
    pos = F.sequence(F.lit(0), F.lit(list_size - 1))
    ids = F.transform(
        pos, lambda i: F.format_string("P%06d", F.pmod(F.xxhash64(F.col("id"), i), F.lit(CATALOGUE)))
    )
    scores = F.transform(pos, lambda i: (F.lit(1.0) - i / F.lit(list_size)).cast("float"))
    sources = F.transform(pos, lambda i: F.pmod(F.col("id") + i, F.lit(15)).cast("int") + 1)
    recs = spark.range(users, numPartitions=4).select(
        F.format_string("U%08d", "id").alias("user_id"),
        ids.alias("product_ids"),
        scores.alias("scores"),
        sources.alias("sources"),
        F.current_timestamp().alias("scored_at"),
    )
    lake.overwrite_version(recs, path)  # as the blend writes the recommendations table


def redis_benchmark(port: int, args: list[str]) -> float:
    """Requests per second of one ``redis-benchmark`` run (``-q``) against ``127.0.0.1:port``."""
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-q", *args], capture_output=True, text=True, check=True
    ).stdout
    found = re.findall(r": ([\d.]+) requests per second", out.replace("\r", "\n"))
    if not found:
        raise RuntimeError(f"cannot parse redis-benchmark output: {out[-200:]!r}")
    return float(found[-1])


def writer_only(files: list[str], client, target: Target, n: int, arrow_batch: int) -> float:
    """Seconds of the executors' writer (``write_rows``) alone over the table's Arrow batches, in this process.

    The batches are read by pyarrow and shaped as ``wire_lists`` ships them (``direct.file_batches``) before
    the clock starts, so this is the writer's own cost (encode, RESP, send, replies) on one core, without Spark.
    """
    batches = [b for f in files for b in direct.file_batches(f, batch_size=arrow_batch)]
    client.flushall()
    t0 = time.perf_counter()
    stats = write_rows(batches, kind="user", ttl=TTL, target=target)
    took = time.perf_counter() - t0
    assert int(stats["keys"]) == n == client.dbsize(), (stats["keys"], n, client.dbsize())
    return took


def timed_load(df, client, target: Target, n: int) -> tuple[float, dict]:
    """Seconds and counts of the Spark path (``write_kind``) over ``df``."""
    client.flushall()
    t0 = time.perf_counter()
    stats = write_kind(df, kind="user", ttl=TTL, target=target)
    took = time.perf_counter() - t0
    assert int(stats["keys"]) == n == client.dbsize(), (stats["keys"], n, client.dbsize())
    return took, stats


def timed_direct(spark, path: str, client, target: Target, n: int) -> tuple[float, list[str]]:
    """Seconds of the direct path: listing and checking the snapshot's files, then ``write_user_lists``."""
    client.flushall()
    t0 = time.perf_counter()
    files = direct.plain_files(spark, path)
    if files is None:
        raise RuntimeError(f"the direct path cannot read {path} (see the log)")
    stats = direct.write_user_lists(spark, files, ttl=TTL, target=target)
    took = time.perf_counter() - t0
    assert int(stats["keys"]) == n == client.dbsize(), (stats["keys"], n, client.dbsize())
    return took, files


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="100000,1000000", help="comma-separated user counts")
    parser.add_argument("--list-size", type=int, default=100, help="products per user list")
    parser.add_argument(
        "--pipeline", type=int, default=RedisConfig().pipeline_size, help="commands per pipeline"
    )
    parser.add_argument(
        "--arrow-batch", type=int, default=10_000, help="spark.sql.execution.arrow.maxRecordsPerBatch"
    )
    args = parser.parse_args()
    import redis

    if shutil.which("redis-benchmark") is None:
        sys.exit("redis-benchmark is not installed: run `make setup`")
    work = tempfile.mkdtemp(prefix="bench-load-")
    server = LocalRedis(work).start()
    spark = build_spark(
        SparkConfig(
            master="local[2]",
            driver_memory="3g",
            shuffle_partitions=4,
            log_level="ERROR",
            extra={"spark.sql.execution.arrow.maxRecordsPerBatch": str(args.arrow_batch)},
        ),
        "bench-load",
    )
    target = Target(server.url, False, 10.0, args.pipeline)
    client = redis.Redis.from_url(server.url)
    rows = []
    try:
        for n in [int(x) for x in args.users.split(",")]:
            path = f"{work}/recs-{n}"
            synthetic_recs(spark, n, args.list_size, path)
            df = tr.user_lists(lake.read_table(spark, path))
            parts = df.rdd.getNumPartitions()
            cold, _ = timed_load(df, client, target, n)
            client.flushall()
            base = int(client.info("memory")["used_memory"])
            warm, stats = timed_load(df, client, target, n)
            mem = (int(client.info("memory")["used_memory"]) - base) / n
            value = int(stats["value_bytes"]) / n
            d_cold, _ = timed_direct(spark, path, client, target, n)
            d_warm, files = timed_direct(spark, path, client, target, n)
            load1 = os.getloadavg()[0]
            alone = writer_only(files, client, target, n, args.arrow_batch)
            client.flushall()
            brief = redis_benchmark(server.port, ["-t", "set", "-d", str(round(value)), "-P", str(args.pipeline),
                                                  "-n", str(n)])
            client.flushall()
            alike = redis_benchmark(
                server.port,
                ["-P", str(args.pipeline), "-n", str(n), "-r", str(n), "SET", "key:__rand_int__",
                 "x" * round(value), "EX", str(TTL)],
            )
            client.flushall()
            rate, d_rate = n / warm, n / d_warm
            rows.append(
                (n, parts, cold, warm, rate, len(files), d_cold, d_warm, d_rate, n / alone, brief, alike, value, mem,
                 load1)
            )
            print(
                f"{n:>9,} users, {parts} partitions: load {rate:>9,.0f} keys/s ({warm:.2f}s warm, {cold:.2f}s "
                f"cold); direct read of {len(files)} file(s) {d_rate:>9,.0f} keys/s ({d_warm:.2f}s warm, "
                f"{d_cold:.2f}s cold); the writer alone {n / alone:,.0f} keys/s; redis-benchmark SET "
                f"{brief:>9,.0f} req/s (ratio {rate / brief:.2f}, direct {d_rate / brief:.2f}), new keys with EX "
                f"{alike:>9,.0f} req/s (ratio {rate / alike:.2f}, direct {d_rate / alike:.2f}); value "
                f"{value:,.0f} B, Redis memory {mem:,.0f} B/user; load average {load1:.1f}",
                flush=True,
            )
    finally:
        client.close()
        spark.stop()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{os.cpu_count()} cores; load average (1 min) at the end: {os.getloadavg()[0]:.1f}")
    print(
        "\n| users | partitions | load keys/s (warm) | warm s | cold s | files | direct keys/s (warm) | direct warm s "
        "| direct cold s | writer alone keys/s | redis-benchmark -t set req/s | ratio | direct ratio "
        "| new keys + EX req/s | ratio | direct ratio | value B | Redis B/user | load avg |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n, parts, cold, warm, rate, nfiles, d_cold, d_warm, d_rate, alone, brief, alike, value, mem, load1 in rows:
        print(
            f"| {n:,} | {parts} | {rate:,.0f} | {warm:.2f} | {cold:.2f} | {nfiles} | {d_rate:,.0f} | {d_warm:.2f} "
            f"| {d_cold:.2f} | {alone:,.0f} | {brief:,.0f} | {rate / brief:.2f} | {d_rate / brief:.2f} "
            f"| {alike:,.0f} | {rate / alike:.2f} | {d_rate / alike:.2f} | {value:,.0f} | {mem:,.0f} | {load1:.1f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
