"""Redis key names shared by the load job and the API."""

from __future__ import annotations

import pytest

from recsys import keys
from recsys.schema import ValidationError


def test_entity_keys() -> None:
    assert keys.user_recs_key("U00042") == "recommendations:user:U00042"
    assert keys.similar_key("85123A") == "similar:item:85123A"
    assert keys.product_key("p-1.2") == "product:p-1.2"
    assert keys.history_key("u:7") == "history:user:u:7"
    assert keys.event_key("e1") == "event:e1"
    assert keys.MODEL_KEY == "model:current"
    assert keys.STREAM_KEY == "interactions:stream"


@pytest.mark.parametrize(
    ("category", "slug"),
    [
        ("holder", "holder"),
        ("Home & Garden", "home%20%26%20garden"),
        ("  Kitchen/Dining ", "kitchen%2Fdining"),
        ("a:b*{c}", "a%3Ab%2A%7Bc%7D"),
        ("Café", "caf%C3%A9"),
        ("x_y-z.1", "x_y-z.1"),
    ],
)
def test_category_slug(category: str, slug: str) -> None:
    assert keys.category_slug(category) == slug
    assert keys.popular_key(category) == "popular:category:" + slug


def test_popular_global() -> None:
    assert keys.popular_key() == "popular:global"
    assert keys.popular_key(None) == keys.POPULAR_GLOBAL_KEY


def test_slug_case_insensitive_and_distinct() -> None:
    assert keys.category_slug("Bags") == keys.category_slug("bags")
    assert keys.category_slug("a b") != keys.category_slug("a_b")


@pytest.mark.parametrize("bad", ["", "   ", None, "x" * 201])
def test_bad_category(bad: object) -> None:
    with pytest.raises(ValueError, match="category"):
        keys.category_slug(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fn", "field"),
    [
        (keys.user_recs_key, "user_id"),
        (keys.similar_key, "product_id"),
        (keys.history_key, "user_id"),
        (keys.product_key, "product_id"),
        (keys.event_key, "event_id"),
    ],
)
def test_bad_ids_name_their_field(fn, field: str) -> None:
    for bad in ("", "a b", "x" * 65, "*"):
        with pytest.raises(ValidationError) as err:
            fn(bad)
        assert err.value.field == field
