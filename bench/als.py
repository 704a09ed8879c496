"""Benchmark of the ALS job's heavy stages: fit and candidate scoring, with native BLAS on and off.

    .venv/bin/python bench/als.py                                   # 0.5M, 1M, 2M generated events
    .venv/bin/python bench/als.py --sizes 100000,200000 --repeats 1 # a quick run

For each size the project's generator (``jobs.generate.transforms.generate_sample``) writes events; they
become the ALS training matrix (``jobs.als.transforms``) saved once as parquet. Then, for each BLAS mode,
a fresh worker process (its own JVM: the BLAS implementation is picked once per JVM) times ``repeats``
fits (rank, iterations as given) and ``recommendForAllUsers(top)``; the median is reported with the scaling
exponent between sizes (time ~ pairs^b), the peak JVM heap and the JVM's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jobs.common.spark import build_spark  # noqa: E402
from recsys.config import AlsConfig, EventsConfig, SparkConfig  # noqa: E402

EVENTS_PER_USER = 40
OFF_JAVA_OPTS = "-Ddev.ludovic.netlib.blas.nativeLib=recsys-bench-native-blas-off"


def prepare(sizes: list[int], folder: Path, *, products: int, seed: int) -> dict[int, dict[str, int]]:
    """Generates events of each size and writes the indexed ALS training matrix as parquet."""
    from jobs.als import transforms as tr
    from jobs.generate.transforms import generate_sample

    spark = build_spark(
        SparkConfig(driver_memory="3g", shuffle_partitions=4, log_level="ERROR"), "bench-als-prep"
    )
    info = {}
    end = datetime(2026, 1, 1)
    for size in sizes:
        users = max(size // EVENTS_PER_USER, 1)
        _, events = generate_sample(
            spark, users=users, products=products, events_per_user=EVENTS_PER_USER, seed=seed, end=end
        )
        events = events.cache()
        n_events = events.count()
        ratings = tr.training_matrix(events, events_cfg=EventsConfig(), as_of=end, binary_confidence=True)
        empty_u = spark.createDataFrame([], "user_id string, user_idx int")
        empty_i = spark.createDataFrame([], "product_id string, item_idx int")
        u = tr.new_index_rows(ratings, empty_u, col_id="user_id", col_idx="user_idx")
        i = tr.new_index_rows(ratings, empty_i, col_id="product_id", col_idx="item_idx")
        path = folder / f"matrix-{size}"
        tr.indexed_ratings(ratings, u, i).write.mode("overwrite").parquet(str(path))
        m = spark.read.parquet(str(path))
        info[size] = {
            "events": n_events,
            "pairs": m.count(),
            "users": m.select("user_idx").distinct().count(),
            "items": m.select("item_idx").distinct().count(),
        }
        events.unpersist()
        print(f"prepared {size:,}: {json.dumps(info[size])}", flush=True)
    spark.stop()
    return info


def worker(args: argparse.Namespace) -> None:
    """Times fits and scoring in this process's JVM; prints one JSON line per size."""
    from jobs.als.model import build_als

    extra = {"spark.driver.extraJavaOptions": OFF_JAVA_OPTS} if args.blas == "off" else {}
    spark = build_spark(
        SparkConfig(driver_memory="3g", shuffle_partitions=4, log_level="ERROR", extra=extra),
        f"bench-als-{args.blas}",
    )
    spark.sparkContext.setCheckpointDir(tempfile.mkdtemp(prefix="bench-als-ckpt-"))
    jvm = spark._jvm  # type: ignore[attr-defined]
    blas = jvm.dev.ludovic.netlib.blas.BLAS.getInstance().getClass().getName()
    cfg = AlsConfig(rank=args.rank, max_iter=args.iterations)
    warm = spark.read.parquet(str(Path(args.folder) / f"matrix-{args.sizes[0]}"))
    build_als(AlsConfig(rank=args.rank, max_iter=1)).fit(warm).userFactors.count()  # JIT and pool warm-up
    for size in args.sizes:
        data = spark.read.parquet(str(Path(args.folder) / f"matrix-{size}")).cache()
        data.count()
        fits, scores = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            model = build_als(cfg).fit(data)
            model.userFactors.count()  # fit is lazy past the last iteration's factors
            fits.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            model.recommendForAllUsers(args.top).write.format("noop").mode("overwrite").save()
            scores.append(time.perf_counter() - t0)
        data.unpersist()
        print(
            json.dumps(
                {
                    "size": size,
                    "blas": args.blas,
                    "impl": blas,
                    "fit": statistics.median(fits),
                    "score": statistics.median(scores),
                    "fits": fits,
                    "scores": scores,
                }
            ),
            flush=True,
        )
    mx = jvm.java.lang.management.ManagementFactory
    heap_peak = sum(
        p.getPeakUsage().getUsed() for p in mx.getMemoryPoolMXBeans() if str(p.getType()) == "Heap memory"
    )
    pid = jvm.java.lang.ProcessHandle.current().pid()
    hwm = next(
        (
            int(line.split()[1]) * 1024
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("VmHWM")
        ),
        0,
    )
    print(
        json.dumps({"blas": args.blas, "heap_peak_mb": heap_peak / 1e6, "rss_peak_mb": hwm / 1e6}), flush=True
    )
    spark.stop()


def exponent(t: list[float], n: list[int]) -> list[str]:
    return [f"{math.log(t[j] / t[j - 1]) / math.log(n[j] / n[j - 1]):.2f}" for j in range(1, len(t))]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="500000,1000000,2000000", help="generated events per size")
    p.add_argument("--products", type=int, default=20000)
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--top", type=int, default=50, help="recommendForAllUsers(top)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--blas", choices=["on", "off"], help=argparse.SUPPRESS)  # worker mode
    p.add_argument("--folder", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    if args.blas:
        worker(args)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-als-") as tmp:
        info = prepare(args.sizes, Path(tmp), products=args.products, seed=args.seed)
        results: dict[str, list[dict]] = {}
        memory = {}
        for mode in ("on", "off"):
            cmd = [
                sys.executable,
                __file__,
                "--blas",
                mode,
                "--folder",
                tmp,
                "--sizes",
                ",".join(map(str, args.sizes)),
                "--rank",
                str(args.rank),
                "--iterations",
                str(args.iterations),
                "--top",
                str(args.top),
                "--repeats",
                str(args.repeats),
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
            results[mode] = [r for r in rows if "size" in r]
            memory[mode] = next(r for r in rows if "heap_peak_mb" in r)
    print(
        f"\nALS rank {args.rank}, {args.iterations} iterations, recommendForAllUsers({args.top}), local[2], "
        f"median of {args.repeats}; load average at the end {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} cores"
    )
    print("| native BLAS | implementation | events | users | items | pairs | fit s | score s |")
    print("|---|---|---|---|---|---|---|---|")
    for mode, rows in results.items():
        for r in rows:
            i = info[r["size"]]
            print(
                f"| {mode} | {r['impl'].rsplit('.', 1)[-1]} | {i['events']:,} | {i['users']:,} "
                f"| {i['items']:,} "
                f"| {i['pairs']:,} | {r['fit']:.1f} | {r['score']:.1f} |"
            )
    pairs = [info[s]["pairs"] for s in args.sizes]
    for mode, rows in results.items():
        print(
            f"scaling exponent (BLAS {mode}): fit {exponent([r['fit'] for r in rows], pairs)}, "
            f"score {exponent([r['score'] for r in rows], pairs)}; peak JVM heap "
            f"{memory[mode]['heap_peak_mb']:.0f} MB, peak JVM RSS {memory[mode]['rss_peak_mb']:.0f} MB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
