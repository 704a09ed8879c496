"""A loopback serving stack for the operations tests and bench/soak.py: Redis, gunicorn instances, nginx.

Spark-free: Redis is seeded like the load job would (cached lists, product hashes, similar and popular
lists, histories), and the instances run without an ALS bundle (misses blend content and popular lists).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import redis

from recsys import keys
from recsys.bundle import write_bundle
from recsys.encoding import SOURCE_BITS, encode_list
from tests.conftest import PROJECT_ROOT, free_port
from tests.ops.cluster import start_redis, wait_port
from tests.serving.conftest import API_KEY, GARDEN, KITCHEN, seed_redis

NGINX_CONF = PROJECT_ROOT / "conf" / "nginx" / "nginx.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
USERS = [f"UK{i}" for i in range(4)] + [f"UG{i}" for i in range(4)]


def http(
    method: str, url: str, body: bytes | None = None, timeout: float = 10.0
) -> tuple[int, dict[str, str]]:
    """``(status, headers)`` of one request; HTTP errors are answers, not exceptions."""
    headers = {"Content-Type": "application/json", "X-API-Key": API_KEY} if body is not None else {}
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            return r.status, dict(r.headers)
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code, dict(exc.headers)


def seed(client: redis.Redis) -> None:
    """The tests' catalogue plus a cached list for every seeded user (so a GET is a cache hit)."""
    seed_redis(client)
    now = time.time()
    for u in USERS:
        group = ["K1", "K2", "K3"] if u.startswith("UK") else ["G1", "G2", "G3"]
        client.set(
            keys.user_recs_key(u),
            encode_list(group, [0.9, 0.8, 0.7], [SOURCE_BITS["cf"]] * 3, created_at=now),
            ex=3600,
        )


def write_tiny_bundle(models_root: Path) -> Path:
    """A published ALS bundle (rank 4, seeded factors) for the seeded users and the 12 catalogue products.

    Kitchen users and products share one direction of the factor space and garden ones another, so the
    on-demand path (fold-in and scoring on a miss) ranks the user's own group first.
    """
    rng = np.random.default_rng(7)
    products = KITCHEN + GARDEN
    axis = {"K": np.array([1.0, 0.2, 0.0, 0.0]), "G": np.array([0.0, 0.0, 1.0, 0.2])}
    items = np.stack([axis[p[0]] + 0.05 * rng.standard_normal(4) for p in products])
    users = np.stack(
        [axis["K" if u.startswith("UK") else "G"] + 0.05 * rng.standard_normal(4) for u in USERS]
    )
    return write_bundle(
        models_root / "als",
        "tiny-v1",
        item_ids=products,
        item_factors=items,
        user_ids=USERS,
        user_factors=users,
        meta={
            "rank": 4,
            "reg_param": 0.05,
            "alpha": 1.0,
            "binary_confidence": True,
            "created_at": time.time(),
        },
    )


@dataclass
class Instance:
    port: int
    proc: subprocess.Popen

    def pids(self) -> set[int]:
        import psutil

        try:
            return {self.proc.pid} | {c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            return set()


@dataclass
class Stack:
    """Redis, N gunicorn instances of ``serving:create_app()``, nginx (conf/nginx/nginx.conf, new ports)."""

    workdir: Path
    instances: int = 2
    workers: int = 2
    redis_port: int = field(default_factory=free_port)
    nginx_port: int = field(default_factory=free_port)
    redis_proc: subprocess.Popen | None = None
    apis: list[Instance] = field(default_factory=list)
    nginx: subprocess.Popen | None = None

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}"

    def start(self) -> Stack:
        try:
            self.start_redis()
            client = redis.Redis.from_url(self.redis_url)
            seed(client)
            client.close()
            write_tiny_bundle(self.workdir / "models")
            for i in range(self.instances):
                self.apis.append(self._start_api(i))
            self._start_nginx()
        except BaseException:
            self.stop()
            raise
        return self

    def start_redis(self) -> None:
        # AOF on, as conf/redis.conf ships it: a restart keeps the keys.
        self.redis_proc = start_redis(
            self.redis_port, self.workdir / "redis", "--appendonly", "yes", "--appendfsync", "everysec"
        )

    def stop_redis(self) -> None:
        if self.redis_proc is not None:
            self.redis_proc.terminate()
            self.redis_proc.wait(timeout=20)
            self.redis_proc = None

    def _start_api(self, i: int) -> Instance:
        port = free_port()
        env = {
            **os.environ,
            "RECSYS_CONF_FILE": "conf/local.yaml",
            "RECSYS__REDIS__URL": self.redis_url,
            "RECSYS__REDIS__SOCKET_TIMEOUT_S": "0.5",
            "RECSYS__LAKE__MODELS_ROOT": str(self.workdir / "models"),
            "RECSYS__SERVING__API_KEY": API_KEY,
            "RECSYS__SERVING__WORKERS": str(self.workers),
            "PROMETHEUS_MULTIPROC_DIR": str(self.workdir / f"prometheus-{i}"),
        }
        log = open(self.workdir / f"gunicorn-{i}.log", "wb")  # noqa: SIM115 - lives as long as the process
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
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if http("GET", f"http://127.0.0.1:{port}/healthz", timeout=2)[0] == 200:
                    return Instance(port, proc)
            except OSError:
                time.sleep(0.2)
            if proc.poll() is not None:
                break
        proc.kill()
        raise RuntimeError(
            f"gunicorn {i} did not start: {(self.workdir / f'gunicorn-{i}.log').read_text()[-2000:]}"
        )

    def _start_nginx(self) -> None:
        conf = NGINX_CONF.read_text()
        upstreams = re.findall(r"server 127\.0\.0\.1:(\d+)", conf)
        if len(upstreams) < len(self.apis):
            raise RuntimeError(f"{NGINX_CONF} lists {len(upstreams)} upstreams, need {len(self.apis)}")
        for old, api in zip(upstreams, self.apis, strict=False):
            conf = conf.replace(f"server 127.0.0.1:{old} ", f"server 127.0.0.1:{api.port} ", 1)
        conf = conf.replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{self.nginx_port};")
        conf = conf.replace("worker_processes auto;", "worker_processes 1;")
        prefix = self.workdir / "nginx"
        prefix.mkdir(exist_ok=True)
        (prefix / "nginx.conf").write_text(conf)
        log = open(self.workdir / "nginx.log", "wb")  # noqa: SIM115 - lives as long as the process
        self.nginx = subprocess.Popen(
            [NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_port(self.nginx_port)

    def kill_api(self, i: int) -> None:
        """SIGKILL of instance ``i``'s whole process group (master and workers), as a crashed host would."""
        api = self.apis[i]
        if api.proc.poll() is None:
            os.killpg(api.proc.pid, signal.SIGKILL)
            api.proc.wait(timeout=20)

    def stop(self) -> None:
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.terminate()
            self.nginx.wait(timeout=20)
        for api in self.apis:
            if api.proc.poll() is None:
                api.proc.terminate()
                try:
                    api.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(api.proc.pid, signal.SIGKILL)
                    api.proc.wait(timeout=10)
        self.stop_redis()
