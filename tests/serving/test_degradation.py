"""Redis stopped mid-test: GET still answers (and says so), writes get 503 with Retry-After, never a 500."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from recsys import keys
from recsys.encoding import encode_list
from tests.conftest import free_port
from tests.serving.conftest import KITCHEN, make_config, seed_redis

pytestmark = [pytest.mark.redis, pytest.mark.spark]


class RedisProcess:
    """A private redis-server this test can stop and restart on the same port."""

    def __init__(self, workdir) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture
def private_redis(tmp_path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    server.stop()


def test_redis_stopped_mid_test(trained_lake, private_redis: RedisProcess) -> None:
    import redis

    from serving import create_app
    from serving.store import BREAKER_S

    client = redis.Redis.from_url(private_redis.url)
    seed_redis(client)
    client.set(keys.user_recs_key("UK3"), encode_list(["K4"], [1.0], [1], created_at=0.0), ex=60)
    app = create_app(make_config(trained_lake, private_redis.url))
    http = app.test_client()
    auth = {"X-API-Key": "test-key-123"}
    event = {"user_id": "UK3", "product_id": "K1", "event_type": "view"}
    assert http.get("/v1/popular").status_code == 200  # this worker now holds a copy of popular:global
    assert http.get("/v1/users/UK3/recommendations").headers["X-Cache"] == "hit"
    assert http.post("/v1/interactions", json=event, headers=auth).status_code == 202

    private_redis.stop()
    known = http.get("/v1/users/UK3/recommendations")
    assert known.status_code == 200 and known.headers["X-Degraded"] == "redis-unavailable"
    body = known.get_json()
    # Without Redis (no history, no details) the batch factor of UK3 still ranks the kitchen cluster first.
    top = body["items"][:6]
    assert {i["product_id"] for i in top} == set(KITCHEN)
    assert all(i["sources"] == ["cf"] and i["title"] is None for i in top)
    unknown = http.get("/v1/users/STRANGER/recommendations")
    assert unknown.status_code == 200 and unknown.headers["X-Degraded"] == "redis-unavailable"
    assert [i["product_id"] for i in unknown.get_json()["items"]] == ["G1", "K1", "G2", "K2", "G3"]
    assert http.get("/v1/popular").status_code == 200
    assert http.get("/v1/products/K1/similar").status_code == 200
    write = http.post("/v1/interactions", json=event, headers=auth)
    assert write.status_code == 503 and write.headers["Retry-After"] == "5"
    assert write.get_json()["error"]["code"] == "store_unavailable"
    put = http.put("/v1/interactions/e-1", json=event, headers=auth)
    assert put.status_code == 503
    ready = http.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["redis"] is False
    assert http.get("/healthz").status_code == 200

    private_redis.start()
    time.sleep(BREAKER_S + 0.1)
    assert http.post("/v1/interactions", json=event, headers=auth).status_code == 202
    back = http.get("/v1/users/UK3/recommendations")
    assert back.status_code == 200 and "X-Degraded" not in back.headers
    assert http.get("/readyz").status_code == 200
