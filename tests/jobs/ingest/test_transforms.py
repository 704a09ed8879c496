"""Parsing, duplicate collapsing and the lake/quarantine projections of the ingest."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from jobs.common import lake
from jobs.ingest import transforms as TX
from recsys import schema as S

pytestmark = pytest.mark.spark

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_parse_interactions_reads_text_numbers_and_defaults(spark):
    df = spark.createDataFrame(
        [
            ("e1", "u1", "p1", "view", "2", "2025-06-01T10:00:00Z", "s1", "app"),
            ("e2", "u2", "p2", "view", None, "1748772000", None, None),
            ("e3", "u3", "p3", "view", "2.5", "2025-06-01 12:00:00+02:00", None, None),
            ("e4", "u4", "p4", "view", "x", "yesterday", None, None),
        ],
        ", ".join(f"{c} string" for c in S.INTERACTION_FIELDS),
    )
    raw = TX.with_raw_columns(df, fields=S.INTERACTION_FIELDS)
    got = TX.parse_interactions(raw, source="bulk").select(*S.INTERACTION_FIELDS)
    expected = spark.createDataFrame(
        [
            ("e1", "u1", "p1", "view", 2, datetime(2025, 6, 1, 10), "s1", "app"),
            ("e2", "u2", "p2", "view", 1, datetime(2025, 6, 1, 10), None, "bulk"),
            ("e3", "u3", "p3", "view", None, datetime(2025, 6, 1, 10), None, "bulk"),
            ("e4", "u4", "p4", "view", None, None, None, "bulk"),
        ],
        "event_id string, user_id string, product_id string, event_type string, quantity int, ts timestamp,"
        " session_id string, source string",
    )
    assert_df_equality(got, expected, ignore_nullable=True)


def test_absent_columns_are_null_raw_columns_and_event_ids_derive_from_the_row(spark):
    df = spark.createDataFrame(
        [
            ("u1", "p1", "view", "2025-06-01"),
            ("u1", "p1", "view", "2025-06-01"),
            ("u1", "p1", "click", "2025-06-01"),
        ],
        "user_id string, product_id string, event_type string, ts string",
    )
    raw = TX.with_raw_columns(df, fields=S.INTERACTION_FIELDS)
    assert sorted(raw.columns) == sorted(f"_raw_{c}" for c in S.INTERACTION_FIELDS)
    ids = TX.parse_interactions(raw, source="bulk", derive_event_id=True).select("event_id", "event_type")
    rows = ids.collect()
    assert rows[0]["event_id"] == rows[1]["event_id"] != rows[2]["event_id"]
    assert rows[0]["event_id"].startswith("h-") and len(rows[0]["event_id"]) == 34


def test_collapse_counts_exact_copies_and_keeps_the_first_file(spark):
    df = spark.createDataFrame(
        [("a", "1", "f2"), ("a", "1", "f1"), ("a", "2", "f1"), ("b", None, "f3"), ("b", None, "f3")],
        "product_id string, title string, _source_file string",
    )
    got = TX.collapse_duplicates(TX.with_raw_columns(df, fields=["product_id", "title"]))
    expected = spark.createDataFrame(
        [("a", "1", 2, "f1"), ("a", "2", 1, "f1"), ("b", None, 2, "f3")],
        "_raw_product_id string, _raw_title string, _copies long, _source_file string",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_interaction_rows_have_the_table_schema_and_bucket(spark):
    tagged = spark.createDataFrame(
        [
            ("e1", "u1", "p1", "view", 1, datetime(2025, 6, 1), None, "api", []),
            ("e2", "u2", "p1", "view", 1, datetime(2025, 6, 1), None, "api", ["ts_range"]),
        ],
        "event_id string, user_id string, product_id string, event_type string, quantity int, ts timestamp,"
        " session_id string, source string, _failed_rules array<string>",
    )
    got = TX.interaction_rows(tagged, ingested_at=NOW, user_buckets=8)
    assert [(f.name, f.dataType) for f in got.schema] == [
        (f.name, f.dataType) for f in lake.INTERACTIONS_SCHEMA
    ]
    expected = spark.createDataFrame(
        [("e1", "u1", "p1", "view", 1, datetime(2025, 6, 1), None, "api", datetime(2026, 1, 1))],
        "event_id string, user_id string, product_id string, event_type string, quantity int, ts timestamp,"
        " session_id string, source string, ingested_at timestamp",
    ).withColumn("user_bucket", F.pmod(F.xxhash64(F.lit("u1")), F.lit(8)).cast("int"))
    assert_df_equality(got, expected, ignore_nullable=True)


def test_quarantine_rows_keep_the_raw_row_the_rules_and_the_file(spark):
    df = spark.createDataFrame(
        [("p1", "ok", "9", "f.csv", []), ("p 2", None, "-1", "f.csv", ["product_id_charset", "price_range"])],
        "_raw_product_id string, _raw_title string, _raw_price string, _source_file string,"
        " _failed_rules array<string>",
    )
    got = TX.quarantine_rows(df, table="products", run_id="r1", quarantined_at=NOW)
    expected = spark.createDataFrame(
        [
            (
                "products",
                "product_id_charset,price_range",
                "f.csv",
                '{"product_id":"p 2","price":"-1"}',
                "r1",
                datetime(2026, 1, 1),
            )
        ],
        "table string, rule string, source_file string, raw string, run_id string, quarantined_at timestamp",
    )
    assert_df_equality(got, expected, ignore_nullable=True)


def test_batch_counts_add_up(spark):
    df = spark.createDataFrame(
        [(2, []), (1, ["ts_range"]), (3, [])], "_copies long, _failed_rules array<string>"
    )
    got = TX.batch_counts(df)
    expected = spark.createDataFrame(
        [(6, 3, 1, 3)], "read long, distinct long, quarantined long, exact_duplicates long"
    )
    assert_df_equality(got, expected, ignore_nullable=True)
