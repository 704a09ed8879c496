"""Synthetic catalogue, users and events, built entirely from Spark expressions so the sample scales.

Every random draw is a hash of ``(seed, a salt naming the draw, the row's ids)`` mapped to [0, 1), so the
output depends only on the seed and the sizes, never on partitioning or the number of cores. The planted
structure (see docs/sample-data.md):

* products: 16 categories, each with its own brands (cheapest first) and log-normal prices around the
  category's mean; titles are built from the brand and category words; popularity is Pareto (Zipf-like).
* users: 1-3 preferred categories, a price level (0 budget, 1 mid, 2 premium) that selects a preferred brand
  in each preferred category, a brand loyalty and an activity level.
* events: sessions that stay in one category (mostly a preferred one), views drawn by popularity or from the
  preferred brand, and a view -> click -> add_to_cart -> purchase funnel whose conversion rises with the
  match between product and user, so purchases concentrate on each user's categories and brands.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.generate.catalogue import CATEGORIES
from recsys import schema as S

SOURCE = "generator"
# Products updated within this many days of the end of the event window are new: they get no events.
NEW_PRODUCT_DAYS = 7
# Probability that a session explores a random category instead of a preferred one.
EXPLORE_SHARE = 0.15
# Funnel: each step's probability is base + lift * match, match in [0, 1] (half category, half brand).
CLICK_BASE, CLICK_LIFT = 0.20, 0.20
CART_BASE, CART_LIFT = 0.20, 0.20
BUY_BASE, BUY_LIFT = 0.30, 0.15
# Target event mix relative to views, documented and checked by the tests.
FUNNEL_TARGETS = {"click": 0.35, "add_to_cart": 0.12, "purchase": 0.05}
MIN_VIEWS, MAX_VIEWS = 2, 6
EVENTS_PER_SESSION = (MIN_VIEWS + MAX_VIEWS) / 2 * (1 + sum(FUNNEL_TARGETS.values()))
# Popularity is drawn from a Pareto law with this shape: rank-frequency then falls like rank^(-1/shape).
PARETO_SHAPE = 1.2
# Resolution of the popularity sampling table: each (category, segment) is cut into this many slots.
SLOTS = 2048
ANY_BRAND = "*"
_MANTISSA = (1 << 53) - 1
_DAY = 86_400


def uniform(seed: int, salt: str, *cols: Column | str) -> Column:
    """A pseudo-random double in [0, 1), a pure function of the seed, the salt and the columns.

    Args:
        seed: The generator's seed.
        salt: Names the draw, so two draws on the same row are independent.
        *cols: The ids that make the draw differ between rows.

    Example:
        >>> u = uniform(42, "price", "id")  # doctest: +SKIP
    """
    h = F.xxhash64(F.lit(seed), F.lit(salt), *cols)
    return h.bitwiseAND(F.lit(_MANTISSA)).cast("double") / float(1 << 53)


def _normal(seed: int, salt: str, *cols: Column | str) -> Column:
    """A standard normal draw (Box-Muller on two hashed uniforms)."""
    u1 = uniform(seed, salt + ".1", *cols)
    u2 = uniform(seed, salt + ".2", *cols)
    return F.sqrt(-2.0 * F.log(1.0 - u1)) * F.cos(2.0 * math.pi * u2)


def _pick(values: Column, u: Column) -> Column:
    """The element of a non-empty array column at a uniform position."""
    return F.element_at(values, (F.floor(u * F.size(values)) + 1).cast("int"))


def _epoch(when: datetime, name: str) -> int:
    if not isinstance(when, datetime):
        raise ValueError(f"{name} must be a datetime (got {when!r})")
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer (got {value!r})")


def new_product_count(products: int, new_share: float) -> int:
    """How many of ``products`` are new: ``new_share`` of them, at least one when the share is positive.

    Example:
        >>> new_product_count(2000, 0.02), new_product_count(50, 0.02), new_product_count(1, 0.02)
        (40, 1, 0)
    """
    if not 0.0 <= new_share < 1.0:
        raise ValueError(f"new_share must be in [0, 1) (got {new_share!r})")
    wanted = round(products * new_share)
    return min(products - 1, max(wanted, 1 if new_share > 0 else 0))


def _arrays() -> dict[str, Column]:
    """The catalogue vocabulary as array literals indexed by category position."""
    def nested(field: str) -> Column:
        return F.array(*[F.array(*[F.lit(v) for v in getattr(c, field)]) for c in CATEGORIES])

    return {
        "names": F.array(*[F.lit(c.name) for c in CATEGORIES]),
        "prices": F.array(*[F.lit(c.mean_price) for c in CATEGORIES]),
        "brands": nested("brands"),
        "nouns": nested("nouns"),
        "adjectives": nested("adjectives"),
    }


def generate_products(
    spark: SparkSession, *, products: int, seed: int, now: datetime, new_share: float = 0.02
) -> DataFrame:
    """The product catalogue: categories with their own brands, price ranges and title words.

    The first 16 ids cover every category once (so no category is empty); the rest draw a category at random.
    The last ``new_product_count(products, new_share)`` ids are new products, updated within
    ``NEW_PRODUCT_DAYS`` before ``now``; the others were updated 8-400 days before ``now``.

    Args:
        spark: The session (this is a data source).
        products: Number of products.
        seed: Seed of every draw.
        now: The catalogue's reference time (the end of the event window).
        new_share: Share of products that are new and get no events.

    Returns:
        product_id, title, category, brand, price, available, updated_at.

    Example:
        >>> generate_products(spark, products=2000, seed=42, now=datetime(2026, 1, 1))  # doctest: +SKIP
    """
    _check_positive(products=products)
    n_new = new_product_count(products, new_share)
    now_s = _epoch(now, "now")
    a, n_cat, pid = _arrays(), len(CATEGORIES), F.col("id")

    def u(salt: str) -> Column:
        return uniform(seed, "p." + salt, pid)

    cat = F.when(pid < n_cat, pid).otherwise(F.floor(u("category") * n_cat)).cast("int") + 1
    brands = F.element_at(a["brands"], F.col("c"))
    n_brands = F.size(brands)
    # Cheaper brands are a little more common; a brand's position sets its price tier in [-0.5, 0.5].
    b = F.floor(F.pow(u("brand"), 1.2) * n_brands).cast("int")
    tier = b / F.greatest(n_brands - 1, F.lit(1)) - 0.5
    price = F.element_at(a["prices"], F.col("c")) * F.exp(0.9 * tier + 0.35 * _normal(seed, "p.price", pid))
    series = F.format_string(
        "%s%d", F.substring(F.lit("ABCDEFGHJKLMNPRSTVXZ"), (F.floor(u("letter") * 20) + 1).cast("int"), 1),
        (F.floor(u("number") * 900) + 100).cast("int"),
    )
    is_new = pid >= products - n_new
    age_s = F.when(is_new, F.floor(u("age") * (NEW_PRODUCT_DAYS - 1) * _DAY) + 60).otherwise(
        F.floor((8 + u("age") * 392) * _DAY)
    )
    brand = F.element_at(brands, b + 1)
    return (
        spark.range(products)
        .withColumn("c", cat)
        .select(
            F.format_string("P%06d", pid).alias(S.COL_ITEM),
            F.concat_ws(
                " ", brand, _pick(F.element_at(a["adjectives"], F.col("c")), u("adjective")),
                _pick(F.element_at(a["nouns"], F.col("c")), u("noun")), series,
            ).alias(S.COL_TITLE),
            F.element_at(a["names"], F.col("c")).alias(S.COL_CATEGORY),
            brand.alias(S.COL_BRAND),
            F.round(F.greatest(price, F.lit(0.99)), 2).cast("double").alias(S.COL_PRICE),
            (is_new | (u("available") >= 0.03)).alias(S.COL_AVAILABLE),
            F.timestamp_seconds(F.lit(now_s) - age_s.cast("long")).alias(S.COL_UPDATED_AT),
        )
    )


def generate_users(spark: SparkSession, *, users: int, seed: int) -> DataFrame:
    """Users with latent preferences that drive their events.

    Args:
        spark: The session (this is a data source).
        users: Number of users.
        seed: Seed of every draw.

    Returns:
        user_id, preferred_categories (1-3, strongest first), preferred_brands (one per preferred category,
        chosen by price level), price_level (0 budget, 1 mid, 2 premium), brand_loyalty (probability that a
        view in a preferred category goes to the preferred brand) and activity (log-normal, mean 1).

    Example:
        >>> generate_users(spark, users=10_000, seed=42)  # doctest: +SKIP
    """
    _check_positive(users=users)
    a, n_cat, uid = _arrays(), len(CATEGORIES), F.col("id")

    def u(salt: str, *more: Column) -> Column:
        return uniform(seed, "u." + salt, uid, *more)

    # A per-user random permutation of the categories; its head is the preference list.
    shuffled = F.array_sort(
        F.transform(
            F.sequence(F.lit(0), F.lit(n_cat - 1)), lambda c: F.struct(u("cat", c).alias("h"), c.alias("c"))
        )
    )
    k = (F.floor(u("k") * 3) + 1).cast("int")
    prefs = F.slice(F.transform(shuffled, lambda s: s["c"] + 1), 1, k)
    level = F.floor(u("price") * 3).cast("int")

    def brand_for(c: Column) -> Column:
        # The user's price level picks the matching third of the category's brands (cheapest first).
        brands = F.element_at(a["brands"], c)
        pos = F.floor((level + u("brand", c)) / 3 * F.size(brands)).cast("int") + 1
        return F.element_at(brands, pos)

    return spark.range(users).select(
        F.format_string("U%07d", uid).alias(S.COL_USER),
        F.transform(prefs, lambda c: F.element_at(a["names"], c)).alias("preferred_categories"),
        F.transform(prefs, brand_for).alias("preferred_brands"),
        level.alias("price_level"),
        (0.3 + 0.5 * u("loyalty")).alias("brand_loyalty"),
        F.exp(0.6 * _normal(seed, "u.activity", uid) - 0.18).alias("activity"),
    )


def popularity_slots(products: DataFrame, *, seed: int, end: datetime) -> DataFrame:
    """A sampling table: each (category, segment) cut into ``SLOTS`` slots, owned in proportion to popularity.

    A segment is a brand (for brand-loyal views) or ``ANY_BRAND``. A product's popularity is a Pareto draw
    from its id, so rank-frequency is Zipf-like. New products are left out: they have no events yet.

    Args:
        products: The catalogue (product_id, category, brand, updated_at).
        seed: Seed of the popularity draw.
        end: End of the event window; products updated within ``NEW_PRODUCT_DAYS`` of it are new.

    Returns:
        category, segment, slot, product_id, brand.

    Example:
        >>> popularity_slots(products, seed=42, end=datetime(2026, 1, 1))  # doctest: +SKIP
    """
    from pyspark.sql import Window

    new_since = F.timestamp_seconds(F.lit(_epoch(end, "end") - NEW_PRODUCT_DAYS * _DAY))
    weight = F.pow(1.0 - uniform(seed, "p.popularity", S.COL_ITEM), -1.0 / PARETO_SHAPE)
    part = Window.partitionBy(S.COL_CATEGORY, "segment")
    running = part.orderBy(S.COL_ITEM).rowsBetween(Window.unboundedPreceding, Window.currentRow)
    ranged = (
        products.where(F.col(S.COL_UPDATED_AT) < new_since)
        .select(S.COL_ITEM, S.COL_CATEGORY, S.COL_BRAND, weight.alias("w"))
        .withColumn("segment", F.explode(F.array(F.lit(ANY_BRAND), F.col(S.COL_BRAND))))
        .withColumn("hi", F.sum("w").over(running) / F.sum("w").over(part))
        .withColumn("lo", F.col("hi") - F.col("w") / F.sum("w").over(part))
    )
    first = F.ceil(F.col("lo") * SLOTS).cast("int")
    last = F.least(F.ceil(F.col("hi") * SLOTS).cast("int"), F.lit(SLOTS)) - 1
    return ranged.where(last >= first).select(
        S.COL_CATEGORY, "segment", F.explode(F.sequence(first, last)).alias("slot"), S.COL_ITEM, S.COL_BRAND
    )


def _sessions(users: DataFrame, *, events_per_user: int, seed: int, end_s: int, days: int) -> DataFrame:
    """One row per session: its user, category, the user's brand there, size, start and pace."""
    a = _arrays()
    sid = F.col(S.COL_SESSION)

    def u(salt: str) -> Column:
        return uniform(seed, "s." + salt, sid)

    n_sessions = F.greatest(F.lit(1), F.round(F.col("activity") * (events_per_user / EVENTS_PER_SESSION)))
    prefs = F.col("preferred_categories")
    # Skewed towards the first preference: P(first) is 1, ~0.65 or ~0.5 for 1, 2 or 3 preferences.
    favourite = F.element_at(prefs, (F.floor(F.size(prefs) * F.pow(u("pref"), 1.6)) + 1).cast("int"))
    explored = _pick(a["names"], u("explore.cat"))
    category = F.when(u("explore") < EXPLORE_SHARE, explored).otherwise(favourite)
    pos = F.array_position(prefs, F.col(S.COL_CATEGORY)).cast("int")
    span = days * _DAY - 3600  # sessions last under an hour, so every event stays before the end
    return (
        users.withColumn("s", F.explode(F.sequence(F.lit(0), n_sessions.cast("int") - 1)))
        .withColumn(S.COL_SESSION, F.format_string("S-%s-%d", F.col(S.COL_USER), F.col("s")))
        .withColumn(S.COL_CATEGORY, category)
        .select(
            S.COL_USER, "s", S.COL_SESSION, S.COL_CATEGORY, "brand_loyalty",
            (pos > 0).alias("in_pref"),
            F.when(pos > 0, F.element_at("preferred_brands", F.greatest(pos, F.lit(1)))).alias("pref_brand"),
            (F.floor(u("views") * (MAX_VIEWS - MIN_VIEWS + 1)) + MIN_VIEWS).cast("int").alias("n_views"),
            (F.lit(end_s - days * _DAY) + F.floor(u("start") * span)).cast("long").alias("start_s"),
            (F.floor(u("gap") * 90) + 15).cast("long").alias("gap_s"),
        )
    )


def _views(sessions: DataFrame, slots: DataFrame, *, seed: int) -> DataFrame:
    """One row per view: a product drawn from the session's category, by brand loyalty or popularity."""
    def u(salt: str) -> Column:
        return uniform(seed, "v." + salt, S.COL_SESSION, "v")

    # A preferred brand with no product in this category falls back to popularity.
    segments = slots.select(
        S.COL_CATEGORY, F.col("segment").alias("loyal"), F.lit(True).alias("known")
    ).distinct()
    loyal = F.col("pref_brand").isNotNull() & (u("loyal") < F.col("brand_loyalty"))
    wanted = F.when(loyal, F.col("pref_brand"))
    views = (
        sessions.withColumn("v", F.explode(F.sequence(F.lit(0), F.col("n_views") - 1)))
        .withColumn("loyal", wanted)
        .join(F.broadcast(segments), [S.COL_CATEGORY, "loyal"], "left")
    )
    return (
        views.withColumn("segment", F.when(F.col("known"), F.col("loyal")).otherwise(F.lit(ANY_BRAND)))
        .withColumn("slot", F.floor(u("slot") * SLOTS).cast("int"))
        .join(F.broadcast(slots), [S.COL_CATEGORY, "segment", "slot"])
        .withColumn("view_s", F.col("start_s") + F.col("v") * F.col("gap_s") + F.floor(u("jitter") * 10))
    )


def _funnel(views: DataFrame, *, seed: int) -> DataFrame:
    """Expands each view into its funnel events; conversion rises with the user-product match."""
    def u(salt: str, *more: Column) -> Column:
        return uniform(seed, "f." + salt, S.COL_SESSION, "v", *more)

    match = 0.5 * F.col("in_pref").cast("double") + 0.5 * (
        F.coalesce(F.col(S.COL_BRAND) == F.col("pref_brand"), F.lit(False)).cast("double")
    )
    clicked = u("click") < CLICK_BASE + CLICK_LIFT * match
    carted = clicked & (u("cart") < CART_BASE + CART_LIFT * match)
    bought = carted & (u("buy") < BUY_BASE + BUY_LIFT * match)
    depth = 1 + clicked.cast("int") + carted.cast("int") + bought.cast("int")
    stages = F.slice(F.array(*[F.lit(t) for t in S.EVENT_TYPES]), 1, depth)
    stage = F.col("stage")
    offset = (
        F.when(stage == 0, 0)
        .when(stage == 1, 5 + F.floor(u("offset", stage) * 25))
        .when(stage == 2, 30 + F.floor(u("offset", stage) * 90))
        .otherwise(150 + F.floor(u("offset", stage) * 450))
    )
    quantity = F.when(
        (F.col(S.COL_EVENT_TYPE) == "purchase") & (u("multi") < 0.15), 2 + F.floor(u("quantity") * 3)
    ).otherwise(1)
    return (
        views.select("*", F.posexplode(stages).alias("stage", S.COL_EVENT_TYPE))
        .select(
            F.format_string("E-%s-%d-%d-%d", S.COL_USER, "s", "v", stage).alias(S.COL_EVENT_ID),
            S.COL_USER, S.COL_ITEM, S.COL_EVENT_TYPE,
            quantity.cast("int").alias(S.COL_QUANTITY),
            F.timestamp_seconds((F.col("view_s") + offset).cast("long")).alias(S.COL_TS),
            S.COL_SESSION,
            F.lit(SOURCE).alias(S.COL_SOURCE),
        )
    )


def generate_events(
    products: DataFrame, users: DataFrame, *, events_per_user: int, seed: int, end: datetime, days: int = 90
) -> DataFrame:
    """Sessions of views, clicks, adds to cart and purchases that follow the users' latent preferences.

    Args:
        products: The catalogue from :func:`generate_products`.
        users: Users from :func:`generate_users`.
        events_per_user: Average number of events per user (activity varies around it).
        seed: Seed of every draw.
        end: End of the event window (exclusive).
        days: Length of the event window.

    Returns:
        event_id, user_id, product_id, event_type, quantity, ts, session_id, source.

    Example:
        >>> generate_events(  # doctest: +SKIP
        ...     products, users, events_per_user=30, seed=42, end=datetime(2026, 1, 1))
    """
    _check_positive(events_per_user=events_per_user, days=days)
    end_s = _epoch(end, "end")
    for df, name, cols in (
        (products, "products", (S.COL_ITEM, S.COL_CATEGORY, S.COL_BRAND, S.COL_UPDATED_AT)),
        (users, "users",
         (S.COL_USER, "preferred_categories", "preferred_brands", "brand_loyalty", "activity")),
    ):
        missing = [c for c in cols if c not in df.columns]
        if missing:
            raise ValueError(f"{name} lacks column(s) {', '.join(missing)}")
    slots = popularity_slots(products, seed=seed, end=end)
    sessions = _sessions(users, events_per_user=events_per_user, seed=seed, end_s=end_s, days=days)
    return _funnel(_views(sessions, slots, seed=seed), seed=seed)


def generate_sample(
    spark: SparkSession, *, users: int, products: int, events_per_user: int, seed: int, end: datetime,
    days: int = 90,
) -> tuple[DataFrame, DataFrame]:
    """The whole sample: the catalogue (as of ``end``) and the events of ``days`` before ``end``.

    Example:
        >>> products, events = generate_sample(  # doctest: +SKIP
        ...     spark, users=10_000, products=2000, events_per_user=30, seed=42, end=datetime(2026, 1, 1))
    """
    catalogue = generate_products(spark, products=products, seed=seed, now=end)
    people = generate_users(spark, users=users, seed=seed)
    return catalogue, generate_events(catalogue, people, events_per_user=events_per_user, seed=seed, end=end,
                                      days=days)
