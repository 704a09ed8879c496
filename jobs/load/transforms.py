"""Load job transforms: the lake tables shaped into one row per Redis key (no IO, no actions).

Each function returns an ``id`` column (the entity the key is built from with :mod:`recsys.keys` in the
writer, so the key format lives in one module) and the value's fields. Lists are in display order.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from recsys import schema as S

COL_ID = "id"
COL_PRODUCT_IDS = "product_ids"
COL_SCORES = "scores"
COL_SOURCES = "sources"
COL_CREATED_AT = "created_at"
COL_ELEMENTS = "elements"
# A list row's ids joined by NUL (wire_lists): one string per row crosses to Python faster than an array.
COL_IDS_JOINED = "product_ids_joined"
LIST_COLUMNS: tuple[str, ...] = (COL_ID, COL_PRODUCT_IDS, COL_SCORES, COL_SOURCES, COL_CREATED_AT)
PRODUCT_HASH_FIELDS: tuple[str, ...] = ("title", "category", "brand", "price", "available")


def user_lists(recs: DataFrame, *, col_scored_at: str = "scored_at") -> DataFrame:
    """``recommendations`` rows (one per user, lists in display order) as list rows keyed by user.

    Example:
        >>> user_lists(lake.read_table(spark, cfg.table_path("recommendations")))
    """
    return recs.select(
        F.col(S.COL_USER).alias(COL_ID),
        COL_PRODUCT_IDS,
        COL_SCORES,
        COL_SOURCES,
        F.col(col_scored_at).cast("double").alias(COL_CREATED_AT),
    )


def wire_lists(lists: DataFrame) -> DataFrame:
    """List rows as the writer reads them: the ids joined by NUL into one string (``concat_ws`` in the JVM).

    Spark hands one string per row to Python faster than an array of 100 strings (0.6 s against 0.9 s for
    100k lists on 2 cores, measured here), and the joined ids are the last part of the encoded value as they
    are. ``concat_ws`` skips null elements; the encoder then finds fewer ids than scores and raises, so
    nothing is silently dropped.

    Example:
        >>> wire_lists(user_lists(recs)).columns
        ['id', 'product_ids_joined', 'scores', 'sources', 'created_at']
    """
    return lists.select(
        COL_ID,
        F.concat_ws("\u0000", COL_PRODUCT_IDS).alias(COL_IDS_JOINED),
        COL_SCORES,
        COL_SOURCES,
        COL_CREATED_AT,
    )


def _ranked_lists(rows: DataFrame, *, col_group: str, col_member: str, created_at: float) -> DataFrame:
    """Collects ``col_member, score, sources`` per ``col_group`` in ``rank`` order."""
    packed = rows.groupBy(col_group).agg(
        F.sort_array(F.collect_list(F.struct("rank", col_member, "score", COL_SOURCES))).alias("_l")
    )
    return packed.select(
        F.col(col_group).alias(COL_ID),
        F.col(f"_l.{col_member}").alias(COL_PRODUCT_IDS),
        F.col("_l.score").cast("array<float>").alias(COL_SCORES),
        F.col(f"_l.{COL_SOURCES}").cast("array<int>").alias(COL_SOURCES),
        F.lit(created_at).alias(COL_CREATED_AT),
    )


def similar_lists(similar: DataFrame, *, created_at: float) -> DataFrame:
    """``similar_items`` rows (product, neighbour, score, sources, rank) as one list per product.

    Example:
        >>> similar_lists(lake.read_table(spark, cfg.table_path("similar_items")), created_at=time.time())
    """
    return _ranked_lists(similar, col_group=S.COL_ITEM, col_member="neighbor_id", created_at=created_at)


def popular_lists(popular: DataFrame, *, source_bit: int, created_at: float) -> DataFrame:
    """``popular`` rows (category or null for global, product, score, rank) as one list per category.

    The ``id`` is the category name (null for the global list); the writer turns it into the key.

    Example:
        >>> popular_lists(lake.read_table(spark, cfg.table_path("popular")), source_bit=4, created_at=0.0)
    """
    rows = popular.withColumn(COL_SOURCES, F.lit(source_bit))
    return _ranked_lists(rows, col_group=S.COL_CATEGORY, col_member=S.COL_ITEM, created_at=created_at)


def product_hashes(products: DataFrame) -> DataFrame:
    """One row per product with the hash fields as strings (``available`` as ``"1"``/``"0"``, null as ``""``).

    Example:
        >>> product_hashes(lake.read_table(spark, cfg.table_path("products")))
    """
    text = {
        S.COL_TITLE: F.col(S.COL_TITLE),
        S.COL_CATEGORY: F.col(S.COL_CATEGORY),
        S.COL_BRAND: F.col(S.COL_BRAND),
        S.COL_PRICE: F.col(S.COL_PRICE).cast("string"),
        S.COL_AVAILABLE: F.when(F.col(S.COL_AVAILABLE), F.lit("1")).otherwise(F.lit("0")),
    }
    return products.select(
        F.col(S.COL_ITEM).alias(COL_ID), *[F.coalesce(c, F.lit("")).alias(n) for n, c in text.items()]
    )


def history_seeds(events: DataFrame, *, length: int) -> DataFrame:
    """Each user's ``length`` newest events as ``history:user`` elements, newest first.

    An element is the API's compact JSON ``{"p","e","q","t","i"}`` (product, event type, quantity, epoch
    seconds, event id), so the API reads seeded and POSTed elements alike. The newest events come from
    ``max_by(event, (ts, event_id), length)``, a top-k aggregate: each task keeps at most ``length`` events
    per user before the shuffle, and a user with a million events costs ``length`` of them in memory.
    ``(ts, event_id)`` is unique, so the order is deterministic.

    Example:
        >>> history_seeds(events, length=50)
    """
    if length <= 0:
        raise ValueError(f"length must be positive, got {length}")
    event = F.struct(
        F.col(S.COL_ITEM).alias("p"),
        F.col(S.COL_EVENT_TYPE).alias("e"),
        F.col(S.COL_QUANTITY).alias("q"),
        F.unix_timestamp(S.COL_TS).alias("t"),
        F.col(S.COL_EVENT_ID).alias("i"),
    )
    newest = F.max_by(event, F.struct(F.col(S.COL_TS), F.col(S.COL_EVENT_ID)), length)
    return events.groupBy(S.COL_USER).agg(
        F.transform(newest, lambda e: F.to_json(e)).alias(COL_ELEMENTS)
    ).withColumnRenamed(S.COL_USER, COL_ID)
