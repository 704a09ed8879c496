"""The whole pipeline on generated data (1M, 4M events): seconds per stage, ratio to a bare ALS fit.

First, untimed, the pipeline on a small sample (``--warm-up``, 30k events): the JVM's classes and JIT and
the Python workers' imports are then warm for every timed size, as they are for the bare fit, which always
runs after a pipeline in the same process (without it the first size paid the warm-up, docs/schedule.md).
For each size it generates a sample (``generate``: ``--events-per-user 30``, users = events / 30, 20k
products), runs ``pipeline --full`` (ingest, als, content, blend, load into a redis-server it starts on a free
loopback port) in one Spark session on a fresh lake in a temp folder, then times the bare ALS fit
(``build_als(cfg.als).fit``) on the training matrix of the same lake, cached and counted beforehand. The
target is ``pipeline seconds / ALS fit seconds <= 2.5``. It prints the size on disk of the derived tables
(files, bytes and bytes per entry, the figures of docs/scaling.md). Then it runs the pipeline again,
incrementally, on the same input files: no new data, so it must score no user and load no key; its seconds are
the cost of a scheduled run that finds nothing to do (``--no-rerun`` skips it). Last, the nightly case, twice:
a new input file holds copies (new event ids) of the events of ``--new-share`` of the users (1%), and the
pipeline runs incrementally: it ingests them (the new file only) and rescores those users only. The first time
ALS folds them in against the full run's item factors (``als.refit_every_days``, the default of a nightly run)
and the content job reuses the neighbours of the unchanged catalogue; the second time, on a second such file,
``--refit`` fits ALS on all data again and recomputes the neighbours (what every incremental run did before,
and what a run does once the fit is ``als.refit_every_days`` old or the products changed). Both are printed
with their share of the full run and, as the baseline of their ingest, the seconds of an ingest of the whole
events folder, as ``--reingest`` runs it (``--no-incremental`` skips all three).

    .venv/bin/python bench/pipeline.py [--events 1000000,4000000] [--conf-file conf/local.yaml] [--serial]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pyspark.sql import SparkSession  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

from jobs.als import transforms as als_tr  # noqa: E402
from jobs.als.model import build_als  # noqa: E402
from jobs.common import candidate_lists as CL  # noqa: E402
from jobs.common import lake  # noqa: E402
from jobs.common.progress import setup_logging  # noqa: E402
from jobs.common.spark import build_spark  # noqa: E402
from jobs.pipeline.main import Summary, run_job, run_pipeline  # noqa: E402
from jobs.run import available_jobs, build_parser  # noqa: E402
from jobs.summary.main import table_summary  # noqa: E402
from recsys import schema as S  # noqa: E402
from recsys.config import Config, load_config  # noqa: E402
from recsys.localredis import free_port, start_redis, stop_redis  # noqa: E402

EVENTS_PER_USER = 30
PRODUCTS = 20_000


def bench_config(base: Config, work: str, redis_url: str) -> Config:
    return dataclasses.replace(
        base,
        lake=dataclasses.replace(
            base.lake,
            root=f"{work}/lake",
            raw_root=f"{work}/raw",
            models_root=f"{work}/models",
            checkpoint_dir=f"{work}/checkpoints",
        ),
        redis=dataclasses.replace(base.redis, url=redis_url),
    )


def generate(spark, cfg: Config, events: int) -> None:
    job = available_jobs()["generate"]
    args = build_parser("generate", job).parse_args(
        [
            "--users",
            str(events // EVENTS_PER_USER),
            "--products",
            str(PRODUCTS),
            "--events-per-user",
            str(EVENTS_PER_USER),
        ]
    )
    job.run(args, cfg, spark)


def bare_als_fit(spark, cfg: Config) -> float:
    events = lake.read_table(spark, cfg.table_path(lake.INTERACTIONS))
    as_of = events.agg(F.max(S.COL_TS)).first()[0]
    ratings = als_tr.training_matrix(
        events, events_cfg=cfg.events, as_of=as_of, binary_confidence=cfg.als.binary_confidence
    )
    empty_u = spark.createDataFrame([], "user_id string, user_idx int")
    empty_i = spark.createDataFrame([], "product_id string, item_idx int")
    users = als_tr.new_index_rows(ratings, empty_u, col_id=S.COL_USER, col_idx=als_tr.COL_USER_IDX).cache()
    items = als_tr.new_index_rows(ratings, empty_i, col_id=S.COL_ITEM, col_idx=als_tr.COL_ITEM_IDX).cache()
    train = als_tr.indexed_ratings(ratings, users, items).cache()
    train.count()
    t0 = time.perf_counter()
    model = build_als(cfg.als).fit(train)
    model.itemFactors.count()
    return time.perf_counter() - t0


#: The tables whose size on disk bench/pipeline.py prints after the full run (docs/scaling.md uses them).
SIZED_TABLES = (
    lake.INTERACTIONS,
    lake.PRODUCTS,
    lake.ALS_USER_FACTORS,
    lake.ALS_ITEM_FACTORS,
    lake.CF_CANDIDATES,
    lake.CONTENT_CANDIDATES,
    lake.ITEM_NEIGHBORS,
    lake.ITEMKNN_NEIGHBORS,
    lake.RECOMMENDATIONS,
)


def table_sizes(spark, cfg: Config) -> list[tuple[str, int, int, int]]:
    """``table, files, bytes, entries`` of the current version of each of :data:`SIZED_TABLES`
    (:func:`jobs.summary.main.table_summary`, as ``./spark-submit.sh summary`` prints them); the entries of a
    table of lists (one row per user, a ``product_ids`` array) are its list elements, of any other its rows."""
    out = []
    for name in SIZED_TABLES:
        path = cfg.table_path(name)
        if not lake.table_exists(spark, path):
            continue
        summary = table_summary(spark, path)
        entries = summary["rows"]
        df = lake.read_table(spark, path)
        if CL.COL_PRODUCT_IDS in df.columns:
            entries = int(df.agg(F.sum(F.size(CL.COL_PRODUCT_IDS))).first()[0] or 0)
        out.append((name, summary["files"], summary["bytes"], entries))
    return out


def print_table_sizes(n: int, sizes: list[tuple[str, int, int, int]]) -> None:
    print(f"table sizes after the full run on {n:,} events (current Delta version; lists count their entries):")
    for name, files, size, entries in sizes:
        per = size / entries if entries else float("nan")
        print(f"  {name:<20} {entries:>12,} entries {size / 1e6:>9.1f} MB in {files:>3} files = {per:6.1f} B each")


def events_folder(cfg: Config) -> str:
    return f"{cfg.lake.raw_root}/sample/events"


def add_new_events(spark, cfg: Config, share: float, tag: str) -> int:
    """Writes a new Parquet file into the sample's events folder: copies, with new event ids (``new-<tag>-``
    and the original id), of the generated events of about ``share`` of the users (by a hash of the user id);
    returns the number of users in it."""
    folder = events_folder(cfg)
    events = spark.read.parquet(folder).where(~F.col(S.COL_EVENT_ID).startswith("new-"))
    picked = events.where(F.abs(F.xxhash64(S.COL_USER)) % 10_000 < int(share * 10_000))
    fresh = picked.withColumn(S.COL_EVENT_ID, F.concat(F.lit(f"new-{tag}-"), F.col(S.COL_EVENT_ID)))
    fresh.coalesce(1).write.mode("overwrite").parquet(f"{cfg.lake.raw_root}/new-events")
    [written] = [f for f in os.listdir(f"{cfg.lake.raw_root}/new-events") if f.endswith(".parquet")]
    shutil.move(f"{cfg.lake.raw_root}/new-events/{written}", f"{folder}/part-new-{written}")
    return picked.select(S.COL_USER).distinct().count()


NIGHTLY_MODES = ("fold-in", "refit")


def incremental_with_new_data(
    spark, cfg: Config, full_args: argparse.Namespace, share: float
) -> tuple[list[tuple[str, Summary, float]], int, float]:
    """The nightly case for each of :data:`NIGHTLY_MODES`: new events of ``share`` of the users, then the
    pipeline, incremental (``--refit`` in the second); then, as the baseline of their ingest, the ingest of the
    whole events folder (what the pipeline ran before it read new files only, and runs with ``--reingest``)."""
    runs = []
    for mode in NIGHTLY_MODES:
        users = add_new_events(spark, cfg, share, mode)
        summary, seconds = incremental_run(
            spark,
            cfg,
            argparse.Namespace(**{**vars(full_args), "refit": mode == "refit"}),
            f"incremental run ({mode}), new events of {users:,} users",
        )
        runs.append((mode, summary, seconds))
    t0 = time.perf_counter()
    run_job("ingest", ["--table", "interactions", "--input", events_folder(cfg), "--format", "parquet"], cfg, spark)
    whole = time.perf_counter() - t0
    print(f"ingest of the whole events folder (--reingest): {whole:.1f}s", flush=True)
    return runs, users, whole


@contextlib.contextmanager
def bench_session(base: Config, n: int) -> Iterator[tuple[SparkSession, Config]]:
    """A fresh lake in a temp folder, a redis-server on a free port, and the Spark session; all removed after."""
    work = tempfile.mkdtemp(prefix=f"bench-pipeline-{n}-")
    server = None
    spark = None
    try:
        port = free_port()
        server = start_redis(port, work)
        cfg = bench_config(base, work, f"redis://127.0.0.1:{port}/0")
        spark = build_spark(dataclasses.replace(cfg.spark, driver_memory="3g", log_level="ERROR"), "bench-pipeline")
        spark.sparkContext.setCheckpointDir(cfg.lake.checkpoint_dir)
        yield spark, cfg
    finally:
        if spark is not None:
            spark.stop()
        if server is not None:
            stop_redis(server)
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", default="1000000,4000000", help="comma-separated event counts")
    parser.add_argument("--conf-file", default=str(ROOT / "conf" / "local.yaml"))
    parser.add_argument(
        "--no-rerun", action="store_true", help="skip the incremental rerun with no new data after the full run"
    )
    parser.add_argument(
        "--new-share",
        type=float,
        default=0.01,
        help="share of the users with new events in the last, incremental run (default 0.01)",
    )
    parser.add_argument(
        "--no-incremental", action="store_true", help="skip the incremental run with new data at the end"
    )
    parser.add_argument(
        "--warm-up",
        type=int,
        default=30_000,
        metavar="EVENTS",
        help="untimed pipeline on this many events first, so that the first timed size, like the bare fit "
        "after it, runs in a warm JVM and Python workers (default 30000; 0: none)",
    )
    parser.add_argument(
        "--serial",
        action="store_true",
        help="run the pipeline's stages one after another (pipeline --serial), not als alongside content",
    )
    args = parser.parse_args()
    setup_logging()
    print(f"load average at the start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    base = load_config(args.conf_file)
    pargs = argparse.Namespace(
        full=True,
        events=None,
        products=None,
        format=None,
        preset=None,
        skip="",
        reingest=False,
        refit=False,
        serial=args.serial,
    )
    if args.warm_up:
        with bench_session(base, args.warm_up) as (spark, cfg):
            generate(spark, cfg, args.warm_up)
            t0 = time.perf_counter()
            run_pipeline(pargs, cfg, spark)
            print(
                f"warm-up: pipeline on {args.warm_up:,} events in {time.perf_counter() - t0:.1f}s (not counted)",
                flush=True,
            )
    results = []
    for n in [int(x) for x in args.events.split(",")]:
        with bench_session(base, n) as (spark, cfg):
            generate(spark, cfg, n)
            t0 = time.perf_counter()
            summary = run_pipeline(pargs, cfg, spark)
            total = time.perf_counter() - t0
            fit = bare_als_fit(spark, cfg)
            print(summary.line(), flush=True)
            print_table_sizes(n, table_sizes(spark, cfg))
            print(
                f"{n:,} events: pipeline {total:.1f}s, bare ALS fit {fit:.1f}s, ratio {total / fit:.2f}",
                flush=True,
            )
            rerun = None if args.no_rerun else rerun_without_new_data(spark, cfg, pargs)
            nightly = None if args.no_incremental else incremental_with_new_data(spark, cfg, pargs, args.new_share)
            results.append((n, summary, total, fit, rerun, nightly))
    stages = ("ingest", "als", "content", "blend", "load")
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(
        "| events | users scored | keys | "
        + " | ".join(f"{s} s" for s in stages)
        + " | pipeline s | bare ALS fit s | ratio | rerun, no new data s |"
    )
    print("|---" * (len(stages) + 7) + "|")
    failed = False
    for n, summary, total, fit, rerun, _ in results:
        if rerun is None:
            again = "-"
        else:
            again_summary, again_s = rerun
            again = f"{again_s:.1f} (ingest {again_summary.seconds.get('ingest', 0):.1f})"
            failed |= bool(again_summary.users_scored or again_summary.keys_loaded)
        print(
            f"| {n:,} | {summary.users_scored:,} | {summary.keys_loaded:,} | "
            + " | ".join(f"{summary.seconds.get(s, 0):.1f}" for s in stages)
            + f" | {total:.1f} | {fit:.1f} | {total / fit:.2f} | {again} |"
        )
    nightly_rows = [(n, total, nightly) for n, _, total, _, _, nightly in results if nightly is not None]
    if nightly_rows:
        print(
            "\n| events | ALS | users with new events | users scored | keys | "
            + " | ".join(f"{s} s" for s in stages)
            + " | incremental s | share of the full run | ingest of the whole folder s |"
        )
        print("|---" * (len(stages) + 8) + "|")
    for n, total, (runs, users, whole) in nightly_rows:
        for mode, summary, seconds in runs:
            print(
                f"| {n:,} | {mode} | {users:,} | {summary.users_scored:,} | {summary.keys_loaded:,} | "
                + " | ".join(f"{summary.seconds.get(s, 0):.1f}" for s in stages)
                + f" | {seconds:.1f} | {seconds / total:.2f} | {whole:.1f} |"
            )
            failed |= summary.users_scored > users
    if failed:
        print(
            "FAILED: a rerun with no new data scored users or loaded keys, or an incremental run scored more "
            "users than had new events",
            file=sys.stderr,
        )
        return 1
    return 0


def rerun_without_new_data(spark, cfg: Config, full_args: argparse.Namespace) -> tuple[Summary, float]:
    """The pipeline again, incremental, on the same inputs; prints and returns its summary and seconds."""
    return incremental_run(spark, cfg, full_args, "rerun with no new data")


def incremental_run(spark, cfg: Config, full_args: argparse.Namespace, label: str) -> tuple[Summary, float]:
    """The pipeline, incremental; prints its summary and seconds under ``label`` and returns them."""
    pargs = argparse.Namespace(**{**vars(full_args), "full": False})
    t0 = time.perf_counter()
    summary = run_pipeline(pargs, cfg, spark)
    seconds = time.perf_counter() - t0
    print(summary.line(), flush=True)
    print(
        f"{label}: {seconds:.1f}s, {summary.users_scored:,} users scored, "
        f"{summary.keys_loaded:,} keys loaded",
        flush=True,
    )
    return summary, seconds


if __name__ == "__main__":
    sys.exit(main())
