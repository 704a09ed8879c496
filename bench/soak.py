"""Soak test: mixed GET and POST at a fixed rate through nginx on loopback; errors, latency and memory.

    .venv/bin/python bench/soak.py [--minutes 5] [--rate 100] [--instances 2] [--workers 2]

It starts the loopback stack of the operations tests (``tests/ops/stack.py``: a private redis-server with AOF,
a tiny published ALS bundle, ``--instances`` gunicorn instances of ``serving:create_app()`` with
``--workers`` each, and nginx with ``conf/nginx/nginx.conf``), then sends ``--rate`` requests per second for
``--minutes`` minutes from a fixed schedule (request i is due at start + i / rate; a pool of keep-alive
client threads takes them in order, so a slow server shows as latency, not as a lower rate):

- 50% GET /v1/users/{id}/recommendations (seeded users: hits, or misses after a purchase invalidated the list;
  unseeded users: cold start), 15% GET /v1/popular, 15% GET /v1/products/{id}/similar,
- 20% POST /v1/interactions (a view or, one in four, a purchase, which invalidates the user's cached list).

Printed per minute: requests, errors (any status other than 200 for a GET or 202 for a POST, or no answer),
GET and POST p50/p99 (from the send to the last byte) and the achieved rate. Memory: the resident set size of
every process of the stack (nginx, each gunicorn master and worker, redis-server) after a 10 s warm-up and at
the end, and per minute. The figures and the machine's load average are written to ``build/soak.json``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.ops.stack import USERS, Stack  # noqa: E402
from tests.serving.conftest import API_KEY, GARDEN, KITCHEN  # noqa: E402

PRODUCTS = KITCHEN + GARDEN
WARMUP_S = 10.0


@dataclass(frozen=True)
class Sample:
    due: float
    method: str
    status: int
    seconds: float


def request_for(i: int, rng: random.Random) -> tuple[str, str, bytes | None]:
    """The ``i``-th request of the mix: method, path and body."""
    r = rng.random()
    if r < 0.5:
        user = rng.choice(USERS) if rng.random() < 0.8 else f"NEW{rng.randrange(1000)}"
        return "GET", f"/v1/users/{user}/recommendations", None
    if r < 0.65:
        return "GET", "/v1/popular" + ("?category=Kitchen" if rng.random() < 0.3 else ""), None
    if r < 0.8:
        return "GET", f"/v1/products/{rng.choice(PRODUCTS)}/similar", None
    event = {
        "event_id": f"soak-{i}",
        "user_id": rng.choice(USERS),
        "product_id": rng.choice(PRODUCTS),
        "event_type": "purchase" if rng.random() < 0.25 else "view",
    }
    return "POST", "/v1/interactions", json.dumps(event).encode()


def client_loop(port: int, jobs: queue.Queue, out: list[Sample], lock: threading.Lock, t0: float) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    while True:
        job = jobs.get()
        if job is None:
            conn.close()
            return
        due, method, path, body = job
        wait = t0 + due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        headers = {"Content-Type": "application/json", "X-API-Key": API_KEY} if body else {}
        started = time.monotonic()
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException):
            status = 0
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        sample = Sample(due, method, status, time.monotonic() - started)
        with lock:
            out.append(sample)


def rss_mb(stack: Stack) -> dict[str, float]:
    """Resident memory (MB) of every process of the stack, by role and pid."""
    roots = {"redis": stack.redis_proc, "nginx": stack.nginx}
    roots |= {f"api{i}": api.proc for i, api in enumerate(stack.apis)}
    out: dict[str, float] = {}
    for role, proc in roots.items():
        if proc is None:
            continue
        try:
            parent = psutil.Process(proc.pid)
            for p in [parent, *parent.children(recursive=True)]:
                kind = "master" if p.pid == parent.pid else "worker"
                out[f"{role}-{kind}-{p.pid}"] = round(p.memory_info().rss / 2**20, 1)
        except psutil.NoSuchProcess:
            continue
    return out


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q) * 1000) if values else float("nan")


def summarize(samples: list[Sample], minute: int, total_s: float) -> dict[str, object]:
    """Figures of the ``minute``-th measured minute (the last one may be shorter: ``total_s`` ends it)."""
    end = min((minute + 1) * 60, total_s)
    window = [s for s in samples if minute * 60 <= s.due - WARMUP_S < end]
    gets = [s.seconds for s in window if s.method == "GET"]
    posts = [s.seconds for s in window if s.method == "POST"]
    errors = [s for s in window if s.status != (200 if s.method == "GET" else 202)]
    return {
        "minute": minute + 1,
        "requests": len(window),
        "errors": len(errors),
        "error_statuses": sorted({s.status for s in errors}),
        "get_p50_ms": round(percentile(gets, 50), 2),
        "get_p99_ms": round(percentile(gets, 99), 2),
        "post_p50_ms": round(percentile(posts, 50), 2),
        "post_p99_ms": round(percentile(posts, 99), 2),
        "rate": round(len(window) / max(end - minute * 60, 1e-9), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="measured minutes (after a 10 s warm-up)")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--instances", type=int, default=2, help="gunicorn instances behind nginx")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per instance")
    parser.add_argument("--clients", type=int, default=16, help="client threads (keep-alive connections)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the request mix")
    parser.add_argument("--out", default=str(ROOT / "build" / "soak.json"), help="where the figures go")
    args = parser.parse_args()
    if args.rate <= 0 or args.minutes <= 0:
        parser.error("--rate and --minutes must be positive")

    workdir = Path(tempfile.mkdtemp(prefix="recsys-soak-"))
    stack = Stack(workdir, instances=args.instances, workers=args.workers).start()
    load_start = os.getloadavg()
    rng = random.Random(args.seed)
    total_s = WARMUP_S + args.minutes * 60
    n = int(total_s * args.rate)
    jobs: queue.Queue = queue.Queue()
    samples: list[Sample] = []
    lock = threading.Lock()
    t0 = time.monotonic() + 0.5
    pool = [
        threading.Thread(target=client_loop, args=(stack.nginx_port, jobs, samples, lock, t0), daemon=True)
        for _ in range(args.clients)
    ]
    for t in pool:
        t.start()
    for i in range(n):
        jobs.put((i / args.rate, *request_for(i, rng)))
    memory: list[dict[str, Any]] = []
    try:
        time.sleep(max(0.0, t0 + WARMUP_S - time.monotonic()))
        memory.append({"at_s": 0, "rss_mb": rss_mb(stack)})
        minutes = int(np.ceil(args.minutes))
        for m in range(1, minutes + 1):
            time.sleep(max(0.0, t0 + WARMUP_S + min(m * 60, args.minutes * 60) - time.monotonic()))
            memory.append({"at_s": min(m * 60, args.minutes * 60), "rss_mb": rss_mb(stack)})
            print(json.dumps(summarize(samples, m - 1, args.minutes * 60)), flush=True)
        for _ in pool:
            jobs.put(None)
        for t in pool:
            t.join(timeout=30)
    finally:
        stack.stop()
    load_end = os.getloadavg()
    per_minute = [summarize(samples, m, args.minutes * 60) for m in range(int(np.ceil(args.minutes)))]
    start_mem, end_mem = memory[0]["rss_mb"], memory[-1]["rss_mb"]
    measured = [s for s in samples if s.due >= WARMUP_S]
    report = {
        "rate": args.rate,
        "minutes": args.minutes,
        "instances": args.instances,
        "workers": args.workers,
        "requests": len(measured),
        "errors": sum(1 for s in measured if s.status != (200 if s.method == "GET" else 202)),
        "per_minute": per_minute,
        "memory_mb": {"start": start_mem, "end": end_mem, "per_minute": memory},
        "loadavg_start": load_start,
        "loadavg_end": load_end,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    errors = report["errors"]
    print(f"\n{report['requests']} requests at {args.rate:g}/s for {args.minutes:g} min, {errors} errors")
    print("minute  requests  errors  GET p50/p99 ms   POST p50/p99 ms  rate/s")
    for row in per_minute:
        print(
            f"{row['minute']:>6}  {row['requests']:>8}  {row['errors']:>6}  {row['get_p50_ms']:>6} / "
            f"{row['get_p99_ms']:<7}  {row['post_p50_ms']:>6} / {row['post_p99_ms']:<7}  {row['rate']:>6}"
        )
    print("memory (RSS MB) start -> end:")
    for proc in start_mem:
        print(f"  {proc:<28} {start_mem[proc]:>7} -> {end_mem.get(proc, float('nan')):>7}")
    print(f"load average {load_start[0]:.1f} at start, {load_end[0]:.1f} at the end ({os.cpu_count()} cores)")
    return 0 if report["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
