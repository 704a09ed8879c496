"""The worker's near cache of rendered pages: served without Redis, dropped the moment Redis says a key changed."""

from __future__ import annotations

import time

import pytest
import redis

from recsys import keys
from recsys.encoding import encode_list
from serving.nearcache import NearCache
from tests.serving.conftest import make_config

pytestmark = [pytest.mark.redis, pytest.mark.spark]

URL = "/v1/users/UK0/recommendations"


def _ids(response) -> list[str]:
    return [item["product_id"] for item in response.get_json()["items"]]


def _reads(client) -> int:
    """Commands the API's page reads use (GET of the list, the details script)."""
    stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("get", "evalsha"))


def _near_hits(client) -> float:
    for line in client.get("/metrics").get_data(as_text=True).splitlines():
        if line.startswith('recsys_near_cache_total{event="hit"}'):
            return float(line.split()[-1])
    return 0.0


def _set_list(redis_client, ids: list[str]) -> None:
    scores = [1.0 - i / 10 for i in range(len(ids))]
    redis_client.set(keys.user_recs_key("UK0"), encode_list(ids, scores, [1] * len(ids), created_at=0.0), ex=100)


def _warm(client) -> list[str]:
    """Two GETs: the first reads Redis and renders the page, the second is the near cache's."""
    first, second = client.get(URL), client.get(URL)
    assert first.headers["X-Cache"] == second.headers["X-Cache"] == "hit"
    assert first.get_data() == second.get_data()
    return _ids(second)


@pytest.fixture
def second_worker(cfg, redis_client):
    """Another app on the same Redis: a second gunicorn worker."""
    from serving import create_app

    return create_app(cfg).test_client()


def test_a_repeated_page_is_answered_without_redis(client, redis_client) -> None:
    _set_list(redis_client, ["K3", "G1"])
    assert _warm(client) == ["K3", "G1"]
    calls = _reads(redis_client)
    third = client.get(URL)
    assert third.headers["X-Cache"] == "hit" and _ids(third) == ["K3", "G1"]
    assert third.get_json()["cached"] is True
    assert _reads(redis_client) == calls  # nothing read: the page came from the worker
    assert _near_hits(client) == 2.0


def test_other_pages_and_sizes_are_their_own_entries(client, redis_client) -> None:
    _set_list(redis_client, ["K3", "G1", "K4"])
    _warm(client)
    second_page = client.get(URL + "?page=2&page_size=2")
    assert second_page.headers["X-Cache"] == "hit" and _ids(second_page) == ["K4"]
    assert _ids(client.get(URL + "?page=2&page_size=2")) == ["K4"]
    assert _ids(client.get(URL)) == ["K3", "G1", "K4"]


def test_a_list_rewritten_by_a_load_is_served_at_once(client, redis_client) -> None:
    _set_list(redis_client, ["K3", "G1"])
    _warm(client)
    _set_list(redis_client, ["G2", "K5"])  # what the load job does: SET ... EX from another connection
    r = client.get(URL)
    assert r.headers["X-Cache"] == "hit" and _ids(r) == ["G2", "K5"]


def test_a_purchase_on_another_worker_changes_this_workers_next_answer(
    client, second_worker, redis_client, auth
) -> None:
    _set_list(redis_client, ["K1", "G6"])
    assert _warm(client) == ["K1", "G6"]
    r = second_worker.post(
        "/v1/interactions", json={"user_id": "UK0", "product_id": "K1", "event_type": "purchase"}, headers=auth
    )
    assert r.status_code == 202
    after = client.get(URL)
    assert after.headers["X-Cache"] == "miss"  # the list was invalidated: computed on demand
    assert "K1" not in _ids(after)


def test_a_changed_product_hash_shows_at_once(client, redis_client) -> None:
    _set_list(redis_client, ["K3", "G1"])
    _warm(client)
    redis_client.hset(keys.product_key("G1"), "title", "Renamed G1")
    items = client.get(URL).get_json()["items"]
    assert [i["title"] for i in items] == ["Product K3", "Renamed G1"]


def test_a_new_model_version_is_a_miss_of_the_near_cache(client, redis_client) -> None:
    redis_client.hset(keys.MODEL_KEY, mapping={"model_version": "v1"})
    _set_list(redis_client, ["K3", "G1"])
    _warm(client)
    redis_client.hset(keys.MODEL_KEY, mapping={"model_version": "v2"})  # the test config re-reads at once
    assert client.get(URL).get_json()["model_version"] == "v2"


def test_expiry_and_flush_drop_the_page(client, redis_client) -> None:
    _set_list(redis_client, ["K3", "G1"])
    _warm(client)
    redis_client.flushall()
    assert client.get(URL).headers["X-Cache"] == "miss"


@pytest.mark.parametrize("connection", ["listener", "tracked"])
def test_a_lost_connection_drops_every_page(client, redis_client, connection: str) -> None:
    # Killing either connection loses what Redis tracked for the worker; the next change would send no
    # invalidation, so the worker must stop trusting its pages as soon as it sees the connection gone.
    _set_list(redis_client, ["K3", "G1"])
    _warm(client)
    listener_id = client.application.extensions["recsys"].store.near._listener_id
    if connection == "listener":
        victim = listener_id
    else:  # the connection whose CLIENT TRACKING redirects to that listener
        (victim,) = [c["id"] for c in redis_client.client_list() if c.get("redir") == str(listener_id)]
    redis_client.client_kill_filter(_id=victim)
    _set_list(redis_client, ["G2", "K5"])
    assert _ids(client.get(URL)) == ["G2", "K5"]
    _set_list(redis_client, ["G3"])  # tracking works again after the reconnect
    _warm(client)
    _set_list(redis_client, ["G4"])
    assert _ids(client.get(URL)) == ["G4"]


@pytest.mark.parametrize("setting", [{"page_cache_size": 0}, {"page_cache_s": 0.0}])
def test_switched_off_every_hit_reads_redis(trained_lake, redis_server, redis_client, setting) -> None:
    from serving import create_app
    from tests.serving.conftest import seed_redis

    cfg = make_config(trained_lake, redis_server, **setting)
    seed_redis(redis_client)
    app = create_app(cfg)
    assert app.extensions["recsys"].store.near is None
    _set_list(redis_client, ["K3", "G1"])
    with app.test_client() as c:
        _warm(c)
        calls = _reads(redis_client)
        assert _ids(c.get(URL)) == ["K3", "G1"]
        assert _reads(redis_client) > calls  # the page was read from Redis again


def test_category_filtered_pages_are_not_kept(client, redis_client) -> None:
    _set_list(redis_client, ["K3", "G1"])
    for _ in range(2):
        r = client.get(URL + "?category=Kitchen")
        assert r.headers["X-Cache"] == "hit" and _ids(r) == ["K3"]
    assert _near_hits(client) == 0.0


# --- the NearCache on its own -----------------------------------------------------------------------------
@pytest.fixture
def near(redis_server: str, redis_client):
    cache = NearCache(
        lambda: redis.Redis.from_url(redis_server, protocol=2, socket_timeout=1.0), max_pages=2, max_age_s=0.3
    )
    yield cache
    cache.clear()


def _keep(near: NearCache, key: str, body: bytes, page=(1, 20), version="v") -> bool:
    token = near.lookup(key, page, version)[1]
    near.tracked().get(key)
    return near.put(key, page, version, body, token)


def test_the_oldest_page_leaves_when_full(near) -> None:
    assert _keep(near, "recommendations:user:a", b"a")
    assert _keep(near, "recommendations:user:b", b"b")
    assert _keep(near, "recommendations:user:c", b"c")
    assert len(near) == 2
    assert near.lookup("recommendations:user:a", (1, 20), "v")[0] is None
    assert near.lookup("recommendations:user:c", (1, 20), "v")[0] == b"c"


def test_a_page_is_not_served_past_its_age_or_to_another_version(near) -> None:
    assert _keep(near, "recommendations:user:a", b"a")
    assert near.lookup("recommendations:user:a", (1, 20), "v2")[0] is None  # and dropped
    assert _keep(near, "recommendations:user:a", b"a")
    time.sleep(0.35)
    assert near.lookup("recommendations:user:a", (1, 20), "v")[0] is None


def test_a_change_between_read_and_put_is_not_kept(near, redis_client) -> None:
    key = "recommendations:user:a"
    token = near.lookup(key, (1, 20), "v")[1]
    near.tracked().get(key)
    redis_client.set(key, b"new")  # lands after the read, before the rendered page is kept
    time.sleep(0.05)
    assert near.put(key, (1, 20), "v", b"old", token) is False
    assert near.lookup(key, (1, 20), "v")[0] is None


def test_a_backlog_of_invalidations_is_read_to_the_end_before_a_lookup(near, redis_client) -> None:
    # A load rewriting thousands of tracked lists queues far more than one socket read (64 KB) of messages;
    # the page's own invalidation comes last.
    many = [f"recommendations:user:u{i:05d}" for i in range(3000)]
    token = near.lookup(many[-1], (1, 20), "v")[1]
    tracked = near.tracked()
    for key in many:  # one by one: a pipeline would take another connection of the pool, untracked
        tracked.get(key)
    assert near.put(many[-1], (1, 20), "v", b"page", token)
    pipe = redis_client.pipeline(transaction=False)
    for key in many:
        pipe.set(key, b"x" * 10)
    pipe.execute()
    time.sleep(0.1)
    assert near.lookup(many[-1], (1, 20), "v")[0] is None


def test_settings_must_be_positive(redis_server) -> None:
    with pytest.raises(ValueError, match="max_pages"):
        NearCache(lambda: redis.Redis.from_url(redis_server), max_pages=0, max_age_s=1.0)
