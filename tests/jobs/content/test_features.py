"""Feature vectors of hand-made products against values computed by hand (see the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pyspark.sql import functions as F

from jobs.content.features import (
    BRAND_OFFSET,
    CATEGORY_DIM,
    PRICE_OFFSET,
    TITLE_OFFSET,
    assemble,
    product_features,
    vector_size,
)
from recsys.config import ContentWeights

pytestmark = pytest.mark.spark

SCHEMA = "product_id string, title string, category string, brand string, price double"
PRODUCTS = [
    ("p1", "Red Cotton Shirt", "Clothes > Shirts", "Acme", 10.0),
    ("p2", "Blue Cotton Shirt", "Clothes > Shirts", "Acme", 40.0),
    ("p3", "The Red Mug", "Kitchen", None, 5.0),
]
TITLE_FEATURES = 1 << 16
LN43, LN2 = math.log(4 / 3), math.log(2)


@pytest.fixture(scope="module")
def vectors(spark):
    df = spark.createDataFrame(PRODUCTS, SCHEMA)
    rows = product_features(df, weights=ContentWeights(), title_features=TITLE_FEATURES).collect()
    return {r["product_id"]: r["features"] for r in rows}


@pytest.fixture(scope="module")
def slots(spark):
    cat = {n: ("c:" + n, CATEGORY_DIM, 0) for n in ("Clothes", "Clothes/Shirts", "Kitchen")}
    brand = {"acme": ("b:acme", CATEGORY_DIM, BRAND_OFFSET)}
    title = {t: (t, TITLE_FEATURES, TITLE_OFFSET) for t in ("red", "cotton", "shirt", "blue", "mug")}
    exprs = [
        (F.pmod(F.xxhash64(F.lit(text)), F.lit(dim)) + F.lit(offset)).alias(name)
        for name, (text, dim, offset) in {**cat, **brand, **title}.items()
    ]
    row = spark.range(1).select(*exprs).first()
    return row.asDict()


def expected(slots) -> dict[str, dict[int, float]]:
    # Weights c=1, b=0.6, p=0.4, t=0.8: every group at unit length, so |v|^2 = sum of squared weights.
    # idf = ln(4/3) for red/cotton/shirt (2 of 3 titles), ln 2 for blue/mug; "the" is a stop word.
    # Log-prices ln5, ln10, ln40: catalogue positions 1/3, 1, 0; in Clothes > Shirts 0, 1; Kitchen alone 0.5.
    n12 = math.sqrt(1 + 0.36 + 0.16 + 0.64)
    n3 = math.sqrt(1 + 0.16 + 0.64)
    s2 = math.sqrt(2)

    def price(a: float, b: float) -> list[float]:
        a, b = a * math.pi / 2, b * math.pi / 2
        return [math.cos(a) / s2, math.sin(a) / s2, math.cos(b) / s2, math.sin(b) / s2]

    def title(weights: dict[str, float]) -> dict[str, float]:
        norm = math.sqrt(sum(w * w for w in weights.values()))
        return {t: w / norm for t, w in weights.items()}

    out = {}
    for pid, pa, pb, toks in (
        ("p1", 1 / 3, 0.0, {"red": LN43, "cotton": LN43, "shirt": LN43}),
        ("p2", 1.0, 1.0, {"blue": LN2, "cotton": LN43, "shirt": LN43}),
    ):
        v = {slots["Clothes"]: 1 / s2 / n12, slots["Clothes/Shirts"]: 1 / s2 / n12, slots["acme"]: 0.6 / n12}
        v.update({PRICE_OFFSET + i: 0.4 * x / n12 for i, x in enumerate(price(pa, pb))})
        v.update({slots[t]: 0.8 * w / n12 for t, w in title(toks).items()})
        out[pid] = v
    v = {slots["Kitchen"]: 1 / n3}
    v.update({PRICE_OFFSET + i: 0.4 * x / n3 for i, x in enumerate(price(0.0, 0.5))})
    v.update({slots[t]: 0.8 * w / n3 for t, w in title({"red": LN43, "mug": LN2}).items()})
    out["p3"] = v
    return {pid: {i: x for i, x in v.items() if abs(x) > 1e-12} for pid, v in out.items()}


def test_vectors_match_hand_computed_values(vectors, slots):
    want = expected(slots)
    assert len(set(slots.values())) == len(slots), "test slots collide; pick other names"
    for pid, vec in vectors.items():
        assert vec.size == vector_size(TITLE_FEATURES)
        got = dict(zip(vec.indices.tolist(), vec.values.tolist(), strict=True))
        assert sorted(got) == sorted(want[pid]), pid
        for i, x in want[pid].items():
            assert got[i] == pytest.approx(x, abs=1e-9), (pid, i)
    # Spot values worked out by hand: p1 category 1/sqrt(2)/sqrt(2.16); p3 mug 0.8 * 0.92361 / sqrt(1.8).
    assert dict(zip(vectors["p1"].indices, vectors["p1"].values, strict=True))[
        slots["Clothes"]
    ] == pytest.approx(0.481125, 1e-5)
    assert dict(zip(vectors["p3"].indices, vectors["p3"].values, strict=True))[slots["mug"]] == pytest.approx(
        0.550735, 1e-5
    )


def test_dot_product_of_vectors_is_numpy_cosine(vectors, slots):
    want = expected(slots)
    size = vector_size(TITLE_FEATURES)
    for a, b in (("p1", "p2"), ("p1", "p3"), ("p2", "p3")):
        dense_a, dense_b = np.zeros(size), np.zeros(size)
        for i, x in want[a].items():
            dense_a[i] = x * 3.0  # any positive scale: the cosine does not depend on it
        for i, x in want[b].items():
            dense_b[i] = x
        cosine = dense_a @ dense_b / (np.linalg.norm(dense_a) * np.linalg.norm(dense_b))
        assert vectors[a].dot(vectors[b]) == pytest.approx(cosine, abs=1e-12)
        assert vectors[a].norm(2) == pytest.approx(1.0, abs=1e-12)


def test_assemble_weights_groups_and_normalises():
    vec = assemble(
        [("category", 0, 1.0), ("title", 5, 3.0), ("title", 6, 4.0), ("title", 5, 0.0)],
        ContentWeights(category=1.0, title=1.0),
        10,
    )
    # title group (3, 4) -> (0.6, 0.8); groups at weight 1 each -> divided by sqrt(2)
    assert vec.indices.tolist() == [0, 5, 6]
    assert vec.values.tolist() == pytest.approx([1 / math.sqrt(2), 0.6 / math.sqrt(2), 0.8 / math.sqrt(2)])


def test_missing_column_is_named(spark):
    df = spark.createDataFrame([("p1", "x")], "product_id string, title string")
    with pytest.raises(ValueError, match="'category'"):
        product_features(df, weights=ContentWeights(), title_features=16)
