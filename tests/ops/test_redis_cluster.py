"""The loader's writer and the API against a local 3-master Redis Cluster, with the key format unchanged."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from redis.cluster import RedisCluster

from jobs.load.writer import Target, write_rows
from recsys import keys
from recsys.encoding import decode_list
from recsys.redis_client import cluster_url, open_client
from tests.ops.cluster import LocalCluster
from tests.serving.conftest import API_KEY, make_config

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("cluster"))
    yield c
    c.stop()


@pytest.fixture
def cclient(cluster: LocalCluster) -> Iterator[RedisCluster]:
    client = open_client(cluster.url, cluster=True, socket_timeout_s=2.0)
    client.flushall(target_nodes=RedisCluster.PRIMARIES)
    yield client
    client.close()


def _lists(ids: list[str | None], product_ids: list[list[str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ids,
            "product_ids": product_ids,
            "scores": [[1.0 - 0.1 * i for i in range(len(p))] for p in product_ids],
            "sources": [[1] * len(p) for p in product_ids],
            "created_at": [1767225600.0] * len(ids),
        }
    )


def _load(url: str) -> dict[str, int]:
    """Every key kind through the load job's writer (the function its Spark partitions run)."""
    target = Target(url, True, 2.0, pipeline_size=3)
    frames = {
        "user": _lists(["u1", "u2", "u3"], [["p2", "p3"], ["p1"], []]),
        "similar": _lists(["p1", "p2"], [["p2", "p3"], ["p1"]]),
        "popular": _lists([None, "Home & Garden"], [["p2", "p1", "p3"], ["p1"]]),
        "product": pd.DataFrame(
            {
                "id": ["p1", "p2", "p3"],
                "title": ["Mug", "Cup", "Pot"],
                "category": ["Home & Garden", "kitchen", "kitchen"],
                "brand": ["", "acme", ""],
                "price": ["2.5", "", "1.0"],
                "available": ["1", "1", "0"],
            }
        ),
        "history": pd.DataFrame(
            {"id": ["u2"], "elements": [['{"p":"p1","e":"view","q":1,"t":1767225600,"i":"e0"}']]}
        ),
    }
    ttl = {"user": 3600, "similar": 86400, "popular": 86400, "product": None, "history": 2592000}
    return {
        kind: write_rows([pdf], kind=kind, ttl=ttl[kind], target=target)["keys"]
        for kind, pdf in frames.items()
    }


def test_cluster_url_drops_database_zero_and_rejects_others() -> None:
    assert cluster_url("redis://:pw@10.0.0.1:7000/0") == "redis://:pw@10.0.0.1:7000"
    assert cluster_url("rediss://h:7000") == "rediss://h:7000"
    with pytest.raises(ValueError, match="database '3'"):
        cluster_url("redis://h:7000/3")
    with pytest.raises(ValueError, match="redis:// or rediss://"):
        cluster_url("http://h:7000")


def test_loader_writes_the_contract_keys_across_the_shards(cluster: LocalCluster, cclient) -> None:
    assert _load(cluster.url) == {"user": 2, "similar": 2, "popular": 2, "product": 3, "history": 1}
    per_node = {
        port: sorted(
            k.decode()
            for k in open_client(f"redis://127.0.0.1:{port}", cluster=False, socket_timeout_s=2.0).keys("*")
        )
        for port in cluster.ports
    }
    found = sorted(k for ks in per_node.values() for k in ks)
    assert found == sorted(
        [
            "recommendations:user:u1",
            "recommendations:user:u2",
            "similar:item:p1",
            "similar:item:p2",
            "popular:global",
            "popular:category:home%20%26%20garden",
            "product:p1",
            "product:p2",
            "product:p3",
            "history:user:u2",
        ]
    )
    assert sum(1 for ks in per_node.values() if ks) >= 2, f"all keys landed on one shard: {per_node}"
    assert decode_list(cclient.get(keys.user_recs_key("u1"))).product_ids == ["p2", "p3"]
    assert 3500 < cclient.ttl(keys.user_recs_key("u1")) <= 3600
    assert cclient.ttl(keys.product_key("p1")) == -1


def test_api_reads_and_writes_through_the_cluster(cluster: LocalCluster, cclient, tmp_path: Path) -> None:
    from serving import create_app

    _load(cluster.url)
    base = make_config(tmp_path, cluster.url)  # no ALS bundle: cached lists, catalogue and writes only
    cfg = dataclasses.replace(base, redis=dataclasses.replace(base.redis, cluster=True))
    client = create_app(cfg).test_client()
    auth = {"X-API-Key": API_KEY}

    r = client.get("/v1/users/u1/recommendations")
    assert r.status_code == 200 and r.headers["X-Cache"] == "hit" and "X-Degraded" not in r.headers
    assert [(i["product_id"], i["title"]) for i in r.get_json()["items"]] == [("p2", "Cup"), ("p3", "Pot")]
    r = client.get("/v1/products/p1/similar")
    assert r.status_code == 200 and [i["product_id"] for i in r.get_json()["items"]] == ["p2", "p3"]
    r = client.get("/v1/popular", query_string={"category": "Home & Garden"})
    assert r.status_code == 200 and [i["product_id"] for i in r.get_json()["items"]] == ["p1"]

    event = {"event_id": "ev-1", "user_id": "u1", "product_id": "p2", "event_type": "purchase"}
    r = client.post("/v1/interactions", json=event, headers=auth)
    assert r.status_code == 202 and r.get_json()["accepted"] == 1
    assert client.post("/v1/interactions", json=event, headers=auth).get_json()["duplicates"] == ["ev-1"]
    r = client.put("/v1/interactions/ev-1", json={**event, "quantity": 3}, headers=auth)
    assert r.status_code == 202

    entries = [
        {k.decode(): v.decode() for k, v in f.items()} for _, f in cclient.xrange(cfg.serving.stream_key)
    ]
    assert [(e["event_id"], e["quantity"]) for e in entries] == [("ev-1", "1"), ("ev-1", "3")]
    history = [json.loads(x) for x in cclient.lrange(keys.history_key("u1"), 0, -1)]
    assert [(h["i"], h["q"]) for h in history] == [("ev-1", 3)]  # the PUT replaced the element in place
    assert cclient.exists(keys.user_recs_key("u1")) == 0  # a purchase invalidates the cached list
    assert 0 < cclient.ttl(keys.event_key("ev-1")) <= cfg.serving.event_ttl_s

    text = client.get("/metrics").get_data(as_text=True)
    assert "recsys_stream_pending_entries 2.0" in text
    assert 'recsys_redis_command_duration_seconds_count{command="append_events"}' in text
