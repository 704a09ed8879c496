"""Local Redis servers for the operations tests: a 3-master Redis Cluster and restartable single nodes."""

from __future__ import annotations

import random
import socket
import subprocess
import time
from pathlib import Path

from recsys.localredis import start_redis, stop_redis

__all__ = ["LocalCluster", "cluster_port", "start_redis", "wait_port"]  # start_redis: used by stack, test_faults


def cluster_port() -> int:
    """A free loopback port whose cluster bus port (port + 10000) is free too (so port <= 55535)."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 45000)
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


def wait_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


class LocalCluster:
    """Three masters with ``--cluster-enabled yes`` joined by ``redis-cli --cluster create`` (no replicas)."""

    def __init__(self, workdir: Path, nodes: int = 3) -> None:
        self.ports = [cluster_port() for _ in range(nodes)]
        self.procs: list[subprocess.Popen] = []
        try:
            for port in self.ports:
                self.procs.append(
                    start_redis(
                        port,
                        workdir / str(port),
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "2000",
                    )
                )
            res = subprocess.run(
                [
                    "redis-cli",
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{p}" for p in self.ports),
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            if res.returncode != 0:
                raise RuntimeError(
                    f"redis-cli --cluster create failed: {res.stdout[-800:]} {res.stderr[-800:]}"
                )
            self._wait_ok()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def _wait_ok(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            states = [
                subprocess.run(
                    ["redis-cli", "-p", str(p), "cluster", "info"], capture_output=True, text=True, timeout=10
                ).stdout
                for p in self.ports
            ]
            if all("cluster_state:ok" in s for s in states):
                return
            time.sleep(0.2)
        raise RuntimeError("the Redis Cluster did not reach cluster_state:ok")

    def stop(self) -> None:
        for proc in self.procs:
            stop_redis(proc)
        self.procs = []
