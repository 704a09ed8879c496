"""The orjson response provider writes what the standard provider wrote, value for value."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask, jsonify

from serving.json_provider import OrjsonProvider


@dataclasses.dataclass
class _Row:
    product_id: str
    price: float


def _apps(*, debug: bool = False, sort_keys: bool = False) -> tuple[Flask, Flask]:
    standard, fast = Flask("standard"), Flask("fast")
    fast.json = OrjsonProvider(fast)
    for app in (standard, fast):
        app.debug = debug
        app.json.sort_keys = sort_keys  # type: ignore[attr-defined]
    return standard, fast


def _body(app: Flask, obj: Any) -> bytes:
    with app.app_context():
        response = jsonify(obj)
        assert response.mimetype == "application/json"
        return response.get_data()


CASES = [
    # a recommendations page: key order, rounded scores, prices, None, booleans
    {
        "user_id": "U1",
        "items": [
            {"product_id": "P9", "score": 0.934326, "sources": ["cf", "content"], "title": "Mug", "price": 3.5},
            {"product_id": "P1", "score": 1e-06, "sources": [], "title": None, "price": 12.0},
        ],
        "page": 1,
        "next_page": None,
        "cached": True,
        "z_before_a": 0.30000000000000004,
        "a": -0.0,
    },
    {"title": 'Tasse "Käse" \u00e9\U0001f600 \\ \n\t\x01', "big": 2.5e20, "int": 2**63 - 1},
    {1: "int key", 2.5: "float key"},
    [datetime(2026, 11, 27, 14, 0, tzinfo=UTC), date(2026, 11, 27)],
    [uuid.UUID(int=5), Decimal("1.10"), _Row("P1", 2.0)],
    2**70,  # beyond 64 bits: the standard library's answer
    None,
    "text",
]


@pytest.mark.parametrize("obj", CASES)
def test_same_values_and_key_order_as_the_standard_provider(obj: Any) -> None:
    standard, fast = _apps()
    old, new = _body(standard, obj), _body(fast, obj)
    assert new.endswith(b"\n") and b"\n" not in new[:-1]
    assert json.loads(new) == json.loads(old)
    if isinstance(obj, dict):
        assert list(json.loads(new)) == list(json.loads(old))


def test_byte_identical_for_ascii_pages() -> None:
    standard, fast = _apps()
    assert _body(fast, CASES[0]) != _body(standard, CASES[0])  # only the exponent: 1e-6 vs 1e-06
    page = {**CASES[0], "items": CASES[0]["items"][:1]}
    assert _body(fast, page) == _body(standard, page)


@pytest.mark.parametrize(("debug", "sort_keys"), [(True, False), (False, True), (True, True)])
def test_debug_indent_and_sort_keys_as_the_standard_provider(debug: bool, sort_keys: bool) -> None:
    standard, fast = _apps(debug=debug, sort_keys=sort_keys)
    obj = {"b": [1, {}], "a": {"y": [], "x": "é"}}
    old, new = _body(standard, obj), _body(fast, obj)
    assert json.loads(new) == json.loads(old)
    assert new.decode() == old.decode().replace("\\u00e9", "é")


def test_nan_becomes_null_not_an_invalid_token() -> None:
    _, fast = _apps()
    assert _body(fast, {"price": float("nan"), "x": float("inf")}) == b'{"price":null,"x":null}\n'


def test_unknown_types_fail_as_with_the_standard_provider() -> None:
    standard, fast = _apps()
    for app in (standard, fast):
        with pytest.raises(TypeError, match="not JSON serializable"):
            _body(app, {"x": object()})


def test_request_bodies_are_still_parsed_by_the_standard_library() -> None:
    _, fast = _apps()
    assert fast.json.loads('{"q": NaN, "n": 123456789012345678901234567890}')["n"] == 123456789012345678901234567890
