"""The real server: gunicorn runs the factory with the project's config module on a loopback port."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.conftest import PROJECT_ROOT, free_port
from tests.serving.conftest import API_KEY, seed_redis

pytestmark = [pytest.mark.redis, pytest.mark.spark, pytest.mark.slow]


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture
def server(trained_lake, redis_server, redis_client, tmp_path) -> Iterator[str]:
    seed_redis(redis_client)
    port = free_port()
    env = {
        **os.environ,
        "RECSYS_CONF_FILE": "conf/local.yaml",
        "RECSYS__REDIS__URL": redis_server,
        "RECSYS__LAKE__MODELS_ROOT": str(trained_lake / "models"),
        "RECSYS__SERVING__API_KEY": API_KEY,
        "RECSYS__SERVING__WORKERS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:serving.gunicorn_conf",
            "-b",
            f"127.0.0.1:{port}",
            "serving:create_app()",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if _get(base + "/readyz")[0] == 200:
                break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(
            f"gunicorn did not become ready: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}"
        )
    yield base
    proc.terminate()
    proc.wait(timeout=30)


def test_gunicorn_serves_the_factory_and_metrics_add_up_across_workers(server: str) -> None:
    for _ in range(20):
        status, headers, body = _get(server + "/v1/users/UK2/recommendations")
        assert status == 200 and headers["X-Cache"] in ("hit", "miss")
    items = json.loads(body)["items"]
    assert items and items[0]["product_id"] == "K3"
    req = urllib.request.Request(
        server + "/v1/interactions",
        method="POST",
        data=json.dumps({"user_id": "UK2", "product_id": "K3", "event_type": "purchase"}).encode(),
        headers={"Content-Type": "application/json", "X-API-Key": API_KEY},
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 202
    # Whichever worker answers the scrape, the counts are the sum over both workers.
    for _ in range(4):
        text = _get(server + "/metrics")[2].decode()
        assert (
            'recsys_http_request_duration_seconds_count{endpoint="/v1/users/<user_id>/recommendations",'
            'method="GET",status="200"} 20.0'
        ) in text
        hits = float(text.split('recsys_cache_requests_total{result="hit"} ')[1].split()[0])
        misses = float(text.split('recsys_cache_requests_total{result="miss"} ')[1].split()[0])
        assert hits + misses == 20 and 1 <= misses <= 2
    status, _, body = _get(server + "/v1/users/bad%20id/recommendations")
    assert status == 400 and json.loads(body)["error"]["field"] == "user_id"
