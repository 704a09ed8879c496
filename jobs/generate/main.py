"""Writes the synthetic sample: <output>/products and <output>/events, overwritten on every run."""

from __future__ import annotations

import argparse
import logging
from datetime import UTC, date, datetime, time

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.common.errors import JobError
from jobs.common.progress import Stages
from jobs.generate.transforms import generate_sample
from recsys import schema as S
from recsys.config import Config

DESCRIPTION = "generate a synthetic catalogue and event sample (users with planted preferences)"
FORMATS = ("parquet", "csv", "json")
log = logging.getLogger(__name__)


def _end_date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--end-date must be YYYY-MM-DD (got {value!r})") from exc


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--users", type=int, default=10_000, help="number of users (default 10000)")
    parser.add_argument("--products", type=int, default=2000, help="number of products (default 2000)")
    parser.add_argument(
        "--events-per-user", type=int, default=30, help="average events per user (default 30)"
    )
    parser.add_argument("--seed", type=int, default=42, help="the same seed gives the same data (default 42)")
    parser.add_argument("--days", type=int, default=90, help="event window length in days (default 90)")
    parser.add_argument(
        "--end-date", type=_end_date, default=None,
        help="end of the event window, exclusive, YYYY-MM-DD at 00:00 UTC (default: today)",
    )
    parser.add_argument("--output", default=None, help="output folder (default: {lake.raw_root}/sample)")
    parser.add_argument("--format", choices=FORMATS, default="parquet", help="file format (default parquet)")


def _write(df: DataFrame, path: str, fmt: str) -> None:
    writer = df.write.mode("overwrite").format(fmt)
    if fmt == "csv":
        writer = writer.option("header", True)
    writer.save(path)


def event_mix(events: DataFrame) -> dict[str, int]:
    """Rows per event type, every type present (0 when absent)."""
    counts = {row[S.COL_EVENT_TYPE]: int(row["n"]) for row in
              events.groupBy(S.COL_EVENT_TYPE).agg(F.count("*").alias("n")).collect()}
    return {t: counts.get(t, 0) for t in S.EVENT_TYPES}


def run(args: argparse.Namespace, cfg: Config, spark: SparkSession) -> int:
    end_day = args.end_date or datetime.now(UTC).date()
    end = datetime.combine(end_day, time(0, 0), tzinfo=UTC)
    output = (args.output or f"{cfg.lake.raw_root}/sample").rstrip("/")
    stages = Stages("generate")
    log.info(
        "generating %d users x ~%d events, %d products, seed %d, %d days up to %s -> %s (%s)",
        args.users, args.events_per_user, args.products, args.seed, args.days, end.date(), output,
        args.format,
    )
    try:
        products, events = generate_sample(
            spark, users=args.users, products=args.products, events_per_user=args.events_per_user,
            seed=args.seed, end=end, days=args.days,
        )
    except ValueError as exc:
        raise JobError(f"bad argument: {exc}") from exc
    with stages("write products"):
        _write(products, f"{output}/products", args.format)
    with stages("write events"):
        _write(events, f"{output}/events", args.format)
    with stages("summary"):
        reader = spark.read.format(args.format)
        if args.format == "csv":
            reader = reader.option("header", True)
        n_products = reader.load(f"{output}/products").count()
        written = reader.load(f"{output}/events")
        mix = event_mix(written)
        n_users = written.select(S.COL_USER).distinct().count()
    total, views = sum(mix.values()), max(mix["view"], 1)
    print(f"sample written to {output} ({args.format}), seed {args.seed}, "
          f"{args.days} days up to {end.date()}")
    print(f"  products {n_products:,}   events {total:,}   users with events {n_users:,}")
    print("  event mix " + "   ".join(f"{t} {n:,}" for t, n in mix.items()))
    print("  funnel per view " + "   ".join(f"{t} {n / views:.3f}" for t, n in mix.items() if t != "view"))
    print("  seconds " + "   ".join(f"{k} {v:.1f}" for k, v in stages.seconds.items()))
    return 0
