"""The optimize job: Z-order compaction keeps the rows, cuts the files, and lookups skip files."""

from __future__ import annotations

import argparse
from datetime import datetime

import pytest
from chispa import assert_df_equality
from delta.tables import DeltaTable
from pyspark.sql import types as T

from jobs.common import lake
from jobs.common.errors import JobError
from jobs.optimize import main as optimize
from recsys.config import Config, LakeConfig

pytestmark = pytest.mark.spark


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    optimize.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_optimize_compacts_keeps_rows_and_lookups_read_fewer_files(spark, lake_root, capsys):
    cfg = Config(lake=LakeConfig(root=str(lake_root), user_buckets=2))
    path = cfg.table_path(lake.INTERACTIONS)
    spec = lake.TABLES[lake.INTERACTIONS]
    rows = [
        (f"e{i}", f"u{i % 7}", f"p{i % 5}", "view", 1, datetime(2025, 6, 1), None, "t", datetime(2025, 6, 2))
        for i in range(40)
    ]
    df = spark.createDataFrame(rows, T.StructType(spec.schema.fields[:-1])).withColumn(
        "user_bucket", lake.user_bucket("user_id", 2)
    )
    for start in range(0, 40, 10):  # four small appends: several files per bucket
        batch = df.where(f"cast(substring(event_id, 2) as int) between {start} and {start + 9}")
        lake.append(spark, batch.repartition(2), path, spec)
    before = optimize.file_stats(spark, path)
    expected = lake.read_table(spark, path)
    expected = spark.createDataFrame(expected.collect(), expected.schema)

    assert optimize.run(parse("--tables", "interactions", "--skip-vacuum"), cfg, spark) == 0

    after = optimize.file_stats(spark, path)
    assert before.files > after.files == 2  # one Z-ordered file per bucket
    assert_df_equality(lake.read_table(spark, path), expected, ignore_row_order=True)
    assert DeltaTable.forPath(spark, path).history(1).first()["operation"] == "OPTIMIZE"
    probe = dict(optimize.lookup_probe(spark, path, "user_id", buckets=2))
    by_bucket = next(v for k, v in probe.items() if "user_bucket" in k)
    assert by_bucket["files"] == 1
    out = capsys.readouterr().out
    assert f"files  {before.files:>8,} ->        2" in out


def test_unknown_table_and_missing_table_are_errors(spark, lake_root):
    cfg = Config(lake=LakeConfig(root=str(lake_root)))
    with pytest.raises(JobError, match="not one of"):
        optimize.run(parse("--tables", "ratings"), cfg, spark)
    with pytest.raises(JobError, match="run the ingest first"):
        optimize.run(parse("--tables", "products"), cfg, spark)


def test_the_ingested_files_record_compacts_to_one_file(spark, lake_root, capsys):
    from jobs.ingest import ledger
    from jobs.ingest.sources import InputFile

    cfg = Config(lake=LakeConfig(root=str(lake_root)))
    for night in range(3):  # one record per night: a file each
        files = [InputFile(f"file:/raw/events/day-{night}.parquet", 100 + night, 1_000 * night)]
        ledger.record(spark, cfg, "interactions", files, run_id=f"r{night}", now=datetime(2026, 11, 1 + night))
    path = cfg.table_path(lake.INGESTED_FILES)
    assert optimize.file_stats(spark, path).files == 3

    assert optimize.run(parse("--tables", "ingested_files", "--skip-vacuum"), cfg, spark) == 0

    assert optimize.file_stats(spark, path).files == 1
    rows = sorted((r["path"], r["size"], r["run_id"]) for r in lake.read_table(spark, path).collect())
    assert rows == [(f"file:/raw/events/day-{n}.parquet", 100 + n, f"r{n}") for n in range(3)]
    assert "ingested_files: ZORDER BY (path)" in capsys.readouterr().out
