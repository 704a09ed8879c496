"""The Online Retail preset: line parsing, event ids, exclusions, products and categories."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F

from jobs.ingest import presets as P

pytestmark = pytest.mark.spark

HEADER = ",".join(P.ONLINE_RETAIL_COLUMNS)
LINES = [
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom",
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom",
    "536366,22633,HAND WARMER UNION JACK,6,2011-06-01 08:28:00,1.85,17850.0,United Kingdom",
    "C536379,22633,HAND WARMER UNION JACK,-1,2011-06-02 09:41:00,1.85,14527.0,United Kingdom",
    "536380,BANK CHARGES,Bank Charges,1,2011-06-03 09:41:00,15.0,,United Kingdom",
    "536381,22139,,-5,2011-06-04 09:41:00,0,,United Kingdom",
    "536382,22633,HAND WARMER RED,2,2011-07-01 10:00:00,2.10,,United Kingdom",
]


@pytest.fixture
def retail_csv(tmp_path: Path) -> str:
    path = tmp_path / "retail.csv"
    path.write_text("\n".join([HEADER, *LINES]) + "\n")
    return str(path)


def test_events_are_the_clean_lines_with_stable_ids(spark, retail_csv):
    data = P.online_retail_data(spark, retail_csv)
    expected = spark.createDataFrame(
        [
            ("536365:85123A:1", "17850", "85123A", "purchase", 6, datetime(2010, 12, 1, 8, 26), "536365"),
            ("536365:85123A:2", "17850", "85123A", "purchase", 6, datetime(2010, 12, 1, 8, 26), "536365"),
            # Summer time: 08:28 in London is 07:28 UTC.
            ("536366:22633:1", "17850", "22633", "purchase", 6, datetime(2011, 6, 1, 7, 28), "536366"),
        ],
        "event_id string, user_id string, product_id string, event_type string, quantity int, ts timestamp,"
        " session_id string",
    ).withColumn("source", F.lit("online-retail"))
    assert_df_equality(data.events, expected, ignore_row_order=True, ignore_nullable=True)


def test_excluded_lines_are_counted_by_reason(spark, retail_csv):
    data = P.online_retail_data(spark, retail_csv)
    expected = spark.createDataFrame(
        [
            ("interactions", "cancellation", 1),
            ("interactions", "no_customer", 3),
            ("products", "never_sold", 1),
        ],
        "table string, reason string, rows long",
    )
    assert_df_equality(data.excluded, expected, ignore_row_order=True, ignore_nullable=True)


def test_products_take_the_latest_positive_price_and_a_head_noun_category(spark, retail_csv):
    products, _ = P.online_retail(spark, retail_csv)
    expected = spark.createDataFrame(
        [
            ("85123A", "WHITE HANGING HEART T-LIGHT HOLDER", "holder", None, 2.55, True),
            ("22633", "HAND WARMER RED", "other", None, 2.10, True),
            ("BANK_CHARGES", "Bank Charges", "adjustment", None, 15.0, True),
        ],
        "product_id string, title string, category string, brand string, price double, available boolean",
    )
    assert_df_equality(products, expected, ignore_row_order=True, ignore_nullable=True)


def test_category_is_the_rightmost_keyword(spark):
    df = spark.createDataFrame(
        [
            ("SET OF 3 CAKE TINS PANTRY DESIGN", "22720", "tin"),
            ("JUMBO BAG RED RETROSPOT", "85099B", "bag"),
            ("POSTAGE", "POST", "postage"),
            ("Gift Voucher", "gift_0001_20", "gift_voucher"),
            ("INFLATABLE POLITICAL GLOBE", "10002", "other"),
            (None, "99999", "other"),
        ],
        "title string, product_id string, expected string",
    )
    got = df.select(P.category_of(F.col("title"), F.col("product_id")).alias("category"))
    assert_df_equality(got, df.select(F.col("expected").alias("category")), ignore_nullable=True)


@pytest.mark.dataset
@pytest.mark.slow
def test_slice_of_the_real_file_matches_a_pandas_cleaning(spark, online_retail_path, tmp_path):
    raw = pd.read_csv(online_retail_path, dtype=str, nrows=5000)
    path = tmp_path / "slice.csv"
    raw.to_csv(path, index=False)
    qty, price = pd.to_numeric(raw.Quantity), pd.to_numeric(raw.UnitPrice)
    clean = raw[raw.CustomerID.notna() & ~raw.InvoiceNo.str.startswith("C") & (qty > 0) & (price > 0)]
    expected = pd.DataFrame(
        {
            "user_id": clean.CustomerID.str.replace(".0", "", regex=False),
            "product_id": clean.StockCode.str.replace(" ", "_"),
            "quantity": pd.to_numeric(clean.Quantity).astype("int32"),
            "session_id": clean.InvoiceNo,
        }
    )

    data = P.online_retail_data(spark, str(path))
    events = data.events.cache()
    got = events.select("user_id", "product_id", "quantity", "session_id")
    assert_df_equality(got, spark.createDataFrame(expected, got.schema), ignore_row_order=True)
    assert events.select("event_id").distinct().count() == len(clean)
    excluded = {r["reason"]: r["rows"] for r in data.excluded.where("table = 'interactions'").collect()}
    assert sum(excluded.values()) + len(clean) == len(raw)
