"""Product feature vectors for content similarity: category, brand, price and title groups, L2-normalised.

Layout of the sparse vector (fixed, so vectors of two runs are comparable and cheap to slice by group):

- ``[0, CATEGORY_DIM)``: one-hot of the top-level category and, when the category has a sub-category
  (``"Home > Kitchen"`` or ``"Home/Kitchen"``), one-hot of the full path too: siblings share half the group.
- ``[BRAND_OFFSET, BRAND_OFFSET + CATEGORY_DIM)``: one-hot of the brand (none when the brand is null/blank).
- ``PRICE_OFFSET + 0..3``: ``(cos a, sin a, cos b, sin b) / sqrt(2)`` with ``a = pi/2 * `` the product's
  log-price position in the whole catalogue's log-price range and ``b = pi/2 * `` its position within its
  category's log-price range. The dot product of two price groups is ``(cos(a1-a2) + cos(b1-b2)) / 2``: 1 for
  the same price and falling smoothly as prices move apart, and "similar" is measured relative to the
  category's own price range. None when the price is null or not positive.
- ``TITLE_OFFSET + [0, title_features)``: TF-IDF of the title tokens (lower-cased, split on non-alphanumerics,
  English stop words removed by Spark ML's StopWordsRemover), each token hashed into ``title_features``
  buckets (the hashing trick of HashingTF); ``idf = ln((n + 1) / (df + 1))``, MLlib's IDF formula.

Categories and brands use hashed one-hot slots in a 2**18 space: collisions need two names out of hundreds of
thousands to share a slot, which is rare enough not to matter. Each group is scaled to unit length, multiplied
by its configured weight, and the whole vector is L2-normalised, so a dot product is a cosine and, for two
products with every group present, ``cos = sum_g w_g^2 cos_g / sum_g w_g^2``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from pyspark.ml.feature import RegexTokenizer, StopWordsRemover
from pyspark.ml.linalg import SparseVector, VectorUDT
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys import schema as S
from recsys.config import ContentWeights

CATEGORY_DIM = 1 << 18
BRAND_OFFSET = CATEGORY_DIM
PRICE_OFFSET = BRAND_OFFSET + CATEGORY_DIM
PRICE_DIM = 4
TITLE_OFFSET = PRICE_OFFSET + PRICE_DIM
GROUPS = ("category", "brand", "price", "title")
SUBCATEGORY_SEPARATOR = r"\s*(?:>|/)\s*"
COL_FEATURES = "features"
ZERO = 1e-12

_ENTRY = T.StructType(
    [
        T.StructField("group", T.StringType(), False),
        T.StructField("index", T.IntegerType(), False),
        T.StructField("value", T.DoubleType(), False),
    ]
)


def vector_size(title_features: int) -> int:
    """Length of every feature vector for a given number of title buckets."""
    return TITLE_OFFSET + title_features


def top_category(category: Column) -> Column:
    """The top-level category: the part before the first ``>`` or ``/`` (the whole name if there is none)."""
    return F.trim(F.split(category, SUBCATEGORY_SEPARATOR).getItem(0))


def _slot(prefix: str, value: Column, offset: int) -> Column:
    return (F.pmod(F.xxhash64(F.concat(F.lit(prefix), value)), F.lit(CATEGORY_DIM)) + F.lit(offset)).cast(
        "int"
    )


def _entry(group: str, index: Column, value: Column) -> Column:
    return F.struct(
        F.lit(group).alias("group"), index.cast("int").alias("index"), value.cast("double").alias("value")
    )


def _category_entries() -> Column:
    cat = F.trim(F.col(S.COL_CATEGORY))
    top = top_category(F.col(S.COL_CATEGORY))
    full = F.concat_ws("/", F.split(cat, SUBCATEGORY_SEPARATOR))
    one = F.array(_entry("category", _slot("c:", top, 0), F.lit(1.0)))
    two = F.array(
        _entry("category", _slot("c:", top, 0), F.lit(1.0)),
        _entry("category", _slot("c:", full, 0), F.lit(1.0)),
    )
    return F.when(full != top, two).otherwise(one)


def _brand_entries() -> Column:
    brand = F.lower(F.trim(F.col(S.COL_BRAND)))
    return F.when(
        brand.isNotNull() & (brand != ""),
        F.array(_entry("brand", _slot("b:", brand, BRAND_OFFSET), F.lit(1.0))),
    ).otherwise(F.array().cast(T.ArrayType(_ENTRY)))


def _position(lo: str, hi: str) -> Column:
    return F.when(F.col(hi) > F.col(lo), (F.col("_lp") - F.col(lo)) / (F.col(hi) - F.col(lo))).otherwise(
        F.lit(0.5)
    )


def _price_entries() -> Column:
    a = _position("_glo", "_ghi") * F.lit(math.pi / 2)
    b = _position("_clo", "_chi") * F.lit(math.pi / 2)
    values = [F.cos(a), F.sin(a), F.cos(b), F.sin(b)]
    return F.when(
        F.col("_lp").isNotNull(),
        F.array(*[_entry("price", F.lit(PRICE_OFFSET + i), v) for i, v in enumerate(values)]),
    ).otherwise(F.array().cast(T.ArrayType(_ENTRY)))


def _title_entries(slotted: DataFrame) -> DataFrame:
    """One ``(title, slot, idf)`` entry per token occurrence (the assembly sums them: tf * idf)."""
    n_docs = slotted.agg(F.count(F.lit(1)).alias("_n"))
    idf = (
        slotted.select(F.explode(F.array_distinct("_slots")).alias("slot"))
        .groupBy("slot")
        .agg(F.count(F.lit(1)).alias("df"))
        .crossJoin(F.broadcast(n_docs))
        .select("slot", F.log((F.col("_n") + 1) / (F.col("df") + 1)).alias("idf"))
        .where(F.col("idf") > 0)
    )
    tokens = slotted.select(S.COL_ITEM, F.explode("_slots").alias("slot"))
    return (
        tokens.join(F.broadcast(idf), "slot")
        .groupBy(S.COL_ITEM)
        .agg(
            F.collect_list(_entry("title", F.col("slot") + F.lit(TITLE_OFFSET), F.col("idf"))).alias("_title")
        )
    )


def _with_statistics(products: DataFrame, *, title_features: int) -> DataFrame:
    """Products with tokens hashed to slots, log-price, and the catalogue statistics the features need."""
    docs = products.select(
        S.COL_ITEM,
        S.COL_CATEGORY,
        S.COL_BRAND,
        F.when(F.col(S.COL_PRICE) > 0, F.log(S.COL_PRICE)).alias("_lp"),
        F.coalesce(F.col(S.COL_TITLE), F.lit("")).alias("_title"),
    )
    tokens = RegexTokenizer(inputCol="_title", outputCol="_raw", pattern=r"[^\p{L}\p{N}]+", minTokenLength=2)
    stop = StopWordsRemover(inputCol="_raw", outputCol="_tokens")
    slotted = stop.transform(tokens.transform(docs)).select(
        S.COL_ITEM,
        S.COL_CATEGORY,
        S.COL_BRAND,
        "_lp",
        F.transform("_tokens", lambda t: F.pmod(F.xxhash64(t), F.lit(title_features)).cast("int")).alias(
            "_slots"
        ),
    )
    whole = slotted.agg(F.min("_lp").alias("_glo"), F.max("_lp").alias("_ghi"))
    by_category = slotted.groupBy(S.COL_CATEGORY).agg(F.min("_lp").alias("_clo"), F.max("_lp").alias("_chi"))
    return (
        slotted.join(F.broadcast(by_category), S.COL_CATEGORY, "left")
        .crossJoin(F.broadcast(whole))
        .join(_title_entries(slotted), S.COL_ITEM, "left")
    )


def assemble(entries: Iterable[tuple[str, int, float]], weights: ContentWeights, size: int) -> SparseVector:
    """Builds one product's vector: each group scaled to unit length times its weight, then L2-normalised.

    Args:
        entries: ``(group, index, value)`` triples; a group is one of :data:`GROUPS`.
        weights: Weight of each group.
        size: Length of the vector.

    Returns:
        The unit-length vector (all zeros when there is no entry with a positive weight).

    Example:
        >>> assemble([("category", 0, 1.0), ("brand", 7, 1.0)], ContentWeights(brand=1.0), 10)
        SparseVector(10, {0: 0.7071, 7: 0.7071})
    """
    by_group: dict[str, dict[int, float]] = {}
    for group, index, value in entries:
        slots = by_group.setdefault(group, {})
        slots[index] = slots.get(index, 0.0) + value
    merged: dict[int, float] = {}
    for group, slots in by_group.items():
        weight = getattr(weights, group)
        slots = {i: v for i, v in slots.items() if abs(v) > ZERO}  # cos(pi/2) is 6e-17, not 0
        norm = math.sqrt(sum(v * v for v in slots.values()))
        if norm == 0 or weight <= 0:
            continue
        for index, value in slots.items():
            merged[index] = merged.get(index, 0.0) + weight * value / norm
    total = math.sqrt(sum(v * v for v in merged.values()))
    if total == 0:
        return SparseVector(size, [], [])
    ordered = sorted(merged)
    return SparseVector(size, ordered, [merged[i] / total for i in ordered])


def product_features(products: DataFrame, *, weights: ContentWeights, title_features: int) -> DataFrame:
    """The content feature vector of every product (see the module docstring for the layout).

    Args:
        products: ``product_id, title, category, brand, price`` (other columns are ignored).
        weights: Weight of each feature group.
        title_features: Hash buckets for title tokens.

    Returns:
        ``product_id, category, features`` with ``features`` an L2-normalised ``SparseVector``.

    Example:
        >>> feats = product_features(products, weights=cfg.content.weights, title_features=4096)
        >>> feats.columns
        ['product_id', 'category', 'features']
    """
    missing = [
        c
        for c in (S.COL_ITEM, S.COL_TITLE, S.COL_CATEGORY, S.COL_BRAND, S.COL_PRICE)
        if c not in products.columns
    ]
    if missing:
        raise ValueError(f"products: missing column {missing[0]!r} (has {', '.join(products.columns)})")
    if title_features <= 0:
        raise ValueError(f"title_features must be positive, got {title_features}")
    for group in GROUPS:
        if getattr(weights, group) < 0:
            raise ValueError(f"weights.{group} must not be negative, got {getattr(weights, group)}")
    size = vector_size(title_features)

    # A plain Python UDF (no type hints, which Spark would read as a pandas UDF): it builds the SparseVector.
    to_vector = F.udf(
        lambda rows: assemble(((r["group"], r["index"], r["value"]) for r in rows), weights, size),
        VectorUDT(),
    )

    stats = _with_statistics(products, title_features=title_features)
    title = F.coalesce(F.col("_title"), F.array().cast(T.ArrayType(_ENTRY)))
    entries = F.concat(_category_entries(), _brand_entries(), _price_entries(), title)
    return stats.select(S.COL_ITEM, S.COL_CATEGORY, to_vector(entries).alias(COL_FEATURES))
