"""Similar and popular products, health and readiness, metrics, and the model hot reload."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recsys.bundle import current_bundle_dir, load_bundle, write_bundle

pytestmark = [pytest.mark.redis, pytest.mark.spark]


def test_similar_from_redis_then_from_factors_then_404(client, redis_client) -> None:
    body = client.get("/v1/products/K1/similar?page_size=2").get_json()
    assert [i["product_id"] for i in body["items"]] == ["K2", "K3"]
    assert body["items"][0]["sources"] == ["content"] and body["next_page"] == 2 and body["total"] == 3
    redis_client.delete("similar:item:G1")
    fallback = client.get("/v1/products/G1/similar?page_size=3").get_json()
    assert fallback["items"][0]["sources"] == ["cf"] and "G1" not in [
        i["product_id"] for i in fallback["items"]
    ]
    missing = client.get("/v1/products/NOPE/similar")
    assert missing.status_code == 404 and missing.get_json()["error"]["field"] == "product_id"


def test_popular_global_and_by_category(client) -> None:
    assert [i["product_id"] for i in client.get("/v1/popular").get_json()["items"]] == [
        "G1",
        "K1",
        "G2",
        "K2",
        "G3",
    ]
    kitchen = client.get("/v1/popular?category=kitchen").get_json()
    assert kitchen["category"] == "kitchen" and [i["product_id"] for i in kitchen["items"]] == ["K1", "K2"]
    none = client.get("/v1/popular?category=Toys").get_json()
    assert (none["items"], none["total"]) == ([], 0)


def test_health_and_readiness(client, cfg) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    version = load_bundle(current_bundle_dir(cfg.model_path("als"))).model_version
    assert ready.status_code == 200
    assert ready.get_json() == {
        "status": "ready",
        "redis": True,
        "model_loaded": True,
        "model_version": version,
        "model_error": None,
    }


def test_metrics_count_requests_cache_and_model(client, redis_client) -> None:
    client.get("/v1/users/UK1/recommendations")
    client.get("/v1/users/UK1/recommendations")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'recsys_cache_requests_total{result="hit"} 1.0' in text
    assert 'recsys_cache_requests_total{result="miss"} 1.0' in text
    assert (
        'recsys_http_request_duration_seconds_count{endpoint="/v1/users/<user_id>/recommendations",'
        'method="GET",status="200"} 2.0'
    ) in text
    assert 'recsys_ondemand_scoring_seconds_count{kind="personal"} 1.0' in text
    assert "recsys_model_info{model_version=" in text


def test_new_model_version_is_picked_up_without_restart(
    trained_lake, redis_server, redis_client, tmp_path
) -> None:
    import shutil

    from serving import create_app
    from tests.serving.conftest import make_config

    shutil.copytree(trained_lake / "models", tmp_path / "models")
    cfg = make_config(tmp_path, redis_server)
    app = create_app(cfg)
    http = app.test_client()
    first = load_bundle(current_bundle_dir(cfg.model_path("als")))
    assert http.get("/readyz").get_json()["model_version"] == first.model_version
    write_bundle(
        cfg.model_path("als"),
        "als-v2",
        item_ids=[str(i) for i in first.item_ids],
        item_factors=np.asarray(first.item_factors),
        user_ids=[str(u) for u in first.user_ids],
        user_factors=np.asarray(first.user_factors),
        meta=dict(first.meta),
    )
    assert http.get("/readyz").get_json()["model_version"] == "als-v2"
    assert 'recsys_model_info{model_version="als-v2"} 1.0' in http.get("/metrics").get_data(as_text=True)
    # model:current names the bundle the cached lists came from: it wins over the CURRENT file.
    redis_client.hset("model:current", mapping={"als_bundle": first.model_version})
    assert http.get("/readyz").get_json()["model_version"] == first.model_version
    assert json.loads((tmp_path / "models" / "als" / "als-v2" / "meta.json").read_text())["n_items"] == 12
