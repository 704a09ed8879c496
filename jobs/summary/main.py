"""Prints a summary of the lake: rows, partitions, files and Delta version of every table."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from jobs.common import lake
from recsys.config import Config

DESCRIPTION = "print rows, partitions, files and Delta version of every lake table"
log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tables", default=None, help="comma-separated tables (default: every Delta table)")


def table_summary(spark: SparkSession, path: str) -> dict[str, Any]:
    """Rows, partition count, file count and size (bytes and MB), and current version of one Delta table."""
    table = DeltaTable.forPath(spark, path)
    detail = table.detail().first()
    assert detail is not None
    last = table.history(1).select("version", "operation").first()
    assert last is not None
    partitions = detail["partitionColumns"]
    df = spark.read.format("delta").load(path)
    rows = df.count()
    n_parts = df.select(*partitions).distinct().count() if partitions else 1
    return {
        "rows": rows,
        "partition_columns": list(partitions),
        "partitions": n_parts,
        "files": int(detail["numFiles"]),
        "bytes": int(detail["sizeInBytes"]),
        "mb": round(int(detail["sizeInBytes"]) / 1e6, 2),
        "version": int(last["version"]),
        "last_operation": last["operation"],
    }


def run(args: argparse.Namespace, cfg: Config, spark: SparkSession) -> int:
    root = Path(cfg.table_path(""))
    names = args.tables.split(",") if args.tables else sorted(
        p.name for p in root.iterdir() if (p / "_delta_log").is_dir()
    ) if root.is_dir() else []
    print(f"lake at {cfg.lake.root}: {len(names)} tables")
    print(f"{'table':<22} {'rows':>12} {'partitions':>11} {'files':>6} {'MB':>9} {'version':>8}  partitioned by")
    for name in names:
        path = cfg.table_path(name)
        if not lake.table_exists(spark, path):
            print(f"{name:<22} (missing)")
            continue
        s = table_summary(spark, path)
        print(
            f"{name:<22} {s['rows']:>12,} {s['partitions']:>11} {s['files']:>6} {s['mb']:>9} {s['version']:>8}"
            f"  {','.join(s['partition_columns']) or '-'}"
        )
    return 0
