"""CPU time per request of the API's cache hit, in process: the steady figure on a shared machine.

    .venv/bin/python bench/serve_cpu.py [--products 100000] [--requests 3000] [--profile]

Builds the world of ``bench/serve.py`` (a private redis-server, product hashes, cached lists of the hit users)
with its ALS bundle at a small rank (the hit path never touches it), then sends ``--requests`` requests
through the Flask test client and reports ``time.process_time`` per request for: a cache hit (each request a
different cached user, as in bench/serve.py), ``/healthz`` of the same app, and ``/ping`` of bench/serve.py's
trivial app. Prometheus runs in multiprocess mode (a temp ``PROMETHEUS_MULTIPROC_DIR``) as under gunicorn.
The test client adds its own cost (building the WSGI environ, reading the response) to every row alike; the
differences between rows are what the app itself spends. ``--profile`` prints the cProfile of the hit run.
The figures are CPU time of this process only (Redis's share is not counted), so they are steady under load.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--profile", action="store_true", help="print the cProfile of the hit run")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="recsys-bench-cpu-"))
    prom = tmp / "prom"
    prom.mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(prom)  # before prometheus_client is imported
    from serve import HIT_USERS, build_world, trivial_app

    from recsys.config import load_config
    from recsys.localredis import LocalRedis
    from serving import create_app

    try:
        with LocalRedis(tmp / "redis") as server:
            build_world(tmp, server.url, args.products, 8)
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
                prof.runcall(lambda: [hit(i) for i in range(args.requests)])
                stats = pstats.Stats(prof).sort_stats(os.environ.get("PROFILE_SORT", "tottime"))
                stats.print_stats(35)
                if os.environ.get("PROFILE_CALLEES"):
                    stats.print_callees(os.environ["PROFILE_CALLEES"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
