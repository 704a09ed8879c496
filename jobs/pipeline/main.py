"""``./spark-submit.sh pipeline``: ingest -> als -> content -> blend -> load in one Spark session.

Incremental by default: the users rescored are those with interactions ingested after the previous
pipeline run's watermark (kept in the ``runs`` table), plus users whose stored list shows a product updated
since then; ``--full`` rescores everyone. The als and content stages of an incremental run write candidates
for those users only (``--users``, :mod:`jobs.common.scope`); the models are still fitted on all data. An
input whose files (names, sizes, modification times) are those the last completed run ingested is not read
again (``--reingest`` reads it). With no new data every stage reports "nothing to do" and nothing is
written, not even a run record, so a rerun is cheap and idempotent.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import ModuleType

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.blend.main import run_blend
from jobs.common import lake
from jobs.common.errors import JobError
from jobs.common.progress import Stages
from jobs.common.runs import model_version, write_run_record
from jobs.common.scope import read_scope
from jobs.load.main import run_load
from jobs.pipeline import transforms as tr
from recsys import schema as S
from recsys.batch_metrics import push_run_metrics
from recsys.config import Config

DESCRIPTION = "ingest -> als -> content -> blend -> load (incremental by default; --full rescores everyone)"
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
        "--reingest",
        action="store_true",
        help="ingest every input, even one whose files are unchanged since the last completed run",
    )


@dataclass
class Summary:
    """The closing summary: users scored, keys loaded, seconds per stage."""

    mode: str = "incremental"
    users_scored: int = 0
    keys_loaded: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        secs = ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
        return (
            f"pipeline ({self.mode}): {self.users_scored:,} users scored, {self.keys_loaded:,} keys loaded; "
            f"{secs}; total {sum(self.seconds.values()):.1f}s"
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
    """The ingest invocations of this run (products first, so availability is current for the blend)."""
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


def input_fingerprint(spark: SparkSession, path: str) -> dict[str, object] | None:
    """The data files under ``path`` (a file, folder or glob, any Hadoop filesystem) as a comparable summary.

    Lists names, sizes and modification times only (no data is read), skipping hidden and ``_``-prefixed
    entries below the named path as the readers do: ``{"files": n, "sha256": digest}``, or None when
    nothing matches (the ingest then reports the missing input itself).

    Example:
        >>> input_fingerprint(spark, "data/raw/sample/events")
        {'files': 2, 'sha256': '9f2c...'}
    """
    jvm = spark.sparkContext._jvm
    assert jvm is not None  # a live session has a gateway
    root = jvm.org.apache.hadoop.fs.Path(path)
    fs = root.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    statuses = fs.globStatus(root)
    if not statuses:
        return None
    lines: list[str] = []
    for status in statuses:
        base = status.getPath().toString()
        if status.isDirectory():
            files = fs.listFiles(status.getPath(), True)
            while files.hasNext():
                f = files.next()
                name = f.getPath().toString()
                below = name[len(base) :].lstrip("/").split("/")
                if not any(part.startswith((".", "_")) for part in below):
                    lines.append(f"{name}\t{f.getLen()}\t{f.getModificationTime()}")
        else:
            lines.append(f"{base}\t{status.getLen()}\t{status.getModificationTime()}")
    if not lines:
        return None
    digest = hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()
    return {"files": len(lines), "sha256": digest}


def _input_path(argv: list[str]) -> str | None:
    return argv[argv.index("--input") + 1] if "--input" in argv else None


def run_ingest(
    args: argparse.Namespace,
    cfg: Config,
    spark: SparkSession,
    runner: Callable[[str, list[str], Config, SparkSession], bool],
    previous: dict[str, object],
) -> dict[str, object]:
    """Runs the ingest calls whose input changed since the last completed run; returns this run's inputs.

    An input whose files (names, sizes, modification times) equal those the last completed run recorded
    for the same call is skipped: its rows are in the lake already and a MERGE of them would change
    nothing. ``--reingest``, a preset, or a changed or new file make the call run.
    """
    inputs: dict[str, object] = {}
    calls = ingest_argv(args, cfg)
    if not calls:
        log.info("[pipeline] ingest: no input given and no sample found: nothing to ingest")
    for argv in calls:
        key = " ".join(argv)
        path = _input_path(argv)
        found = None if path is None else input_fingerprint(spark, path)
        if found is not None:
            inputs[key] = found
            if not args.reingest and previous.get(key) == found:
                log.info(
                    "[pipeline] ingest %s: unchanged since the last completed run (%d files, same names, sizes"
                    " and modification times): skipped (--reingest reads it again)",
                    path,
                    found["files"],
                )
                continue
        runner("ingest", argv, cfg, spark)
    return inputs


def run_pipeline(
    args: argparse.Namespace,
    cfg: Config,
    spark: SparkSession,
    runner: Callable[[str, list[str], Config, SparkSession], bool] = run_job,
) -> Summary:
    """The five stages; ``runner`` runs the ingest, als and content jobs (tests pass a fake one)."""
    started = datetime.now(UTC).replace(tzinfo=None)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = sorted(skip - set(STAGES))
    if unknown:
        raise JobError(f"--skip names unknown stage(s) {', '.join(unknown)} (known: {', '.join(STAGES)})")
    stages = Stages(JOB)
    out = Summary(mode="full" if args.full else "incremental")

    prev = previous_watermarks(spark, cfg)
    recorded = (prev or {}).get("inputs")
    # What the lake holds was ingested from these inputs; a run that skips ingest passes them on.
    inputs: dict[str, object] = recorded if isinstance(recorded, dict) else {}
    with stages("ingest"):
        if "ingest" in skip:
            log.info("[pipeline] ingest: skipped (--skip)")
        else:
            inputs = run_ingest(args, cfg, spark, runner, inputs)

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
    for name, argv in (("als", scoped), ("content", scoped)):
        with stages(name):
            if name in skip:
                log.info("[pipeline] %s: skipped (--skip)", name)
            else:
                runner(name, argv, cfg, spark)
    version = model_version("blend", datetime.now(UTC).replace(tzinfo=None))
    with stages("blend"):
        if "blend" in skip:
            log.info("[pipeline] blend: skipped (--skip)")
        else:
            blended = run_blend(spark, cfg, version=version, stages=Stages("blend"), users=users, scope=scope)
            out.users_scored = blended.users
    with stages("load"):
        if "load" in skip:
            log.info("[pipeline] load: skipped (--skip)")
        else:
            loaded = run_load(spark, cfg, stages=Stages("load"), version=None if users is None else version)
            out.keys_loaded = loaded.total_keys
            out.notes["bytes_per_user"] = f"{loaded.memory_bytes_per_user:.0f}"
    out.seconds = dict(stages.seconds)
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
                "inputs": inputs,
                "users_scored": out.users_scored,
                "keys_loaded": out.keys_loaded,
            },
            "timings": out.seconds,
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
    )
    return out


def run(args: argparse.Namespace, cfg: Config, spark: SparkSession) -> int:
    t0 = time.perf_counter()
    out = run_pipeline(args, cfg, spark)
    print(out.line() + (f" ({out.notes['reason']})" if "reason" in out.notes else ""))
    log.info("[pipeline] finished in %.1fs", time.perf_counter() - t0)
    return 0
