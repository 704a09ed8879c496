"""Bulk ingest: files (or a preset data set) -> quality gates -> MERGE into the lake, rejects to quarantine.

Every input row is accounted for: ``read = accepted + quarantined + exact duplicates``. Accepted rows are
upserted by key (a rerun changes nothing), rows breaking a rule go to the ``quarantine`` table with the rule,
the source file and the raw row, and the job exits 1 when the quarantined share passes the threshold.
The input files of a successful batch are recorded in ``ingested_files`` (:mod:`jobs.ingest.ledger`);
``--new-files-only`` reads only the files not recorded there with the same size and modification time.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from py4j.protocol import Py4JJavaError
from pyspark import StorageLevel
from pyspark.errors.exceptions.captured import CapturedException
from pyspark.sql import DataFrame, SparkSession
from pyspark.util import inheritable_thread_target

from jobs.common import lake
from jobs.common.errors import JobError
from jobs.common.progress import Stages
from jobs.ingest import ledger, presets, quality, sources
from jobs.ingest import transforms as TX
from recsys import schema as S
from recsys.config import Config

DESCRIPTION = "bulk-load interactions or products (CSV, JSON lines, Parquet or a preset) with quality gates"
DEFAULT_SOURCE = "bulk"
# Relative to the working directory (the repository root for ./spark-submit.sh and make): under
# spark-submit the code runs from a zip, so a path relative to this file would point into build/.
PRESET_INPUTS = {presets.ONLINE_RETAIL: "../shared/datasets/online-retail/online_retail.csv.gz"}
PRESET_EARLIEST = {presets.ONLINE_RETAIL: presets.ONLINE_RETAIL_EARLIEST}
PARSED_FIELDS = {lake.INTERACTIONS: S.INTERACTION_FIELDS, lake.PRODUCTS: S.PRODUCT_FIELDS}
log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--table",
        choices=(lake.INTERACTIONS, lake.PRODUCTS),
        help="table to load (required unless --preset; with a preset, load only this one)",
    )
    parser.add_argument("--input", help="file, folder or glob (a preset has a default)")
    parser.add_argument(
        "--format", choices=sources.FORMATS, help="input format (default: from the extension)"
    )
    parser.add_argument(
        "--map",
        dest="mapping",
        metavar="THEIRS=OURS,...",
        help="rename input columns to the table's, e.g. customer=user_id,sku=product_id",
    )
    parser.add_argument("--preset", choices=tuple(PRESET_INPUTS), help="load a known public data set")
    parser.add_argument(
        "--source",
        default=None,
        help=f"label for interactions without a source column (default {DEFAULT_SOURCE!r})",
    )
    parser.add_argument(
        "--max-quarantine-share",
        type=float,
        default=None,
        help="exit 1 when more than this share of a table's rows is quarantined "
        "(default lake.quarantine_max_share)",
    )
    parser.add_argument(
        "--max-event-age-days",
        type=int,
        default=None,
        help="quarantine events older than this (default lake.max_event_age_days; a preset widens it to "
        "cover its data set)",
    )
    parser.add_argument(
        "--new-files-only",
        action="store_true",
        help="read only the files of --input not ingested before with the same size and modification time "
        "(recorded in the ingested_files table); the pipeline passes it unless --reingest",
    )
    parser.add_argument(
        "--skip-gx",
        action="store_true",
        help="skip the great-expectations report (the row-level gates still run)",
    )


@dataclass
class IngestReport:
    """The counts of one table's ingest; ``read == accepted + quarantined + exact_duplicates``."""

    table: str
    label: str
    read: int = 0
    exact_duplicates: int = 0
    quarantined: int = 0
    inserted: int = 0
    updated: int = 0
    accepted: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)
    gx: quality.SuiteResult | None = None

    @property
    def unchanged(self) -> int:
        return self.accepted - self.inserted - self.updated

    @property
    def quarantined_share(self) -> float:
        distinct = self.read - self.exact_duplicates
        return self.quarantined / distinct if distinct else 0.0


def rules_for(table: str, *, now: datetime, max_age_days: int) -> list[quality.Rule]:
    if table == lake.INTERACTIONS:
        return quality.interaction_rules(now=now, max_age_days=max_age_days)
    return quality.product_rules()


def tag_batch(
    df: DataFrame, *, table: str, rules: list[quality.Rule], source: str, derive_event_id: bool
) -> DataFrame:
    """Input rows -> one row per distinct input row, parsed, with the rules each breaks."""
    raw = TX.with_raw_columns(df, fields=sources.FIELDS[table])
    unique = [r.column for r in rules if r.kind == "unique"]
    # Only an id the input carries: an absent one (derived ids included) is a null column here.
    if len(unique) == 1 and unique[0] in df.columns:
        raw = TX.clustered_by(raw, unique[0])
    raw = TX.collapse_duplicates(raw)
    if table == lake.INTERACTIONS:
        parsed = TX.parse_interactions(raw, source=source, derive_event_id=derive_event_id)
    else:
        parsed = TX.parse_products(raw)
    return quality.tag_failures(parsed, rules=rules)


def write_quarantine(spark: SparkSession, rows: DataFrame, path: str, *, table: str) -> None:
    """Adds ``table``'s quarantined rows not already there (same rule, file and raw row): a rerun adds none.

    The MERGE names the table's partition as a literal, so the ingests of two tables quarantining rows at
    the same time touch disjoint partitions and neither fails with a Delta concurrent-append conflict; a
    conflict all the same (two first ingests creating the table) is retried.
    """
    on = (
        f"t.table = '{table}' AND t.table = s.table AND t.rule = s.rule AND t.source_file <=> s.source_file "
        "AND t.raw <=> s.raw"
    )

    def merge() -> None:
        target = lake.ensure_table(spark, path, lake.TABLES[lake.QUARANTINE])
        target.alias("t").merge(rows.alias("s"), on).whenNotMatchedInsertAll().execute()

    lake.retry_conflicts(merge, what=f"{lake.QUARANTINE} ({table})")


def count_batch(tagged: DataFrame, report: IngestReport) -> None:
    """Fills the read, duplicate, quarantined (total and by rule) and accepted counts of ``report``."""
    counts = TX.batch_counts(tagged).first()
    assert counts is not None  # an aggregate always has one row
    report.read, report.quarantined = int(counts["read"] or 0), int(counts["quarantined"])
    report.exact_duplicates = int(counts["exact_duplicates"] or 0)
    report.by_rule = {r["rule"]: int(r["rows"]) for r in TX.rule_counts(tagged).collect()}
    report.accepted = report.read - report.exact_duplicates - report.quarantined


def upsert(
    spark: SparkSession, cfg: Config, tagged: DataFrame, report: IngestReport, *, now: datetime
) -> None:
    """MERGEs the accepted rows into the report's table and records inserted and updated."""
    if report.table == lake.INTERACTIONS:
        rows = TX.interaction_rows(tagged, ingested_at=now, user_buckets=cfg.lake.user_buckets)
    else:
        rows = TX.product_rows(tagged, updated_at=now)
    merged = lake.merge_upsert(spark, rows, cfg.table_path(report.table), lake.TABLES[report.table])
    report.inserted, report.updated = merged["inserted"], merged["updated"]


def ingest_batch(
    spark: SparkSession,
    cfg: Config,
    df: DataFrame,
    *,
    report: IngestReport,
    now: datetime,
    run_id: str,
    source: str,
    derive_event_id: bool = False,
    use_gx: bool = True,
    max_age_days: int | None = None,
) -> IngestReport:
    """Gates, upserts and quarantines one table's batch; fills and returns ``report``.

    The great-expectations suite is a report (the gates are the Spark rules, counted first), so it runs in a
    thread alongside the MERGE and the quarantine: its many small Spark jobs fill the cores the MERGE's
    planning and commit leave idle. The job waits for it before it returns, and its error, if any, is raised
    then.
    """
    table = report.table
    rules = rules_for(table, now=now, max_age_days=max_age_days or cfg.lake.max_event_age_days)
    stages = Stages(f"ingest {table}")
    tagged = tag_batch(df, table=table, rules=rules, source=source, derive_event_id=derive_event_id)
    tagged = tagged.persist(StorageLevel.MEMORY_AND_DISK)

    def validate() -> quality.SuiteResult:
        with stages("great-expectations"):
            batch = TX.columns_for_validation(tagged, fields=PARSED_FIELDS[table])
            return quality.validate(batch, name=table, rules=rules)

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"gx-{table}")
    suite: Future[quality.SuiteResult] | None = None
    try:
        with stages("quality"):
            count_batch(tagged, report)
        if use_gx:
            suite = pool.submit(inheritable_thread_target(validate))
        with stages("merge"):
            upsert(spark, cfg, tagged, report, now=now)
        if report.quarantined:
            with stages("quarantine"):
                rejects = TX.quarantine_rows(tagged, table=table, run_id=run_id, quarantined_at=now)
                write_quarantine(spark, rejects, cfg.table_path(lake.QUARANTINE), table=table)
    finally:
        pool.shutdown(wait=True)
        tagged.unpersist()
    if suite is not None:
        report.gx = suite.result()  # the suite's error, if any, is raised here, after the writes
        _check_agreement(report)
    return report


def _check_agreement(report: IngestReport) -> None:
    # Both come from the same rule list; a difference would mean the two translations drifted apart.
    assert report.gx is not None
    differ = {
        r: (n, report.by_rule.get(r, 0))
        for r, n in report.gx.unexpected.items()
        if n != report.by_rule.get(r, 0)
    }
    if differ:
        log.error("great-expectations and the Spark rules disagree (gx, spark): %s", differ)


def print_report(r: IngestReport) -> None:
    """The job's answer: read, accepted (inserted, updated, unchanged), quarantined by rule, duplicates.

    Printed in one write, so the reports of two ingests running at the same time (the pipeline's) do not
    interleave.
    """
    lines = [
        f"{r.table} from {r.label}:",
        f"  read              {r.read:>12,}",
        f"  accepted          {r.accepted:>12,}  (inserted {r.inserted:,}, updated {r.updated:,}, "
        f"unchanged {r.unchanged:,})",
        f"  quarantined       {r.quarantined:>12,}  ({r.quarantined_share:.2%} of distinct rows)",
    ]
    lines += [f"    {rule:<24} {n:>10,}" for rule, n in sorted(r.by_rule.items(), key=lambda kv: (-kv[1], kv[0]))]
    lines.append(f"  exact duplicates  {r.exact_duplicates:>12,}  (dropped)")
    if r.gx is not None:
        failed = {k: v for k, v in r.gx.unexpected.items() if v}
        lines.append(
            f"  great-expectations: {r.gx.evaluated} expectations, "
            f"{'all passed' if r.gx.success else f'{len(failed)} failed'}"
        )
    sys.stdout.write("\n".join(lines) + "\n")
    if r.read != r.accepted + r.quarantined + r.exact_duplicates:  # pragma: no cover - holds by construction
        raise JobError(f"{r.table}: counts do not add up: {r}")


def print_excluded(excluded: DataFrame, label: str) -> None:
    """The preset's source lines that are not rows of a table, by reason."""
    rows = excluded.orderBy("table", "reason").collect()
    print(f"{label}: source lines not loaded, by reason (decided by the preset, see docs/lake.md):")
    for row in rows:
        print(f"  {row['table']:<13} {row['reason']:<24} {row['rows']:>10,}")


def _check_args(args: argparse.Namespace, share: float) -> None:
    if not 0.0 <= share <= 1.0:
        raise JobError(f"--max-quarantine-share must be between 0 and 1, got {share}")
    if args.preset is None and args.table is None:
        raise JobError("--table is required (interactions or products) unless --preset is given")
    if args.preset is None and not args.input:
        raise JobError("--input is required unless --preset is given")
    if args.preset is not None and (args.mapping or args.format):
        raise JobError("--map and --format do not apply to --preset (the preset knows its columns)")
    if args.preset is not None and args.new_files_only:
        raise JobError("--new-files-only does not apply to --preset (a preset is one file, read whole)")
    if args.max_event_age_days is not None and args.max_event_age_days <= 0:
        raise JobError(f"--max-event-age-days must be positive, got {args.max_event_age_days}")


def max_age_days(args: argparse.Namespace, cfg: Config, now: datetime) -> int:
    """The age bound of ``ts``: the option, else the config, widened to cover a preset's historical data."""
    days = args.max_event_age_days or cfg.lake.max_event_age_days
    if args.preset is not None and args.max_event_age_days is None:
        days = max(days, (now - PRESET_EARLIEST[args.preset]).days + 1)
    return days


@dataclass
class Batch:
    """One table's input: its rows, a label naming the input, and the files to record once it is ingested."""

    table: str
    rows: DataFrame
    label: str
    files: list[sources.InputFile] = field(default_factory=list)


def batches(spark: SparkSession, cfg: Config, args: argparse.Namespace) -> tuple[list[Batch], Any]:
    """The batches to ingest and, for a preset, its exclusion report.

    With ``--new-files-only`` the batch reads only the input's unrecorded files, and there is no batch when
    every file is recorded (the job says so).
    """
    if args.preset is not None:
        path = args.input or os.path.abspath(PRESET_INPUTS[args.preset])
        if "://" not in path and not sources.input_files(path):
            raise JobError(f"--preset {args.preset}: input file not found: {path}")
        data = presets.online_retail_data(spark, path)
        found = [Batch(lake.PRODUCTS, data.products, path), Batch(lake.INTERACTIONS, data.events, path)]
        return [b for b in found if args.table in (None, b.table)], data.excluded
    fmt = sources.resolve_format(args.input, args.format)
    mapping = sources.parse_mapping(args.mapping, table=args.table)
    df = sources.read_input(spark, args.input, fmt)  # lazy: Spark lists the files, reads no data
    listed = sources.list_files(spark, args.input, df)
    todo = ledger.unrecorded(spark, cfg, args.table, listed)
    if args.new_files_only and not todo:
        print(
            f"{args.table} from {args.input}: no new files ({len(listed):,} files, each ingested before with "
            "the same size and modification time): nothing to read (drop --new-files-only to read them again)"
        )
        return [], None
    paths = [f.path for f in todo] if args.new_files_only else None
    if paths is not None:
        df = sources.read_input(spark, args.input, fmt, paths)
    sources.check_columns(
        df, table=args.table, label=args.input, mapping=mapping, required=sources.REQUIRED[args.table]
    )
    if paths is not None:
        log.info("[ingest] %s: %d new of %d files", args.input, len(todo), len(listed))
    return [Batch(args.table, TX.rename_columns(df, mapping=mapping), args.input, todo)], None


def run(args: argparse.Namespace, cfg: Config, spark: SparkSession) -> int:
    share = cfg.lake.quarantine_max_share if args.max_quarantine_share is None else args.max_quarantine_share
    _check_args(args, share)
    now = datetime.now(UTC)
    run_id = f"ingest-{now:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    todo, excluded = batches(spark, cfg, args)
    source = args.source or (presets.ONLINE_RETAIL_SOURCE if args.preset else DEFAULT_SOURCE)
    if excluded is not None:
        print_excluded(excluded, args.preset)
    over = []
    for batch in todo:
        table, label = batch.table, batch.label
        derive = table == lake.INTERACTIONS and S.COL_EVENT_ID not in batch.rows.columns
        try:
            report = ingest_batch(
                spark,
                cfg,
                batch.rows,
                report=IngestReport(table, label),
                now=now,
                run_id=run_id,
                source=source,
                derive_event_id=derive,
                use_gx=not args.skip_gx,
                max_age_days=max_age_days(args, cfg, now),
            )
        except (Py4JJavaError, CapturedException) as exc:
            # The files are read when the batch is first counted, before anything is written.
            # A file Spark cannot read gets one line naming it; the input is left as it is.
            error = sources.read_failure(exc, label)
            if error is None:
                raise
            raise error from exc
        print_report(report)
        if report.quarantined_share > share:
            over.append(report)
        else:
            ledger.record(spark, cfg, table, batch.files, run_id=run_id, now=now)
    print(f"run {run_id}; tables at {cfg.lake.root}")
    for r in over:
        print(
            f"error: {r.quarantined_share:.2%} of the {r.table} rows were quarantined, more than "
            f"--max-quarantine-share {share:.2%}; the {r.accepted:,} accepted rows were written. "
            f"See the quarantine table (run_id {run_id}), fix the input and rerun (reruns are idempotent; "
            "its files are not recorded as ingested, so --new-files-only reads them again)."
        )
    return 1 if over else 0
