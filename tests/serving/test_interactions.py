"""POST and PUT /v1/interactions: validation, idempotency, the stream and history writes, auth, limits."""

from __future__ import annotations

import json

import pytest

from recsys import keys

pytestmark = [pytest.mark.redis, pytest.mark.spark]

STREAM = "interactions:stream"


def _stream(redis_client) -> list[dict[str, str]]:
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in redis_client.xrange(STREAM)]


def test_post_one_event_appends_stream_and_history(client, redis_client, auth) -> None:
    r = client.post(
        "/v1/interactions",
        json={
            "user_id": "U9",
            "product_id": "K1",
            "event_type": "add_to_cart",
            "quantity": 2,
            "ts": "2026-01-02T03:04:05Z",
            "session_id": "s1",
        },
        headers=auth,
    )
    assert r.status_code == 202
    body = r.get_json()
    (event_id,) = body["event_ids"]
    assert len(event_id) == 32 and body["accepted"] == 1 and body["duplicates"] == []
    assert _stream(redis_client) == [
        {
            "event_id": event_id,
            "user_id": "U9",
            "product_id": "K1",
            "event_type": "add_to_cart",
            "quantity": "2",
            "ts": "2026-01-02T03:04:05+00:00",
            "session_id": "s1",
            "source": "api",
        }
    ]
    (element,) = redis_client.lrange(keys.history_key("U9"), 0, -1)
    assert json.loads(element) == {"p": "K1", "e": "add_to_cart", "q": 2, "t": 1767323045.0, "i": event_id}
    assert 0 < redis_client.ttl(keys.history_key("U9")) <= 2_592_000
    assert 0 < redis_client.ttl(keys.event_key(event_id)) <= 86_400


def test_client_event_id_makes_retries_idempotent(client, redis_client, auth) -> None:
    event = {"event_id": "evt-1", "user_id": "U9", "product_id": "K1", "event_type": "view"}
    first = client.post("/v1/interactions", json=event, headers=auth).get_json()
    again = client.post(
        "/v1/interactions", json=[event, {**event, "event_id": "evt-2"}], headers=auth
    ).get_json()
    assert first == {"event_ids": ["evt-1"], "accepted": 1, "duplicates": []}
    assert again == {"event_ids": ["evt-1", "evt-2"], "accepted": 1, "duplicates": ["evt-1"]}
    assert [e["event_id"] for e in _stream(redis_client)] == ["evt-1", "evt-2"]
    assert redis_client.llen(keys.history_key("U9")) == 2


def test_history_is_bounded(app, client, redis_client, auth) -> None:
    length = app.extensions["recsys"].cfg.serving.history_length
    batch = [{"user_id": "U8", "product_id": f"P{i}", "event_type": "view"} for i in range(length + 5)]
    assert client.post("/v1/interactions", json=batch, headers=auth).status_code == 202
    assert redis_client.llen(keys.history_key("U8")) == length
    assert json.loads(redis_client.lindex(keys.history_key("U8"), 0))["p"] == f"P{length + 4}"


def test_put_updates_an_event_in_place(client, redis_client, auth) -> None:
    event = {"event_id": "evt-7", "user_id": "U7", "product_id": "K2", "event_type": "view"}
    client.post("/v1/interactions", json=event, headers=auth)
    client.post(
        "/v1/interactions", json={"user_id": "U7", "product_id": "K3", "event_type": "view"}, headers=auth
    )
    r = client.put(
        "/v1/interactions/evt-7",
        json={"user_id": "U7", "product_id": "K2", "event_type": "purchase", "quantity": 3},
        headers=auth,
    )
    assert r.status_code == 202 and r.get_json()["event_ids"] == ["evt-7"]
    entries = [e for e in _stream(redis_client) if e["event_id"] == "evt-7"]
    assert [(e["event_type"], e["quantity"]) for e in entries] == [("view", "1"), ("purchase", "3")]
    history = [json.loads(x) for x in redis_client.lrange(keys.history_key("U7"), 0, -1)]
    assert [(h["p"], h["e"], h["q"]) for h in history] == [("K3", "view", 1), ("K2", "purchase", 3)]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"product_id": "K1", "event_type": "view"}, "user_id"),
        ({"user_id": "U1", "product_id": "K 1", "event_type": "view"}, "product_id"),
        ({"user_id": "U1", "product_id": "K1", "event_type": "like"}, "event_type"),
        ({"user_id": "U1", "product_id": "K1", "event_type": "view", "quantity": 0}, "quantity"),
        ({"user_id": "U1", "product_id": "K1", "event_type": "view", "quantity": "2"}, "quantity"),
        ({"user_id": "U1", "product_id": "K1", "event_type": "view", "ts": "yesterday"}, "ts"),
        ({"user_id": "U1", "product_id": "K1", "event_type": "view", "ts": "2999-01-01T00:00:00Z"}, "ts"),
        ({"user_id": "U1", "product_id": "K1", "event_type": "view", "colour": "red"}, "colour"),
        ({"user_id": "U1", "product_id": "K1", "event_type": "view", "event_id": "x" * 65}, "event_id"),
        (
            {"user_id": "recommendations:user:*\r\nFLUSHALL", "product_id": "K1", "event_type": "view"},
            "user_id",
        ),
        ([{"user_id": "U1", "product_id": "K1", "event_type": "view"}, {"user_id": "U1"}], "[1].product_id"),
        ([], "body"),
        ("just a string", "body"),
    ],
)
def test_bad_events_give_400_naming_the_field_and_write_nothing(
    client, redis_client, auth, body, field: str
) -> None:
    r = client.post("/v1/interactions", json=body, headers=auth)
    assert r.status_code == 400
    assert r.get_json()["error"]["field"] == field
    assert redis_client.exists(STREAM) == 0


def test_batch_limit_and_body_size(app, client, auth) -> None:
    event = {"user_id": "U1", "product_id": "K1", "event_type": "view"}
    r = client.post("/v1/interactions", json=[event] * 1001, headers=auth)
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "body"
    app.config["MAX_CONTENT_LENGTH"] = 100
    big = client.post("/v1/interactions", json=[event] * 5, headers=auth)
    assert big.status_code == 413 and big.get_json()["error"]["code"] == "request_entity_too_large"


def test_non_json_and_bad_json(client, auth) -> None:
    r = client.post("/v1/interactions", data="user_id=U1", headers=auth)
    assert r.status_code == 415 and r.get_json()["error"]["field"] == "body"
    r = client.post(
        "/v1/interactions", data="{not json", headers={**auth, "Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "body"


def test_put_path_and_body_ids_must_agree(client, auth) -> None:
    r = client.put(
        "/v1/interactions/evt-1",
        json={"event_id": "evt-2", "user_id": "U1", "product_id": "K1", "event_type": "view"},
        headers=auth,
    )
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "event_id"
    r = client.put("/v1/interactions/bad%20id", json={}, headers=auth)
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "event_id"


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": "test-key-12"}])
def test_writes_require_the_api_key(client, redis_client, headers) -> None:
    event = {"user_id": "U1", "product_id": "K1", "event_type": "view"}
    assert client.post("/v1/interactions", json=event, headers=headers).status_code == 401
    assert client.put("/v1/interactions/e1", json=event, headers=headers).status_code == 401
    assert redis_client.exists(STREAM) == 0


def test_no_configured_key_disables_writes(trained_lake, redis_server, redis_client) -> None:
    from serving import create_app
    from tests.serving.conftest import make_config

    app = create_app(make_config(trained_lake, redis_server, api_key=""))
    r = app.test_client().post(
        "/v1/interactions",
        json={"user_id": "U1", "product_id": "K1", "event_type": "view"},
        headers={"X-API-Key": ""},
    )
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "writes_disabled"


def test_request_id_is_echoed_and_generated(client) -> None:
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    generated = client.get("/healthz", headers={"X-Request-ID": "bad id{}"}).headers["X-Request-ID"]
    assert len(generated) == 32 and int(generated, 16) >= 0
    after = client.get("/healthz").headers["X-Request-ID"]
    assert after != generated and after[:16] == generated[:16]  # same worker: same prefix, next count
    assert int(after[16:], 16) == int(generated[16:], 16) + 1
