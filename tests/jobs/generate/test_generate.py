"""The sample generator: exact schemas, determinism, funnel, window, new products and planted preferences."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from chispa import assert_df_equality
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.generate import main as job
from jobs.generate.catalogue import CATEGORIES
from jobs.generate.transforms import (
    FUNNEL_TARGETS,
    NEW_PRODUCT_DAYS,
    generate_events,
    generate_products,
    generate_sample,
    generate_users,
    new_product_count,
)
from recsys.config import load_config

pytestmark = pytest.mark.spark

END = datetime(2026, 3, 1, tzinfo=UTC)
DAYS = 90
SIZES = {"users": 200, "products": 50, "events_per_user": 10}
CONF = Path(__file__).resolve().parents[3] / "conf" / "local.yaml"

PRODUCTS_SCHEMA = [
    ("product_id", T.StringType()), ("title", T.StringType()), ("category", T.StringType()),
    ("brand", T.StringType()), ("price", T.DoubleType()), ("available", T.BooleanType()),
    ("updated_at", T.TimestampType()),
]
EVENTS_SCHEMA = [
    ("event_id", T.StringType()), ("user_id", T.StringType()), ("product_id", T.StringType()),
    ("event_type", T.StringType()), ("quantity", T.IntegerType()), ("ts", T.TimestampType()),
    ("session_id", T.StringType()), ("source", T.StringType()),
]
# Accepted band around each documented funnel target (the tiny sample is noisy).
FUNNEL_BOUNDS = {"click": (0.25, 0.45), "add_to_cart": (0.07, 0.18), "purchase": (0.025, 0.09)}


@pytest.fixture(scope="module")
def sample(spark):
    products = generate_products(spark, products=SIZES["products"], seed=7, now=END).cache()
    users = generate_users(spark, users=SIZES["users"], seed=7).cache()
    events = generate_events(
        products, users, events_per_user=SIZES["events_per_user"], seed=7, end=END, days=DAYS
    ).cache()
    yield products, users, events
    for df in (products, users, events):
        df.unpersist()


def fields(df):
    return [(f.name, f.dataType) for f in df.schema.fields]


def test_schemas_are_exactly_the_contract(sample):
    products, _, events = sample
    assert fields(products) == PRODUCTS_SCHEMA
    assert fields(events) == EVENTS_SCHEMA


def test_same_seed_same_data_other_seed_other_data(spark, sample):
    products, _, events = sample
    again_products, again_events = generate_sample(spark, **SIZES, seed=7, end=END, days=DAYS)
    assert_df_equality(again_products.orderBy("product_id"), products.orderBy("product_id"))
    assert_df_equality(again_events.orderBy("event_id"), events.orderBy("event_id"))
    _, other = generate_sample(spark, **SIZES, seed=8, end=END, days=DAYS)
    key = ["user_id", "product_id", "event_type", "ts"]
    assert other.select(key).exceptAll(events.select(key)).count() > other.count() // 2


def test_products_follow_the_catalogue(sample):
    products, _, _ = sample
    rows = products.orderBy("product_id").collect()
    by_name = {c.name: c for c in CATEGORIES}
    assert [r.category for r in rows[: len(CATEGORIES)]] == [c.name for c in CATEGORIES]
    assert [r.product_id for r in rows[:3]] == ["P000000", "P000001", "P000002"]
    for r in rows:
        cat = by_name[r.category]
        assert r.brand in cat.brands
        assert r.title.startswith(r.brand + " ")
        assert any(noun in r.title for noun in cat.nouns)
        assert cat.mean_price / 20 < r.price < cat.mean_price * 20
    assert sum(r.available for r in rows) >= len(rows) * 0.85


def test_new_products_are_the_latest_and_have_no_events(sample):
    products, _, events = sample
    n_new = new_product_count(SIZES["products"], 0.02)
    assert n_new == 1
    since = END - timedelta(days=NEW_PRODUCT_DAYS)
    new = products.where(F.col("updated_at") >= since).select("product_id", "available").collect()
    assert [(r.product_id, r.available) for r in new] == [(f"P{SIZES['products'] - 1:06d}", True)]
    assert events.join(products.where(F.col("updated_at") >= since), "product_id").count() == 0
    # Every event points at a known product and every old product of a generous sample is reachable.
    assert events.join(products, "product_id", "left_anti").count() == 0


def test_users_have_consistent_preferences(sample):
    _, users, _ = sample
    by_name = {c.name: c for c in CATEGORIES}
    rows = users.collect()
    assert rows[0].user_id == "U0000000"
    assert len({r.user_id for r in rows}) == SIZES["users"]
    assert {len(r.preferred_categories) for r in rows} == {1, 2, 3}
    for r in rows:
        assert len(set(r.preferred_categories)) == len(r.preferred_categories) == len(r.preferred_brands)
        for cat, brand in zip(r.preferred_categories, r.preferred_brands, strict=True):
            brands = by_name[cat].brands
            # The price level picks the matching third of the brands, which are listed cheapest first.
            pos = brands.index(brand)
            assert r.price_level * len(brands) / 3 - 1 < pos < (r.price_level + 1) * len(brands) / 3
        assert 0.3 <= r.brand_loyalty <= 0.8
        assert r.activity > 0


def test_events_ids_window_source_and_quantity(sample):
    _, _, events = sample
    stats = events.agg(
        F.count("*").alias("n"), F.countDistinct("event_id").alias("ids"),
        F.min("ts").alias("first"), F.max("ts").alias("last"),
        F.collect_set("source").alias("sources"),
        F.min("quantity").alias("min_q"),
        F.max(F.when(F.col("event_type") != "purchase", F.col("quantity"))).alias("max_q_other"),
        F.max(F.when(F.col("event_type") == "purchase", F.col("quantity"))).alias("max_q_purchase"),
    ).first()
    assert stats.n == stats.ids
    # Around events_per_user events per user, within the activity spread.
    assert 0.6 * SIZES["events_per_user"] < stats.n / SIZES["users"] < 1.6 * SIZES["events_per_user"]
    assert END.replace(tzinfo=None) - timedelta(days=DAYS) <= stats.first
    assert stats.last < END.replace(tzinfo=None)
    assert stats.sources == ["generator"]
    assert stats.min_q == 1 and stats.max_q_other == 1 and stats.max_q_purchase > 1


def test_funnel_ratios_and_order(sample):
    _, _, events = sample
    mix = job.event_mix(events)
    for step, (low, high) in FUNNEL_BOUNDS.items():
        assert low < FUNNEL_TARGETS[step] < high
        assert low < mix[step] / mix["view"] < high, (step, mix)
    # Each later step follows the step before it on the same view of the same product, in time order.
    views = events.withColumn("view", F.regexp_replace("event_id", r"-\d+$", ""))
    steps = views.select("view", "product_id", "session_id", "event_type", "ts")
    pairs = zip(("view", "click", "add_to_cart"), ("click", "add_to_cart", "purchase"), strict=True)
    for before, after in pairs:
        a = steps.where(F.col("event_type") == after).alias("a")
        b = steps.where(F.col("event_type") == before).alias("b")
        joined = a.join(b, "view", "left")
        bad = joined.where(
            F.col("b.ts").isNull() | (F.col("b.ts") >= F.col("a.ts"))
            | (F.col("a.product_id") != F.col("b.product_id"))
            | (F.col("a.session_id") != F.col("b.session_id"))
        )
        assert bad.count() == 0, after


def test_purchases_follow_preferences(sample):
    products, users, events = sample
    purchases = (
        events.where(F.col("event_type") == "purchase")
        .join(users, "user_id")
        .join(products.select("product_id", "category", "brand"), "product_id")
    )
    later = purchases.where(F.col("ts") >= END.replace(tzinfo=None) - timedelta(days=30))
    for df in (purchases, later):
        shares = df.agg(
            F.avg((F.col("category") == F.col("preferred_categories")[0]).cast("double")).alias("top"),
            F.avg(F.array_contains("preferred_categories", F.col("category")).cast("double")).alias("any"),
        ).first()
        uniform = 1 / len(CATEGORIES)
        assert shares.top > 0.45 > 5 * uniform
        assert shares.any > 0.75
    # Sessions stay in one category, which links co-viewed products.
    per_session = (
        events.join(products.select("product_id", "category"), "product_id")
        .groupBy("session_id").agg(F.countDistinct("category").alias("n")).agg(F.max("n")).first()[0]
    )
    assert per_session == 1


def test_bad_arguments_name_the_argument(spark):
    with pytest.raises(ValueError, match="products"):
        generate_products(spark, products=0, seed=1, now=END)
    with pytest.raises(ValueError, match="users"):
        generate_users(spark, users=-5, seed=1)
    with pytest.raises(ValueError, match="new_share"):
        generate_products(spark, products=10, seed=1, now=END, new_share=1.5)


def test_event_mix_counts_every_type(spark):
    events = spark.createDataFrame(
        [("view",), ("view",), ("click",)], T.StructType([T.StructField("event_type", T.StringType())])
    )
    assert job.event_mix(events) == {"view": 2, "click": 1, "add_to_cart": 0, "purchase": 0}


def test_run_writes_products_and_events(spark, tmp_path, capsys):
    args = argparse.Namespace(
        users=20, products=30, events_per_user=5, seed=3, days=10, end_date=END.date(),
        output=str(tmp_path / "sample"), format="csv",
    )
    assert job.run(args, load_config(CONF, env={}), spark) == 0
    expected_products, expected_events = generate_sample(
        spark, users=20, products=30, events_per_user=5, seed=3, end=END, days=10
    )
    read = spark.read.option("header", True).option("inferSchema", True).csv
    assert read(str(tmp_path / "sample" / "products")).count() == 30
    written = read(str(tmp_path / "sample" / "events")).select("event_id", "event_type")
    assert_df_equality(
        written.orderBy("event_id"), expected_events.select("event_id", "event_type").orderBy("event_id"),
        ignore_nullable=True,
    )
    assert "funnel per view" in capsys.readouterr().out
