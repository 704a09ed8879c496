"""CPU time per request of the API's cache hit, in process: the steady figure on a shared machine.

    .venv/bin/python bench/serve_cpu.py [--products 100000] [--requests 3000] [--profile]
    .venv/bin/python bench/serve_cpu.py --rank 64 --misses 600 [--gc-freeze]

Builds the world of ``bench/serve.py`` (a private redis-server, product hashes, cached lists of the hit users)
with its ALS bundle at a small rank (the hit path never touches it), then sends ``--requests`` requests
through the Flask test client and reports ``time.process_time`` per request for: a cache hit (each request a
different cached user, as in bench/serve.py), ``/healthz`` of the same app, and ``/ping`` of bench/serve.py's
trivial app. Prometheus runs in multiprocess mode (a temp ``PROMETHEUS_MULTIPROC_DIR``) as under gunicorn.
The test client adds its own cost (building the WSGI environ, reading the response) to every row alike; the
differences between rows are what the app itself spends. ``--profile`` prints the cProfile of the hit run.
The figures are CPU time of this process only (Redis's share is not counted), so they are steady under load.

``--misses N`` then sends N on-demand misses (each a different user with history, none cached; the world's
bundle at ``--rank``) and prints their wall-time p50/p99/max after the first 50, with the pauses of the
garbage collector's full (generation 2) collections during them (``gc.callbacks``), BLAS limited to
``serving.blas_threads`` as in a worker (its ``post_fork`` hook). ``--gc-freeze`` first
runs the gunicorn worker's ``post_worker_init`` hook (``gc.collect()`` then ``gc.freeze()``), as a worker
does once it has loaded the app.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def per_request_ms(send: Callable[[int], None], n: int, repeats: int = 3) -> float:
    """The lowest of ``repeats`` runs of ``n`` requests, in ms of CPU per request (the least disturbed)."""
    for i in range(min(n, 200)):  # warm-up
        send(i)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.process_time()
        for i in range(n):
            send(i)
        best = min(best, (time.process_time() - t0) / n * 1000)
    return best


def time_misses(client: Any, n: int, *, freeze: bool) -> None:
    """Wall time of ``n`` on-demand misses and the full collections' pauses among them."""
    from serving import gunicorn_conf

    gunicorn_conf.post_fork(None, None)  # serving.blas_threads, as in a worker
    if freeze:
        gunicorn_conf.post_worker_init(None)
    pauses: list[float] = []
    started: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if info["generation"] == 2:
            if phase == "start":
                started.append(time.perf_counter())
            elif started:
                pauses.append(time.perf_counter() - started.pop())

    walls = []
    gc.callbacks.append(on_gc)
    try:
        for i in range(n):
            t0 = time.perf_counter()
            r = client.get(f"/v1/users/M{i}/recommendations")
            walls.append(time.perf_counter() - t0)
            assert r.status_code == 200 and r.headers["X-Cache"] == "miss", r.status_code
            if i == 49:
                pauses.clear()  # the figures below are over the requests after the first 50
    finally:
        gc.callbacks.remove(on_gc)
    w = np.array(walls[50:]) * 1000
    print(
        f"{len(w)} misses after the first 50 (gc.freeze: {'yes' if freeze else 'no'}): wall p50 "
        f"{np.percentile(w, 50):.2f} ms, p99 {np.percentile(w, 99):.2f} ms, max {w.max():.2f} ms; "
        f"{len(pauses)} full collections during them, longest {max(pauses, default=0.0) * 1000:.1f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rank", type=int, default=8, help="rank of the world's ALS bundle (misses use it)")
    parser.add_argument("--profile", action="store_true", help="print the cProfile of the hit run")
    parser.add_argument("--profile-sort", default="tottime", help="pstats sort key of --profile")
    parser.add_argument("--profile-callees", default="", help="also print the callees of functions matching this")
    parser.add_argument("--misses", type=int, default=0, help="then time this many on-demand misses (wall, GC)")
    parser.add_argument("--gc-freeze", action="store_true", help="run the worker's post_worker_init hook first")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="recsys-bench-cpu-"))
    prom = tmp / "prom"
    prom.mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(prom)  # before prometheus_client is imported
    from serve import HIT_USERS, MISS_USERS, build_world, trivial_app

    from recsys.config import load_config
    from recsys.localredis import LocalRedis
    from serving import create_app

    try:
        with LocalRedis(tmp / "redis") as server:
            build_world(tmp, server.url, args.products, args.rank)
            env = {
                "RECSYS__REDIS__URL": server.url,
                "RECSYS__LAKE__MODELS_ROOT": str(tmp / "models"),
                "RECSYS__SERVING__API_KEY": "bench-key",
            }
            app = create_app(load_config(ROOT / "conf" / "local.yaml", env=env))
            client, trivial = app.test_client(), trivial_app().test_client()

            def hit(i: int) -> None:
                r = client.get(f"/v1/users/H{i % HIT_USERS}/recommendations")
                assert r.status_code == 200 and r.headers["X-Cache"] == "hit", r.status_code

            rows = {
                "cache hit": per_request_ms(hit, args.requests),
                "/healthz (same app)": per_request_ms(lambda i: client.get("/healthz"), args.requests),
                "/ping (trivial app)": per_request_ms(lambda i: trivial.get("/ping"), args.requests),
            }
            print(f"CPU per request, in process, lowest of 3 runs of {args.requests} (load average "
                  f"{os.getloadavg()[0]:.1f}):")
            for name, ms in rows.items():
                print(f"  {name:<22} {ms:.3f} ms")
            if args.profile:
                prof = cProfile.Profile(time.process_time)
                def hits() -> None:
                    for i in range(args.requests):
                        hit(i)

                prof.runcall(hits)
                stats = pstats.Stats(prof).sort_stats(args.profile_sort)
                stats.print_stats(35)
                if args.profile_callees:
                    stats.print_callees(args.profile_callees)
            if args.misses:
                time_misses(client, min(args.misses, MISS_USERS), freeze=args.gc_freeze)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
