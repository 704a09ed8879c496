"""The one helper that starts a private redis-server for the tests and the benchmarks."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from recsys.localredis import LocalRedis, ping, start_redis, stop_redis

pytestmark = [pytest.mark.redis]


def test_server_answers_until_stopped_and_takes_extra_arguments(tmp_path: Path) -> None:
    with LocalRedis(tmp_path / "r", "--appendonly", "yes") as server:
        assert ping(server.port)
        client = redis.Redis.from_url(server.url)
        assert client.config_get("appendonly") == {"appendonly": "yes"}  # extra arguments win over defaults
        assert client.config_get("save") == {"save": ""}
        assert client.config_get("bind") == {"bind": "127.0.0.1"}
        client.close()
        port = server.port
    assert server.proc is None and not ping(port)


def test_a_restart_on_the_same_port_keeps_aof_data(tmp_path: Path) -> None:
    server = LocalRedis(tmp_path, "--appendonly", "yes", "--appendfsync", "always").start()
    client = redis.Redis.from_url(server.url)
    client.set("k", "v")
    client.close()
    server.stop()
    proc = start_redis(server.port, tmp_path, "--appendonly", "yes")  # ready means PONG, not -LOADING
    try:
        assert redis.Redis.from_url(server.url).get("k") == b"v"
    finally:
        stop_redis(proc)


def test_a_server_that_cannot_start_is_an_error(tmp_path: Path) -> None:
    with LocalRedis(tmp_path) as server, pytest.raises(RuntimeError, match="did not answer PING"):
        start_redis(server.port, tmp_path / "other", timeout_s=2.0)  # the port is taken
