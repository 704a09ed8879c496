"""Presets: public data sets mapped into the lake's raw input schema.

``online-retail`` maps the UCI Online Retail file (one row per invoice line) into products and purchase
events. The choices, documented in ``docs/lake.md``:

- Every invoice line of a known customer, not cancelled, with ``Quantity > 0`` and ``UnitPrice > 0`` is one
  ``purchase`` event with its quantity (397,884 lines, 4,338 customers, 3,665 products). Other lines are not
  interactions and are counted by reason in the ``excluded`` report, in this order: ``cancellation``
  (``InvoiceNo`` starting with ``C``), ``no_customer``, ``non_positive_quantity``, ``non_positive_price``.
- ``event_id`` is ``InvoiceNo:StockCode:n``, ``n`` the occurrence of that stock code within the invoice in
  file order, so reruns produce the same ids and the 5,192 repeated identical lines stay distinct events.
- ``user_id`` is ``CustomerID`` without its ``.0``; ``session_id`` is the invoice; ``ts`` is
  ``InvoiceDate`` read as Europe/London local time, stored in UTC.
- Products come from every sold line (known customer or not): title and price from the most recent line
  with ``UnitPrice > 0``; stock codes never sold at a positive price are counted as ``never_sold``.
- Category: the head noun of the description, i.e. the right-most word found in :data:`CATEGORY_KEYWORDS`
  (``... T-LIGHT HOLDER`` -> ``holder``), ``other`` when none is; postage, fees and vouchers get their own
  category from :data:`SPECIAL_CODES`. The data set has no brand: ``brand`` is null.
- Stock codes keep their case (``85123a`` and ``85123A`` are distinct, as in the source); characters
  outside the id charset become ``_`` (``BANK CHARGES`` -> ``BANK_CHARGES``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from recsys import schema as S

ONLINE_RETAIL = "online-retail"
ONLINE_RETAIL_SOURCE = "online-retail"
ONLINE_RETAIL_COLUMNS: tuple[str, ...] = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)
ONLINE_RETAIL_TZ = "Europe/London"
# First invoice of the data set: the ingest widens its too-old bound to accept the whole history.
ONLINE_RETAIL_EARLIEST = datetime(2010, 12, 1, tzinfo=UTC)
# Head nouns of the Online Retail descriptions -> category. Plurals and near-synonyms share a category; the
# list covers the product types that head at least ~5 descriptions, the rest fall into "other".
_CATEGORY_GROUPS: dict[str, str] = {
    "bag": "BAG BAGS HANDBAG WASHBAG SHOPPER TOTE RUCKSACK BACKPACK",
    "box": "BOX BOXES CASE CASES TRUNK CHEST HAMPER CRATE",
    "tin": "TIN TINS",
    "jar": "JAR JARS CONTAINER CANISTER CANISTERS POT POTS",
    "basket": "BASKET BASKETS BUCKET BUCKETS PLANTER TROUGH",
    "storage": "DRAWER DRAWERS CABINET SHELF ORGANISER STORAGE",
    "candle": "CANDLE CANDLES T-LIGHTS T-LIGHT TEALIGHT TEALIGHTS INCENSE CANDLESTICK BURNER CANDLEPOT",
    "holder": "HOLDER HOLDERS CANDLEHOLDER STAND RACK DISPENSER",
    "hook": "HOOK HOOKS HANGER HANGERS PEG PEGS KNOB KNOBS",
    "jewellery": (
        "NECKLACE NECKLACES NECKLACE+BRACELET BRACELET BRACELETS EARRINGS RING RINGS CHARM CHARMS BEADS "
        "BROOCH PENDANT HAIRCLIP HAIRCLIPS SLIDES BANGLE TIARA CLIPS HAIRSLIDE HAIRSLIDES HAIRBAND"
    ),
    "mug": "MUG MUGS BEAKER BEAKERS",
    "cup": "CUP CUPS SAUCER SAUCERS TEACUP TEACUPS",
    "bowl": "BOWL BOWLS",
    "plate": "PLATE PLATES DISH DISHES PLATTER",
    "tray": "TRAY TRAYS",
    "tableware": (
        "CUTLERY NAPKINS NAPKIN PLACEMATS PLACEMAT COASTER COASTERS DOILY DOILIES JUG TEAPOT SPOON SPOONS "
        "STRAWS GLASS GLASSES TUMBLER"
    ),
    "kitchen": "APRON TOWEL TOWELS GLOVE OVEN MOULD MOULDS CUTTER CUTTERS SCALES TIMER BOARD LUNCHBOX GLOVES",
    "bottle": "BOTTLE BOTTLES FLASK",
    "decoration": (
        "DECORATION DECORATIONS ORNAMENT ORNAMENTS BAUBLE BAUBLES GARLAND BUNTING WREATH MOBILE CHIME "
        "CHIMES BELL BELLS FEATHER FEATHERS STICKS SNOWFLAKE"
    ),
    "sign": "SIGN SIGNS PLAQUE LETTERS LETTER ART CHALKBOARD",
    "card": "CARD CARDS ENVELOPES INVITES TAG TAGS",
    "wrap": "WRAP TISSUES PAPER RIBBON RIBBONS TAPE REEL",
    "stationery": (
        "NOTEBOOK NOTEBOOKS SKETCHBOOK JOURNAL BOOK DIARY PEN PENS PENCIL PENCILS ERASER RULER STICKERS "
        "STICKER CHALK CRAYONS STAMP STAMPS PAD ALBUM SCISSOR SCISSORS ERASERS PATCHES"
    ),
    "clock": "CLOCK CLOCKS",
    "frame": "FRAME FRAMES",
    "mirror": "MIRROR MIRRORS",
    "light": "LIGHT LIGHTS LAMP LAMPS LAMPSHADE LANTERN LANTERNS NIGHTLIGHT CHANDELIER",
    "textile": (
        "CUSHION COVER COVERS CURTAIN BLANKET THROW QUILT DOORMAT MAT RUG SCARF HAT SLIPPERS SOCKS BIB"
    ),
    "home": "DOORSTOP THERMOMETER UMBRELLA PARASOL FAN MAGNET MAGNETS KEYRING PURSE HEADPHONES",
    "furniture": "CHAIR STOOL STOOLS BENCH SCREEN",
    "bath": "SPONGE FLANNEL COMB BRUSH SOAP TOILET",
    "toy": (
        "TOY TOYS GAME GAMES JIGSAW PUZZLE DOLL DOLLS BALL BALLS KIT SOLDIER SOLDIERS SKIPPING ROPE "
        "SPINNING TOP BLOCKS DOMINOES BALLOONS HELICOPTER TEDDY BEAR WINDMILL"
    ),
    "garden": "GNOME BIRDHOUSE FEEDER WATERING CAN SEEDS",
}
CATEGORY_KEYWORDS: dict[str, str] = {kw: cat for cat, kws in _CATEGORY_GROUPS.items() for kw in kws.split()}
CATEGORY_OTHER = "other"

# Stock codes that are not goods: their category says what they are, whatever the description.
SPECIAL_CODES: dict[str, str] = {
    "POST": "postage",
    "DOT": "postage",
    "C2": "postage",
    "M": "adjustment",
    "m": "adjustment",
    "D": "adjustment",
    "S": "adjustment",
    "B": "adjustment",
    "AMAZONFEE": "adjustment",
    "BANK_CHARGES": "adjustment",
    "CRUK": "adjustment",
    "PADS": "adjustment",
}
GIFT_VOUCHER_PREFIX = "gift_"

_ID_UNSAFE = r"[^A-Za-z0-9_.:\-]"


@dataclass(frozen=True)
class PresetData:
    """What a preset yields: rows for both tables and the count of source lines left out, by reason."""

    products: DataFrame
    events: DataFrame
    excluded: DataFrame


def read_online_retail(spark: SparkSession, path: str) -> DataFrame:
    """Reads the Online Retail CSV as strings with each line's position in the file (``_line``).

    Example:
        >>> raw = read_online_retail(spark, "../shared/datasets/online-retail/online_retail.csv.gz")
    """
    csv_schema = T.StructType([T.StructField(c, T.StringType(), True) for c in ONLINE_RETAIL_COLUMNS])
    raw = spark.read.csv(path, header=True, schema=csv_schema, mode="PERMISSIVE", enforceSchema=False)
    # Taken before any shuffle, so it follows the file order (a gzip file is one partition).
    return raw.withColumn("_line", F.monotonically_increasing_id())


def retail_lines(raw: DataFrame, *, tz: str = ONLINE_RETAIL_TZ) -> DataFrame:
    """Parses the typed fields of each line and gives it its deterministic ``event_id``.

    Args:
        raw: Lines as read by :func:`read_online_retail` (string columns and ``_line``).
        tz: Time zone of ``InvoiceDate``.

    Returns:
        ``raw`` plus ``product_id``, ``user_id``, ``quantity``, ``unit_price``, ``ts``, ``cancelled`` and
        ``event_id``.

    Example:
        >>> retail_lines(raw).select("event_id").first()[0]
        '536365:85123A:1'
    """
    product_id = F.regexp_replace(F.trim("StockCode"), _ID_UNSAFE, "_")
    customer = F.regexp_extract(F.trim("CustomerID"), r"^(\d+)(\.0*)?$", 1)
    local_ts = F.try_to_timestamp(F.trim("InvoiceDate"), F.lit("yyyy-MM-dd HH:mm:ss"))
    ordinal = F.row_number().over(Window.partitionBy("InvoiceNo", "StockCode").orderBy("_line"))
    return (
        raw.withColumn(S.COL_ITEM, product_id)
        .withColumn(S.COL_USER, F.when(customer != "", customer))
        .withColumn(S.COL_QUANTITY, F.col("Quantity").try_cast("int"))
        .withColumn("unit_price", F.col("UnitPrice").try_cast("double"))
        .withColumn(S.COL_TS, F.to_utc_timestamp(local_ts, tz))
        .withColumn("cancelled", F.upper(F.trim("InvoiceNo")).startswith("C"))
        .withColumn(S.COL_EVENT_ID, F.concat_ws(":", F.trim("InvoiceNo"), product_id, ordinal.cast("string")))
    )


def exclusion_reason() -> Column:
    """Why a line is not a purchase event (null when it is one); the first matching reason wins."""
    return (
        F.when(F.col("cancelled"), "cancellation")
        .when(F.col(S.COL_USER).isNull(), "no_customer")
        .when(F.col(S.COL_QUANTITY) <= 0, "non_positive_quantity")
        .when(F.col("unit_price") <= 0, "non_positive_price")
    )


def retail_events(lines: DataFrame, *, source: str = ONLINE_RETAIL_SOURCE) -> DataFrame:
    """The purchase events: lines with no exclusion reason, in the raw interactions input schema.

    A line whose quantity or date does not parse is kept with a null there, so the ingest's quality gate
    quarantines it under a rule naming the column instead of it vanishing here.

    Example:
        >>> retail_events(retail_lines(raw)).columns[:3]
        ['event_id', 'user_id', 'product_id']
    """
    return lines.where(exclusion_reason().isNull()).select(
        S.COL_EVENT_ID,
        S.COL_USER,
        S.COL_ITEM,
        F.lit("purchase").alias(S.COL_EVENT_TYPE),
        S.COL_QUANTITY,
        S.COL_TS,
        F.trim("InvoiceNo").alias(S.COL_SESSION),
        F.lit(source).alias(S.COL_SOURCE),
    )


def category_of(title: Column, product_id: Column) -> Column:
    """The category of a product: its special-code category, else the head noun of its title, else other.

    Example:
        >>> category_of(F.lit("WHITE HANGING HEART T-LIGHT HOLDER"), F.lit("85123A"))  # -> 'holder'
    """
    words = F.reverse(F.split(F.upper(F.coalesce(title, F.lit(""))), r"[^A-Z+\-]+"))
    keywords = F.create_map(*[F.lit(x) for kv in CATEGORY_KEYWORDS.items() for x in kv])
    specials = F.create_map(*[F.lit(x) for kv in SPECIAL_CODES.items() for x in kv])
    head = F.try_element_at(F.filter(words, lambda w: F.array_contains(F.map_keys(keywords), w)), F.lit(1))
    special = F.try_element_at(specials, product_id)
    return (
        F.when(product_id.startswith(GIFT_VOUCHER_PREFIX), F.lit("gift_voucher"))
        .when(special.isNotNull(), special)
        .when(head.isNotNull(), F.try_element_at(keywords, head))
        .otherwise(F.lit(CATEGORY_OTHER))
    )


def retail_products(lines: DataFrame) -> DataFrame:
    """One product per stock code sold at a positive price, in the raw products input schema.

    Title and price come from the most recent such line (title from the most recent one that has a
    description); brand is unknown (null) and every product is available.

    Example:
        >>> retail_products(retail_lines(raw)).columns
        ['product_id', 'title', 'category', 'brand', 'price', 'available']
    """
    sold = lines.where(~F.col("cancelled") & (F.col(S.COL_QUANTITY) > 0) & (F.col("unit_price") > 0))
    order = F.struct(S.COL_TS, "_line")
    described = F.when(F.trim("Description") != "", order)
    latest = sold.groupBy(S.COL_ITEM).agg(
        F.max_by(F.trim("Description"), described).alias(S.COL_TITLE),
        F.max_by("unit_price", order).alias(S.COL_PRICE),
    )
    return latest.select(
        S.COL_ITEM,
        S.COL_TITLE,
        category_of(F.col(S.COL_TITLE), F.col(S.COL_ITEM)).alias(S.COL_CATEGORY),
        F.lit(None).cast("string").alias(S.COL_BRAND),
        S.COL_PRICE,
        F.lit(True).alias(S.COL_AVAILABLE),
    )


def retail_excluded(lines: DataFrame) -> DataFrame:
    """Counts of source lines that are not events, and of stock codes that are not products, by reason.

    Example:
        >>> retail_excluded(retail_lines(raw)).columns
        ['table', 'reason', 'rows']
    """
    events = (
        lines.select(exclusion_reason().alias("reason"))
        .where(F.col("reason").isNotNull())
        .groupBy("reason")
        .agg(F.count(F.lit(1)).alias("rows"))
        .select(F.lit("interactions").alias("table"), "reason", "rows")
    )
    is_sold = ~F.col("cancelled") & (F.col(S.COL_QUANTITY) > 0) & (F.col("unit_price") > 0)
    products = (
        lines.groupBy(S.COL_ITEM)
        .agg(F.max(is_sold.cast("int")).alias("sold"))
        .where(F.coalesce(F.col("sold"), F.lit(0)) == 0)
        .agg(F.count(F.lit(1)).alias("rows"))
        .where(F.col("rows") > 0)
        .select(F.lit("products").alias("table"), F.lit("never_sold").alias("reason"), "rows")
    )
    return events.unionByName(products)


def online_retail_data(spark: SparkSession, path: str) -> PresetData:
    """Products, purchase events and the exclusion report of the Online Retail file at ``path``.

    Example:
        >>> data = online_retail_data(spark, "../shared/datasets/online-retail/online_retail.csv.gz")
        >>> data.events.count()
        397884
    """
    lines = retail_lines(read_online_retail(spark, path)).cache()
    return PresetData(retail_products(lines), retail_events(lines), retail_excluded(lines))


def online_retail(spark: SparkSession, path: str) -> tuple[DataFrame, DataFrame]:
    """``(products, events)`` of the UCI Online Retail file in the raw input schema of the ingest.

    Args:
        spark: The session.
        path: The CSV (gzipped or not) with the original columns.

    Returns:
        Products ``(product_id, title, category, brand, price, available)`` and purchase events
        ``(event_id, user_id, product_id, event_type, quantity, ts, session_id, source)``.

    Example:
        >>> products, events = online_retail(spark, "../shared/datasets/online-retail/online_retail.csv.gz")
        >>> events.select("user_id").distinct().count()
        4338
    """
    data = online_retail_data(spark, path)
    return data.products, data.events
