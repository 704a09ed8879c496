"""Bulk-load throughput of ``recommendations:user:{id}`` keys against ``redis-benchmark`` SET.

Starts its own redis-server on a free loopback port (no persistence) and stops it at the end. For each user
count it writes a synthetic ``recommendations`` table (100 products per user from a 20k catalogue) to
Parquet, then times the load job's executor-side writer (``jobs.load.main.write_kind``: Parquet read,
encoding and pipelined ``SET ... EX`` from ``local[2]``), reads Redis' memory per user, and runs
``redis-benchmark -t set -d <mean value bytes> -P <pipeline_size> -n <users>`` against the same server.

    .venv/bin/python bench/load.py [--users 100000,1000000] [--list-size 100]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pyspark.sql import functions as F  # noqa: E402

from jobs.common.spark import build_spark  # noqa: E402
from jobs.load import transforms as tr  # noqa: E402
from jobs.load.main import write_kind  # noqa: E402
from jobs.load.writer import Target  # noqa: E402
from recsys.config import RedisConfig, SparkConfig  # noqa: E402

CATALOGUE = 20_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(port: int, workdir: str) -> subprocess.Popen:
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("redis-server is not installed: run `make setup`")
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("redis-server did not start")


def synthetic_recs(spark, users: int, list_size: int, path: str) -> None:
    """``user_id, product_ids, scores, sources, scored_at`` for ``users`` users, written as Parquet."""
    pos = F.sequence(F.lit(0), F.lit(list_size - 1))
    ids = F.transform(
        pos, lambda i: F.format_string("P%06d", F.pmod(F.xxhash64(F.col("id"), i), F.lit(CATALOGUE)))
    )
    scores = F.transform(pos, lambda i: (F.lit(1.0) - i / F.lit(list_size)).cast("float"))
    sources = F.transform(pos, lambda i: F.pmod(F.col("id") + i, F.lit(15)).cast("int") + 1)
    (
        spark.range(users, numPartitions=4)
        .select(
            F.format_string("U%08d", "id").alias("user_id"),
            ids.alias("product_ids"),
            scores.alias("scores"),
            sources.alias("sources"),
            F.current_timestamp().alias("scored_at"),
        )
        .write.mode("overwrite")
        .parquet(path)
    )


def redis_benchmark(port: int, value_bytes: int, pipeline: int, n: int) -> float:
    cmd = [
        "redis-benchmark",
        "-t",
        "set",
        "-d",
        str(value_bytes),
        "-P",
        str(pipeline),
        "-n",
        str(n),
        "-p",
        str(port),
        "-q",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    found = re.findall(r"SET: ([\d.]+) requests per second", out)
    if not found:
        raise RuntimeError(f"cannot parse redis-benchmark output: {out[-200:]!r}")
    return float(found[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="100000,1000000", help="comma-separated user counts")
    parser.add_argument("--list-size", type=int, default=100, help="products per user list")
    parser.add_argument(
        "--pipeline", type=int, default=RedisConfig().pipeline_size, help="commands per pipeline"
    )
    args = parser.parse_args()
    import redis

    port = free_port()
    work = tempfile.mkdtemp(prefix="bench-load-")
    server = start_redis(port, work)
    url = f"redis://127.0.0.1:{port}/0"
    spark = build_spark(
        SparkConfig(master="local[2]", driver_memory="3g", shuffle_partitions=4, log_level="ERROR"),
        "bench-load",
    )
    target = Target(url, False, 10.0, args.pipeline)
    client = redis.Redis.from_url(url)
    rows = []
    try:
        for n in [int(x) for x in args.users.split(",")]:
            path = f"{work}/recs-{n}"
            synthetic_recs(spark, n, args.list_size, path)
            client.flushall()
            base = int(client.info("memory")["used_memory"])
            df = tr.user_lists(spark.read.parquet(path))
            t0 = time.perf_counter()
            stats = write_kind(df, kind="user", ttl=3600, target=target)
            took = time.perf_counter() - t0
            keys = int(stats["keys"])
            assert keys == n == client.dbsize(), (keys, n, client.dbsize())
            mem = (int(client.info("memory")["used_memory"]) - base) / n
            value = int(stats["value_bytes"]) / n
            client.flushall()
            bench = redis_benchmark(port, round(value), args.pipeline, n)
            client.flushall()
            rows.append((n, keys / took, took, bench, value, mem))
            print(
                f"{n:>9,} users: load {keys / took:>9,.0f} keys/s ({took:.1f}s), redis-benchmark SET "
                f"{bench:>9,.0f} req/s, ratio {keys / took / bench:.2f}; value {value:,.0f} B, "
                f"Redis memory {mem:,.0f} B/user",
                flush=True,
            )
    finally:
        client.close()
        spark.stop()
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("\n| users | load keys/s | load s | redis-benchmark SET req/s | ratio | value B | Redis B/user |")
    print("|---|---|---|---|---|---|---|")
    for n, rate, took, bench, value, mem in rows:
        print(
            f"| {n:,} | {rate:,.0f} | {took:.1f} | {bench:,.0f} | {rate / bench:.2f} | {value:,.0f} "
            f"| {mem:,.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
