"""RedisStore reads that take one round trip on a single Redis give what the command-by-command reads give."""

from __future__ import annotations

import json

import pytest

from recsys import keys
from recsys.config import RedisConfig, ServingConfig
from recsys.encoding import encode_list
from serving.store import RedisStore, open_client

pytestmark = [pytest.mark.redis]


def _stores(redis_server: str) -> tuple[RedisStore, RedisStore]:
    """The single-Redis store (scripts) and the cluster code path (GET, then pipelined HMGETs), on one Redis."""
    serving = ServingConfig(product_cache_s=0.0)
    client = open_client(RedisConfig(url=redis_server))
    return RedisStore(client, serving, 60), RedisStore(client, serving, 60, cluster=True)


def _seed(redis_client) -> None:
    for i, pid in enumerate(["P1", "P2", "P3", "P4"]):
        fields = {"title": f"T{i} ü", "category": f"c{i % 2}", "price": f"{i}.5", "available": "1"}
        if pid == "P4":
            fields = {"title": "no brand, no price", "available": "0"}
        redis_client.hset(keys.product_key(pid), mapping=fields)
    ids = ["P1", "P2", "P3", "P4", "P-none", "P1"]
    blob = encode_list(ids, [0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [1, 2, 4, 8, 3, 1], created_at=0.0)
    redis_client.set(keys.user_recs_key("U1"), blob)
    redis_client.set(keys.user_recs_key("U-bad"), b"not a list")


@pytest.mark.parametrize("window", [(0, 20), (0, 2), (2, 4), (4, 6), (5, 9), (6, 8), (40, 60)])
def test_cached_page_script_matches_the_two_step_read(redis_server, redis_client, window) -> None:
    _seed(redis_client)
    single, cluster = _stores(redis_server)
    got, want = single.cached_page("U1", *window), cluster.cached_page("U1", *window)
    assert got[0] is not None and want[0] is not None
    assert got[0].product_ids == want[0].product_ids and (got[0].scores == want[0].scores).all()
    assert got[1] == want[1]
    assert sorted(got[1]) == list(range(window[0], min(window[1], 6)))


def test_cached_page_of_a_missing_or_malformed_list_is_a_miss(redis_server, redis_client) -> None:
    _seed(redis_client)
    single, cluster = _stores(redis_server)
    for store in (single, cluster):
        assert store.cached_page("U-none", 0, 20)[:2] == (None, {})
        assert store.cached_page("U-bad", 0, 20)[:2] == (None, {})


def test_products_script_matches_pipelined_hmgets(redis_server, redis_client) -> None:
    _seed(redis_client)
    single, cluster = _stores(redis_server)
    ids = ["P4", "P1", "P-none", "P3", "P1"]
    got = single.products(ids)
    assert got == cluster.products(ids)
    assert got[2] is None and got[0] == {
        "title": "no brand, no price",
        "category": None,
        "brand": None,
        "price": None,
        "available": False,
    }


def test_history_skips_malformed_elements_including_ones_that_hold_two_values(redis_server, redis_client) -> None:
    single, _ = _stores(redis_server)
    good = {"p": "P1", "e": "view", "q": 2, "t": 5.0}
    redis_client.rpush(keys.history_key("U1"), json.dumps(good), '{"p": "P2"}, {"p": "P3"}', "[1]", json.dumps(good))
    events = single.history("U1")
    assert [(e.product_id, e.quantity) for e in events] == [("P1", 2), ("P1", 2)]
    assert single.history_and_popular("U1")[0] == events
    redis_client.rpush(keys.history_key("U2"), json.dumps(good), "{not json")
    assert [e.product_id for e in single.history("U2")] == ["P1"]
