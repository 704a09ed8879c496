"""Benchmark of the bulk ingest: generated events -> Parquet -> the full ingest path into Delta.

For each size it generates events with ``jobs.generate`` (about 40 per user), writes them to Parquet in a
temporary folder, then times, ``--repeats`` times, the ingest of that file (read, parse, row-level quality
tags, counts, MERGE, quarantine) into an empty table and again into the populated one (a rerun: every row
matches, nothing changes). It prints rows/s (median), the data files the first ingest wrote and their mean
size, and the scaling between the smallest and the largest size.

    python bench/ingest.py [--sizes 1000000,4000000] [--repeats 3] [--gx]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from delta.tables import DeltaTable  # noqa: E402
from pyspark.sql import SparkSession  # noqa: E402

from jobs.common import lake  # noqa: E402
from jobs.common.spark import build_spark  # noqa: E402
from jobs.ingest import main as ingest  # noqa: E402
from jobs.ingest import sources  # noqa: E402
from recsys.config import Config, load_config  # noqa: E402

EVENTS_PER_USER = 40
END = datetime(2026, 1, 1, tzinfo=UTC)


def generate(spark: SparkSession, n: int, folder: Path) -> tuple[str, int]:
    """Writes about ``n`` generated events to Parquet; returns the path and the exact row count."""
    from jobs.generate.transforms import generate_sample

    _, events = generate_sample(
        spark,
        users=max(1, n // EVENTS_PER_USER),
        products=20_000,
        events_per_user=EVENTS_PER_USER,
        seed=7,
        end=END,
    )
    path = str(folder / f"events_{n}.parquet")
    events.write.mode("overwrite").parquet(path)
    return path, spark.read.parquet(path).count()


def ingest_once(
    spark: SparkSession, cfg: Config, path: str, *, gx: bool
) -> tuple[float, ingest.IngestReport]:
    start = time.perf_counter()
    df = sources.read_input(spark, path, "parquet")
    report = ingest.ingest_batch(
        spark,
        cfg,
        df,
        report=ingest.IngestReport(lake.INTERACTIONS, path),
        now=datetime.now(UTC),
        run_id="bench",
        source="bench",
        use_gx=gx,
        max_age_days=3650,
    )
    return time.perf_counter() - start, report


def bench_size(
    spark: SparkSession, base: Config, path: str, rows: int, *, repeats: int, gx: bool, folder: Path
) -> dict:
    empty, populated, files = [], [], []
    for i in range(repeats):
        root = folder / f"lake_{rows}_{i}"
        cfg = dataclasses.replace(base, lake=dataclasses.replace(base.lake, root=str(root)))
        took, report = ingest_once(spark, cfg, path, gx=gx)
        assert report.inserted == report.accepted, report
        empty.append(took)
        detail = DeltaTable.forPath(spark, cfg.table_path(lake.INTERACTIONS)).detail().first()
        files.append((int(detail["numFiles"]), int(detail["sizeInBytes"])))
        took, report = ingest_once(spark, cfg, path, gx=gx)
        assert report.inserted == report.updated == 0, report
        populated.append(took)
        shutil.rmtree(root)
    n_files, size = files[0]
    return {
        "rows": rows,
        "empty_s": statistics.median(empty),
        "populated_s": statistics.median(populated),
        "files": n_files,
        "mean_mb": size / n_files / 1e6,
        "quarantined": report.quarantined,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,4000000", help="comma-separated event counts")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per size (the median is printed)")
    parser.add_argument(
        "--gx", action="store_true", help="include the great-expectations report in the timing"
    )
    parser.add_argument("--driver-memory", default="3g")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    base = load_config("conf/local.yaml")
    spark = build_spark(dataclasses.replace(base.spark, driver_memory=args.driver_memory), "bench-ingest")
    folder = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    results = []
    try:
        for n in sizes:
            path, rows = generate(spark, n, folder)
            results.append(
                bench_size(spark, base, path, rows, repeats=args.repeats, gx=args.gx, folder=folder)
            )
            r = results[-1]
            empty_rate, rerun_rate = r["rows"] / r["empty_s"], r["rows"] / r["populated_s"]
            print(
                f"{r['rows']:>10,} events: empty table {r['empty_s']:6.1f} s ({empty_rate:>9,.0f} rows/s)"
                f" | populated (rerun) {r['populated_s']:6.1f} s ({rerun_rate:>9,.0f} rows/s)"
                f" | {r['files']} data files, mean {r['mean_mb']:.2f} MB | quarantined {r['quarantined']}",
                flush=True,
            )
    finally:
        spark.stop()
        shutil.rmtree(folder, ignore_errors=True)
    if len(results) > 1:
        small, big = results[0], results[-1]
        ratio = big["rows"] / small["rows"]
        print(
            f"scaling {ratio:.2f}x rows: empty {big['empty_s'] / small['empty_s']:.2f}x time, "
            f"populated {big['populated_s'] / small['populated_s']:.2f}x time (linear = {ratio:.2f}x)"
        )
    print(f"median of {args.repeats}; local[2] ({base.spark.master}), GE report {'on' if args.gx else 'off'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
