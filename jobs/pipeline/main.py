"""``./spark-submit.sh pipeline``: ingest -> als -> content -> blend -> load in one Spark session.

Incremental by default: the users rescored are those with interactions ingested after the previous
pipeline run's watermark (kept in the ``runs`` table), plus users whose stored list shows a product updated
since then; ``--full`` rescores everyone. The als stage runs alongside the content stage, the blend's
inputs (popular lists, item-kNN neighbours, similar items) and the load of the keys that read no blend output
(similar items, popular lists, products, history seeds), in two threads of the one Spark session
(:func:`run_branches`; ``--serial`` runs them one after another); the user lists and ``model:current`` are
loaded after the blend, and a Redis restart in between makes that load write the early keys again. The als
and content stages of an incremental run write candidates for those users only (``--users``,
:mod:`jobs.common.scope`): ALS folds them in against the stored item factors until the fit is
``als.refit_every_days`` old, then fits on all data again, and the content neighbours are reused while the
products table is unchanged (``--refit`` recomputes both). The ingest reads only input files it has not
ingested before (``ingest --new-files-only``; ``--reingest`` reads them all), the products' alongside the
interactions'. With no new data every stage reports
"nothing to do" and nothing is written, not even a run record, so a rerun is cheap and idempotent.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import ModuleType

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.util import inheritable_thread_target

from jobs.blend.main import BlendInputs, candidates_scope, write_blend, write_blend_inputs
from jobs.common import lake
from jobs.common.errors import JobError
from jobs.common.progress import Stages
from jobs.common.runs import model_version, write_run_record
from jobs.common.scope import read_scope
from jobs.load.main import EARLY_KINDS, LoadOutcome, run_load
from jobs.load.writer import KINDS
from jobs.pipeline import transforms as tr
from recsys import schema as S
from recsys.batch_metrics import push_run_metrics
from recsys.config import Config

DESCRIPTION = (
    "ingest -> als alongside content -> blend -> load (incremental by default; --full rescores everyone)"
)
STAGES: tuple[str, ...] = ("ingest", "als", "content", "blend", "load")
JOB = "pipeline"
log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--full", action="store_true", help="rescore every user, not only changed ones")
    parser.add_argument(
        "--events",
        default=None,
        help="interactions to ingest (default: {lake.raw_root}/sample/events when it exists)",
    )
    parser.add_argument(
        "--products",
        default=None,
        help="products to ingest (default: {lake.raw_root}/sample/products when it exists)",
    )
    parser.add_argument(
        "--format",
        default=None,
        help="input format of --events/--products (default: parquet for the sample, else from the extension)",
    )
    parser.add_argument(
        "--preset", default=None, help="ingest a preset data set instead (e.g. online-retail)"
    )
    parser.add_argument(
        "--skip", default="", help=f"comma-separated stages to skip (of {','.join(STAGES)}), e.g. ingest"
    )
    parser.add_argument(
        "--refit",
        action="store_true",
        help="in an incremental run too, fit ALS (not only when the fit is als.refit_every_days old) and "
        "recompute the content neighbours (not only when the products changed)",
    )
    parser.add_argument(
        "--reingest",
        action="store_true",
        help="read every input file, not only those not ingested before (e.g. after changing the quality rules)",
    )
    parser.add_argument(
        "--serial",
        action="store_true",
        help="run each stage after the other; by default the products' ingest runs alongside the "
        "interactions', and als alongside content, the blend's popular, item-kNN and similar-items steps and "
        "the load of the keys that read no blend output",
    )


@dataclass
class Summary:
    """The closing summary: users scored, keys loaded, seconds per stage and in all.

    ``seconds`` holds each stage's own time; with als alongside content and the blend's inputs they add up to
    more than ``wall``, the run's time from start to end.
    """

    mode: str = "incremental"
    users_scored: int = 0
    keys_loaded: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    wall: float | None = None

    def line(self) -> str:
        secs = ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
        total = sum(self.seconds.values()) if self.wall is None else self.wall
        overlap = f" ({self.notes['overlap']})" if "overlap" in self.notes else ""
        return (
            f"pipeline ({self.mode}): {self.users_scored:,} users scored, {self.keys_loaded:,} keys loaded; "
            f"{secs}; total {total:.1f}s{overlap}"
        )


def previous_watermarks(spark: SparkSession, cfg: Config) -> dict[str, str] | None:
    """The ``metrics`` of the latest pipeline run record, or None before the first run."""
    path = cfg.table_path(lake.RUNS)
    if not lake.table_exists(spark, path):
        return None
    row = (
        lake.read_table(spark, path)
        .where(F.col("job") == JOB)
        .orderBy(F.col("finished_at").desc())
        .select("metrics")
        .first()
    )
    return None if row is None else json.loads(row["metrics"] or "{}")


def _max(df: DataFrame, col: str) -> datetime | None:
    return df.agg(F.max(col)).first()[0]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _job_module(name: str) -> ModuleType | None:
    from jobs.run import available_jobs

    return available_jobs().get(name)


def run_job(name: str, argv: list[str], cfg: Config, spark: SparkSession) -> bool:
    """Runs another job's ``run()`` with arguments parsed by its own parser; False when it is absent."""
    from jobs.run import build_parser

    module = _job_module(name)
    if module is None:
        log.warning("[pipeline] %s: the job is not in this checkout, skipped", name)
        return False
    args = build_parser(name, module).parse_args(argv)
    code = int(module.run(args, cfg, spark) or 0)
    if code != 0:
        raise JobError(
            f"stage {name} exited with code {code}; fix it and rerun the pipeline (reruns are safe)"
        )
    return True


def ingest_argv(args: argparse.Namespace, cfg: Config) -> list[list[str]]:
    """The ingest invocations of this run: products, then interactions (the order of ``--serial``)."""
    if args.preset:
        return [["--preset", args.preset]]
    from pathlib import Path

    sample = Path(cfg.lake.raw_root) / "sample"
    calls = []
    for table, given, default in (
        ("products", args.products, sample / "products"),
        ("interactions", args.events, sample / "events"),
    ):
        path = given or (str(default) if default.exists() else None)
        if path is None:
            continue
        fmt = args.format or ("parquet" if given is None else None)
        calls.append(["--table", table, "--input", path] + (["--format", fmt] if fmt else []))
    return calls


def run_ingest(
    args: argparse.Namespace,
    cfg: Config,
    spark: SparkSession,
    runner: Callable[[str, list[str], Config, SparkSession], bool],
) -> None:
    """Runs the ingest calls, each reading only its input's new files (``--new-files-only``), the products'
    alongside the interactions' (:func:`run_branches`; one after the other with ``--serial``).

    A file is new when the ``ingested_files`` table does not record it with the same size and modification
    time; an input with no new file is not read at all. ``--reingest`` reads every file; a preset is always
    read whole. The two calls write different tables, and their ``ingested_files`` and quarantine rows go to
    different partitions (:func:`jobs.ingest.ledger.record`), so neither fails the other's commit.
    """
    calls = ingest_argv(args, cfg)
    if not calls:
        log.info("[pipeline] ingest: no input given and no sample found: nothing to ingest")
    branches: dict[str, Callable[[], object]] = {}
    for argv in calls:
        new_only = not args.reingest and "--input" in argv
        name = f"ingest-{argv[argv.index('--table') + 1]}" if "--table" in argv else "ingest"
        branches[name] = functools.partial(
            runner, "ingest", argv + (["--new-files-only"] if new_only else []), cfg, spark
        )
    run_branches(spark, branches, serial=args.serial)


def run_branches(spark: SparkSession, branches: dict[str, Callable[[], object]], *, serial: bool = False) -> None:
    """Runs each branch in a thread of its own, all at the same time, on ``spark``; or one after another, in
    order, when ``serial``.

    Spark runs the jobs of both threads on the same executors, so a branch's tasks fill the cores the other
    leaves idle (a stage with fewer tasks than cores, the driver's planning and Delta commits). The first
    branch that fails cancels the Spark jobs of the others (each thread tags its jobs); its error is raised
    once every branch has stopped.
    """
    if serial or len(branches) < 2:
        for fn in branches.values():
            fn()
        return
    sc = spark.sparkContext
    run_id = uuid.uuid4().hex[:8]
    tags = {name: f"recsys-pipeline-{name}-{run_id}" for name in branches}
    failed: list[tuple[str, BaseException]] = []
    lock = threading.Lock()

    def cancel(but: str | None) -> None:
        for name, tag in tags.items():
            if name != but:
                sc.cancelJobsWithTag(tag)

    def branch(name: str, fn: Callable[[], object]) -> None:
        sc.addJobTag(tags[name])
        try:
            fn()
        except BaseException as exc:  # every error reaches the caller, re-raised below
            with lock:
                first = not failed
                failed.append((name, exc))
            if first:
                log.error("[pipeline] %s failed (%s): cancelling the other stages' Spark jobs", name, exc)
                cancel(but=name)
        finally:
            sc.removeJobTag(tags[name])

    threads = [
        threading.Thread(
            target=inheritable_thread_target(branch), args=(name, fn), name=f"pipeline-{name}", daemon=True
        )
        for name, fn in branches.items()
    ]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except BaseException:  # Ctrl-C: stop the branches' Spark jobs too
        cancel(but=None)
        raise
    if failed:
        raise failed[0][1]


def run_pipeline(
    args: argparse.Namespace,
    cfg: Config,
    spark: SparkSession,
    runner: Callable[[str, list[str], Config, SparkSession], bool] = run_job,
) -> Summary:
    """The five stages; ``runner`` runs the ingest, als and content jobs (tests pass a fake one)."""
    t0 = time.perf_counter()
    started = datetime.now(UTC).replace(tzinfo=None)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = sorted(skip - set(STAGES))
    if unknown:
        raise JobError(f"--skip names unknown stage(s) {', '.join(unknown)} (known: {', '.join(STAGES)})")
    stages = Stages(JOB)
    out = Summary(mode="full" if args.full else "incremental")

    # A full run rescores everyone whatever the previous run saw: it reads no watermark.
    prev = None if args.full else previous_watermarks(spark, cfg)
    with stages("ingest"):
        if "ingest" in skip:
            log.info("[pipeline] ingest: skipped (--skip)")
        else:
            run_ingest(args, cfg, spark, runner)

    ipath, ppath = cfg.table_path(lake.INTERACTIONS), cfg.table_path(lake.PRODUCTS)
    if not (lake.table_exists(spark, ipath) and lake.table_exists(spark, ppath)):
        raise JobError(f"no interactions or products table under {cfg.lake.root}: ingest data first")
    events, products = lake.read_table(spark, ipath), lake.read_table(spark, ppath)
    watermark, products_watermark = _max(events, S.COL_INGESTED_AT), _max(products, S.COL_UPDATED_AT)
    users: DataFrame | None = None
    if not args.full and prev is not None and prev.get("watermark"):
        since = datetime.fromisoformat(prev["watermark"])
        since_products = datetime.fromisoformat(prev.get("products_watermark") or prev["watermark"])
        users = tr.changed_users(events, since=since)
        rpath = cfg.table_path(lake.RECOMMENDATIONS)
        if lake.table_exists(spark, rpath) and products_watermark and products_watermark > since_products:
            users = users.unionByName(
                tr.users_showing(lake.read_table(spark, rpath), products, since=since_products)
            ).distinct()
        users = users.cache()
        n_changed = users.count()
        log.info("[pipeline] %d users changed since %s", n_changed, since.isoformat())
        if n_changed == 0:
            for name in STAGES[1:]:
                with stages(name):
                    log.info(
                        "[pipeline] %s: nothing to do (no interactions ingested since %s)",
                        name,
                        since.isoformat(),
                    )
            out.seconds = dict(stages.seconds)
            out.wall = time.perf_counter() - t0
            out.notes["reason"] = "no new data"
            return out
    elif not args.full:
        out.mode = "full (first run)"

    # An incremental run scores candidates for its users only: als and content read them from a table.
    scope: str | None = None
    scoped: list[str] = []
    if users is not None:
        upath = cfg.table_path(lake.RESCORED_USERS)
        lake.overwrite_version(users, upath)
        scope = read_scope(spark, upath).tag
        scoped = ["--users", upath]
    refit = args.refit and users is not None
    forced = {"als": ["--refit"], "content": ["--full"]} if refit else {}
    version = model_version("blend", datetime.now(UTC).replace(tzinfo=None))
    blend_stages = Stages("blend")
    blend_skipped = "blend" in skip
    if not blend_skipped and skip & {"als", "content"}:
        # A skipped stage's candidate table stays as it is: one written for other users stops the run now.
        candidates_scope(spark, cfg, rescoring=users is not None, all_users=False, scope=scope)
    inputs: list[BlendInputs] = []

    def model(name: str) -> None:
        with stages(name):
            if name in skip:
                log.info("[pipeline] %s: skipped (--skip)", name)
            else:
                runner(name, scoped + forced.get(name, []), cfg, spark)

    load_skipped = "load" in skip
    load_stages = Stages("load")
    early: list[LoadOutcome] = []

    def content_and_blend_inputs() -> None:
        model("content")
        if not blend_skipped:
            with stages("blend"):
                inputs.append(write_blend_inputs(spark, cfg, version=version, stages=blend_stages))
        if not load_skipped:
            # The keys that read no blend output (similar items, popular lists, products, history seeds) go
            # out now, alongside the ALS fit; the user lists and model:current follow the blend.
            with stages("load"):
                early.append(
                    run_load(
                        spark, cfg, stages=load_stages, kinds=EARLY_KINDS, history_users=users, finish=False
                    )
                )

    run_branches(spark, {"als": lambda: model("als"), "content": content_and_blend_inputs}, serial=args.serial)
    if not args.serial:
        out.notes["overlap"] = (
            "als ran alongside content, the blend's popular, itemknn and similar steps and the load of "
            "similar, popular, product and history keys"
        )
    with stages("blend"):
        if blend_skipped:
            log.info("[pipeline] blend: skipped (--skip)")
        else:
            sources_of_users = candidates_scope(
                spark, cfg, rescoring=users is not None, all_users=False, scope=scope
            )
            blended = write_blend(
                spark,
                cfg,
                inputs[0],
                version=version,
                stages=blend_stages,
                users=users,
                all_users=False,
                sources_of_users=sources_of_users,
            )
            out.users_scored = blended.users
    with stages("load"):
        if load_skipped:
            log.info("[pipeline] load: skipped (--skip)")
        else:
            loaded = run_load(
                spark,
                cfg,
                stages=load_stages,
                version=None if users is None else version,
                kinds=tuple(k for k in KINDS if k not in EARLY_KINDS),
                history_users=users,
                after=early[0],
            )
            out.keys_loaded = loaded.total_keys
            out.notes["bytes_per_user"] = f"{loaded.memory_bytes_per_user:.0f}"
    out.seconds = {name: stages.seconds[name] for name in STAGES if name in stages.seconds}
    out.wall = time.perf_counter() - t0
    write_run_record(
        spark,
        cfg.table_path(lake.RUNS),
        {
            "job": JOB,
            "model_version": model_version(JOB, started),
            "started_at": started,
            "finished_at": datetime.now(UTC).replace(tzinfo=None),
            "params": {"mode": out.mode, "skip": sorted(skip), "blend_version": version},
            "metrics": {
                "watermark": _iso(watermark),
                "products_watermark": _iso(products_watermark),
                "users_scored": out.users_scored,
                "keys_loaded": out.keys_loaded,
            },
            "timings": {**out.seconds, "total": round(out.wall, 3)},
            "row_counts": {"users_scored": out.users_scored, "keys_loaded": out.keys_loaded},
        },
    )
    push_run_metrics(
        cfg.metrics.pushgateway_url,
        job=JOB,
        stage_seconds=out.seconds,
        rows={"users_scored": out.users_scored},
        keys_loaded={"all": out.keys_loaded},
        timeout_s=cfg.metrics.push_timeout_s,
        duration_s=out.wall,
    )
    return out


def run(args: argparse.Namespace, cfg: Config, spark: SparkSession) -> int:
    out = run_pipeline(args, cfg, spark)
    print(out.line() + (f" ({out.notes['reason']})" if "reason" in out.notes else ""))
    log.info("[pipeline] finished in %.1fs", out.wall or 0.0)
    return 0
