"""GET /v1/users/{id}/recommendations: hit, miss and TTL, fold-in, cold start, invalidation, pagination."""

from __future__ import annotations

import time

import numpy as np
import pytest

from recsys import keys
from recsys.bundle import current_bundle_dir, load_bundle
from recsys.encoding import SOURCE_BITS, decode_list, encode_list
from recsys.foldin import fold_in
from tests.serving.conftest import GARDEN, KITCHEN

pytestmark = [pytest.mark.redis, pytest.mark.spark]


def _ids(body: dict) -> list[str]:
    return [item["product_id"] for item in body["items"]]


def test_cache_hit_returns_the_stored_list_with_details(client, redis_client) -> None:
    redis_client.set(
        keys.user_recs_key("UK0"), encode_list(["K3", "G1"], [0.9, 0.5], [1, 4], created_at=0.0), ex=100
    )
    redis_client.hset(keys.MODEL_KEY, mapping={"model_version": "v-load-1"})
    r = client.get("/v1/users/UK0/recommendations")
    assert r.status_code == 200
    assert r.headers["X-Cache"] == "hit"
    body = r.get_json()
    assert body["cached"] is True and body["model_version"] == "v-load-1"
    assert body["items"] == [
        {
            "product_id": "K3",
            "score": 0.899902,
            "sources": ["cf"],
            "title": "Product K3",
            "category": "Kitchen",
            "brand": "Acme",
            "price": 3.5,
        },
        {
            "product_id": "G1",
            "score": 0.5,
            "sources": ["popular"],
            "title": "Product G1",
            "category": "Garden & Outdoor",
            "brand": "Acme",
            "price": 7.5,
        },
    ]
    assert (body["total"], body["page"], body["next_page"]) == (2, 1, None)


def test_miss_computes_stores_with_ttl_then_hits(client, redis_client, cfg) -> None:
    key = keys.user_recs_key("UK1")
    assert redis_client.get(key) is None
    first = client.get("/v1/users/UK1/recommendations")
    assert first.status_code == 200 and first.headers["X-Cache"] == "miss"
    body = first.get_json()
    assert body["cached"] is False and body["cold_start"] is False
    stored = decode_list(redis_client.get(key))
    assert stored.product_ids == _ids(body)
    assert 0 < redis_client.ttl(key) <= cfg.redis.ttl_seconds
    # UK1 bought every kitchen product but K2 (its held-out one): K2 ranks first, bought ones never appear.
    assert _ids(body)[0] == "K2"
    assert not set(_ids(body)) & (set(KITCHEN) - {"K2"})
    second = client.get("/v1/users/UK1/recommendations")
    assert second.headers["X-Cache"] == "hit" and _ids(second.get_json()) == _ids(body)


def test_expired_entry_is_recomputed(client, redis_client) -> None:
    key = keys.user_recs_key("UG1")
    redis_client.set(key, encode_list(["K1"], [1.0], [4], created_at=0.0), px=50)
    time.sleep(0.1)
    r = client.get("/v1/users/UG1/recommendations")
    assert r.headers["X-Cache"] == "miss"
    assert _ids(r.get_json())[0] == "G2"


def test_fold_in_for_a_user_who_arrived_after_the_batch(client, redis_client, auth, cfg) -> None:
    events = [{"user_id": "NEW1", "product_id": p, "event_type": "purchase"} for p in ("G1", "G2", "G3")]
    assert client.post("/v1/interactions", json=events, headers=auth).status_code == 202
    r = client.get("/v1/users/NEW1/recommendations?page_size=3")
    body = r.get_json()
    assert body["cold_start"] is False
    cf = [i["product_id"] for i in body["items"] if "cf" in i["sources"]]
    # The folded-in vector must equal the plain numpy solve, and its best unseen items are garden products.
    bundle = load_bundle(current_bundle_dir(cfg.model_path("als")))
    rows = np.array([bundle.item_index[p] for p in ("G1", "G2", "G3")])
    x = fold_in(
        bundle.item_factors,
        bundle.gram,
        rows,
        np.ones(3),
        reg_param=bundle.meta["reg_param"],
        alpha=bundle.meta["alpha"],
    )
    scores = np.asarray(bundle.item_factors) @ x
    unseen = [
        str(bundle.item_ids[i])
        for i in np.argsort(-scores)
        if str(bundle.item_ids[i]) not in {"G1", "G2", "G3"}
    ]
    assert cf and cf == [p for p in unseen if p in cf][: len(cf)]
    assert set(_ids(body)) <= set(GARDEN) - {"G1", "G2", "G3"}


def test_cold_start_user_gets_popular_with_200(client) -> None:
    r = client.get("/v1/users/NEVER-SEEN/recommendations")
    assert r.status_code == 200
    body = r.get_json()
    assert body["cold_start"] is True and _ids(body) == ["G1", "K1", "G2", "K2", "G3"]
    assert all(i["sources"] == ["popular"] for i in body["items"])
    kitchen = client.get("/v1/users/NEVER-SEEN/recommendations?category=Kitchen").get_json()
    assert _ids(kitchen) == ["K1", "K2"]
    garden = client.get("/v1/users/NEVER-SEEN/recommendations?category=garden%20%26%20outdoor").get_json()
    assert _ids(garden) == ["G1", "G2", "G3"]


def test_purchase_invalidates_and_the_next_answer_changes(client, redis_client, auth) -> None:
    # The load job's list for UK0 leads with K1, which UK0 is about to buy; K1's neighbours are K2..K4.
    redis_client.set(
        keys.user_recs_key("UK0"), encode_list(["K1", "G6"], [0.9, 0.1], [1, 4], created_at=0.0), ex=100
    )
    redis_client.delete(keys.similar_key("K1"))
    redis_client.set(keys.similar_key("K1"), encode_list(["K5", "G6"], [0.9, 0.8], [2, 2], created_at=0.0))
    before = client.get("/v1/users/UK0/recommendations").get_json()
    assert _ids(before) == ["K1", "G6"]
    view = client.post(
        "/v1/interactions", json={"user_id": "UK0", "product_id": "G5", "event_type": "view"}, headers=auth
    )
    assert view.status_code == 202
    assert (
        client.get("/v1/users/UK0/recommendations").headers["X-Cache"] == "hit"
    )  # a view does not invalidate
    r = client.post(
        "/v1/interactions",
        json={"user_id": "UK0", "product_id": "K1", "event_type": "purchase"},
        headers=auth,
    )
    assert r.status_code == 202
    assert redis_client.get(keys.user_recs_key("UK0")) is None
    after = client.get("/v1/users/UK0/recommendations")
    assert after.headers["X-Cache"] == "miss"
    items = after.get_json()["items"]
    assert "K1" not in [i["product_id"] for i in items]
    related = {i["product_id"]: i["sources"] for i in items}
    assert "content" in related["G6"]  # a neighbour of the purchased product now appears


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("page=1&page_size=2", (["G1", "K1"], 2)),
        ("page=3&page_size=2", (["G3"], None)),
        ("page=4&page_size=2", ([], None)),
        ("page_size=5", (["G1", "K1", "G2", "K2", "G3"], None)),
    ],
)
def test_pagination_edges(client, query: str, expected: tuple) -> None:
    body = client.get(f"/v1/users/NOBODY/recommendations?{query}").get_json()
    assert (_ids(body), body["next_page"], body["total"]) == (*expected, 5)


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/v1/users/bad%20id/recommendations", "user_id"),
        ("/v1/users/" + "u" * 65 + "/recommendations", "user_id"),
        ("/v1/users/u%2A/recommendations", "user_id"),
        ("/v1/users/U1/recommendations?page=0", "page"),
        ("/v1/users/U1/recommendations?page=x", "page"),
        ("/v1/users/U1/recommendations?page=-1", "page"),
        ("/v1/users/U1/recommendations?page_size=0", "page_size"),
        ("/v1/users/U1/recommendations?page_size=51", "page_size"),
        ("/v1/users/U1/recommendations?page_size=1.5", "page_size"),
        ("/v1/users/U1/recommendations?category=", "category"),
        ("/v1/users/U1/recommendations?sort=score", "sort"),
        ("/v1/products/bad%7Bid%7D/similar", "product_id"),
        ("/v1/popular?page_size=1000", "page_size"),
    ],
)
def test_bad_parameters_give_400_naming_the_field(client, url: str, field: str) -> None:
    r = client.get(url)
    assert r.status_code == 400
    assert r.get_json()["error"]["field"] == field
    assert field in r.get_json()["error"]["message"]


def test_sources_bits_round_trip_in_stored_list(client, redis_client) -> None:
    client.get("/v1/users/UG2/recommendations")
    stored = decode_list(redis_client.get(keys.user_recs_key("UG2")))
    assert set(np.unique(stored.sources)) <= {sum(SOURCE_BITS.values()) & b for b in range(16)}
    assert stored.product_ids[0] == "G3"
