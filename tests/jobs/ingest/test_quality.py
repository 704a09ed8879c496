"""The quality rules: Spark row tags, and the great-expectations suite built from the same rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from jobs.ingest import quality as Q

pytestmark = pytest.mark.spark

NOW = datetime(2026, 1, 1, tzinfo=UTC)
EVENTS_DDL = (
    "event_id string, user_id string, product_id string, event_type string, quantity int, ts timestamp,"
    " session_id string, source string, _raw_quantity string, _raw_ts string"
)


@pytest.fixture
def events(spark):
    rows = [
        ("e1", "u1", "p1", "view", 1, datetime(2025, 6, 1), None, "api", "1", "2025-06-01"),
        ("e2", "u2", "p2", "view", 2, datetime(2025, 6, 1), "s 1", "api", "2", "2025-06-01"),
        ("e2", "u2", "p9", "view", 2, datetime(2025, 6, 1), None, "api", "2", "2025-06-01"),
        ("e3", "u/3", "p1", "buy", None, None, None, "", "x", "nope"),
        ("e4", None, "p1", "view", 0, datetime(2030, 6, 1), None, "api", "0", "2030-06-01"),
        ("e5", "u5", "p" * 65, "view", 5, datetime(1990, 6, 1), None, "api", "5", "1990-06-01"),
        ("e6", "u6", "p6", "click", 1, None, None, "api", "1", None),
    ]
    return spark.createDataFrame(rows, EVENTS_DDL)


def test_each_row_is_tagged_with_every_rule_it_breaks(spark, events):
    tagged = Q.tag_failures(events, rules=Q.interaction_rules(now=NOW, max_age_days=3650))
    expected = spark.createDataFrame(
        [
            ("e1", []),
            ("e2", ["duplicate_event_id", "session_id_charset"]),
            ("e2", ["duplicate_event_id"]),
            (
                "e3",
                [
                    "user_id_charset",
                    "event_type_unknown",
                    "quantity_unparseable",
                    "ts_unparseable",
                    "source_length",
                ],
            ),
            ("e4", ["user_id_missing", "quantity_range", "ts_range"]),
            ("e5", ["product_id_length", "ts_range"]),
            ("e6", ["ts_missing"]),
        ],
        "event_id string, _failed_rules array<string>",
    )
    assert_df_equality(
        tagged.select("event_id", "_failed_rules"), expected, ignore_row_order=True, ignore_nullable=True
    )


def test_price_must_be_finite_and_not_negative(spark):
    df = spark.createDataFrame(
        [
            ("p1", float("nan"), "NaN"),
            ("p2", float("inf"), "inf"),
            ("p3", -1.0, "-1"),
            ("p4", 0.0, "0"),
            ("p5", None, "cheap"),
        ],
        "product_id string, price double, _raw_price string",
    )
    rules = [r for r in Q.product_rules() if r.column == "price"]
    got = Q.tag_failures(df, rules=rules).select("product_id", F.array_join("_failed_rules", ",").alias("r"))
    expected = spark.createDataFrame(
        [
            ("p1", "price_range"),
            ("p2", "price_range"),
            ("p3", "price_range"),
            ("p4", ""),
            ("p5", "price_unparseable"),
        ],
        "product_id string, r string",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_rule_kind_is_checked():
    with pytest.raises(ValueError, match="kind must be one of"):
        Q.Rule("x", "user_id", "shiny")


def test_rules_use_the_api_constants():
    from recsys import schema as S

    rules = {r.name: r for r in Q.interaction_rules(now=NOW, max_age_days=10)}
    assert rules["user_id_charset"].params == {"pattern": S.ID_PATTERN}
    assert rules["user_id_length"].params == {"min": 1, "max": S.ID_MAX_LEN}
    assert rules["event_type_unknown"].params == {"values": list(S.EVENT_TYPES)}
    assert rules["quantity_range"].params == {"min": 1, "max": S.MAX_QUANTITY}
    assert rules["ts_range"].params["max"] == NOW + S.MAX_FUTURE_SKEW


@pytest.mark.slow
def test_great_expectations_counts_agree_with_the_spark_tags(spark, events):
    rules = Q.interaction_rules(now=NOW, max_age_days=3650)
    tagged = Q.tag_failures(events, rules=rules)
    tags = tagged.select(F.explode("_failed_rules").alias("rule")).groupBy("rule").count().collect()
    spark_counts = {r.name: 0 for r in rules} | {t["rule"]: t["count"] for t in tags}
    result = Q.validate(events, name="interactions", rules=rules)
    assert result.success is False
    assert result.evaluated == len(rules)
    assert result.unexpected == spark_counts
