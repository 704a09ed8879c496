"""Serving benchmark: gunicorn on loopback, driven by wrk; prints throughput and latency figures.

    .venv/bin/python bench/serve.py [--products 100000] [--rank 64] [--duration 8]

It builds a throw-away world in a temp folder (a private redis-server, a random ALS bundle of ``--products``
items at ``--rank``, product hashes, popular and neighbour lists, cached lists for the hit users and
histories for the miss users), starts the API and a trivial Flask endpoint under the same gunicorn settings
(``serving.gunicorn_conf``: workers and threads from conf/base.yaml), and measures with wrk:

1. cache hits at saturation and at a fixed rate, against the trivial endpoint in the same run (ratio >= 0.8
   is the target);
2. on-demand misses (each request a different known user with no cached list) at a fixed rate: p50/p99
   (target p99 <= 20 ms with 100k products at rank 64), confirmed as misses by /metrics;
3. POST /v1/interactions throughput at saturation.

wrk has no open-loop mode: the fixed-rate runs pace each connection with a fixed delay between requests, so
the achieved rate is printed next to the target. Everything runs on the same cores (wrk, gunicorn, Redis):
read the figures as a comparison within one run, not as capacity. Bounded in time: about 1 minute per 8 s of
``--duration``.

On a machine shared with other jobs the saturation throughputs swing from run to run (the scheduler, not the
code), so the saturation runs also report CPU time per request: the gunicorn workers', Redis's and wrk's
(``/proc`` through psutil; wrk's from ``RUSAGE_CHILDREN``). With wrk, gunicorn and Redis on the same cores,
throughput at saturation is about cores / (their CPU per request), so the ratio of the two CPU sums is the
steady estimate of the throughput ratio. ``--pairs N`` (default 3) repeats the trivial/hit saturation pair N
times; the median ratio is the figure. The hit runs follow a warm-up as long as one run, so each worker's
near cache (``serving.page_cache_size``; ``--page-cache-size 0`` turns it off) holds most of the 5,000
users' pages, as in steady state; the run prints how many hits it answered.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

API_KEY = "bench-key"
HIT_USERS = 5000
MISS_USERS = 20000
HISTORY_EVENTS = 10

LUA = """
local counter = 0
local n = %(n)d
local delay_ms = %(delay)d
local method = "%(method)s"
local headers = {["X-API-Key"] = "%(key)s", ["Content-Type"] = "application/json"}
request = function()
  counter = counter + 1
  local i = counter %% n
  local path = string.format("%(path)s", i)
  local body = nil
  if method == "POST" then
    body = string.format('{"user_id":"B%%d","product_id":"P%%06d","event_type":"view"}', i, i %% 1000)
  end
  return wrk.format(method, path, headers, body)
end
if delay_ms > 0 then
  delay = function() return delay_ms end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p99_us":%%d,' ..
    '"errors":%%d,"non2xx":%%d}\\n', summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def trivial_app():  # type: ignore[no-untyped-def]
    """The baseline: a Flask app whose one endpoint returns a constant JSON object."""
    from flask import Flask, jsonify

    app = Flask("trivial")

    @app.get("/ping")
    def ping():  # type: ignore[no-untyped-def]
        return jsonify({"status": "ok"})

    return app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f} s")


def build_world(tmp: Path, redis_url: str, n_products: int, rank: int) -> None:
    """The ALS bundle and the Redis keys the load job would have written."""
    import redis

    from recsys import keys
    from recsys.bundle import write_bundle
    from recsys.encoding import SOURCE_BITS, encode_list

    rng = np.random.default_rng(7)
    items = [f"P{i:06d}" for i in range(n_products)]
    users = [f"H{i}" for i in range(HIT_USERS)] + [f"M{i}" for i in range(MISS_USERS)]
    write_bundle(
        tmp / "models" / "als",
        "als-bench",
        item_ids=items,
        item_factors=(rng.standard_normal((n_products, rank)) * 0.1).astype(np.float32),
        user_ids=users,
        user_factors=(rng.standard_normal((len(users), rank)) * 0.1).astype(np.float32),
        meta={"rank": rank, "reg_param": 0.1, "alpha": 1.0, "binary_confidence": True},
    )
    client = redis.Redis.from_url(redis_url)
    pipe = client.pipeline(transaction=False)
    now = time.time()

    def flush(i: int) -> None:
        if i % 5000 == 4999:
            pipe.execute()

    for i, p in enumerate(items):
        pipe.hset(
            keys.product_key(p),
            mapping={
                "title": f"Product {i}",
                "category": f"cat{i % 200}",
                "brand": f"brand{i % 50}",
                "price": f"{1 + i % 97:.2f}",
                "available": "1",
            },
        )
        flush(i)
    for i in range(min(n_products, 20000)):
        nb = rng.integers(0, n_products, 50)
        pipe.set(
            keys.similar_key(items[i]),
            encode_list(
                [items[j] for j in nb], np.linspace(1, 0.5, 50), [SOURCE_BITS["content"]] * 50, created_at=now
            ),
        )
        flush(i)
    top = rng.choice(n_products, 200, replace=False)
    pipe.set(
        keys.popular_key(),
        encode_list(
            [items[j] for j in top], np.linspace(10, 1, 200), [SOURCE_BITS["popular"]] * 200, created_at=now
        ),
    )
    for u in range(HIT_USERS):
        recs = rng.choice(n_products, 100, replace=False)
        pipe.set(
            keys.user_recs_key(f"H{u}"),
            encode_list(
                [items[j] for j in recs], np.linspace(1, 0.1, 100), [SOURCE_BITS["cf"]] * 100, created_at=now
            ),
            ex=86400,
        )
        flush(u)
    for u in range(MISS_USERS):
        events = [
            json.dumps({"p": items[int(j)], "e": "view", "q": 1, "t": now - 3600 * k})
            for k, j in enumerate(rng.integers(0, min(n_products, 20000), HISTORY_EVENTS))
        ]
        pipe.rpush(keys.history_key(f"M{u}"), *events)
        flush(u)
    pipe.execute()


def gunicorn(app: str, port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "python:serving.gunicorn_conf",
            "-b",
            f"127.0.0.1:{port}",
            "--pythonpath",
            str(ROOT / "bench"),
            app,
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def wrk(
    url: str,
    path: str,
    *,
    n: int,
    duration: int,
    connections: int,
    threads: int = 1,
    rate: int = 0,
    method: str = "GET",
    tmp: Path,
) -> dict[str, float]:
    """One wrk run; ``rate`` > 0 paces each connection to about ``rate / connections`` requests/s."""
    delay = int(1000 * connections / rate) if rate else 0
    script = tmp / f"wrk-{time.monotonic_ns()}.lua"
    script.write_text(LUA % {"n": n, "delay": delay, "method": method, "key": API_KEY, "path": path})
    out = subprocess.run(
        [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{duration}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    r = json.loads(line[len("RESULT ") :])
    return {
        "rps": r["requests"] / (r["duration_us"] / 1e6),
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "errors": r["errors"],
        "non2xx": r["non2xx"],
        "requests": r["requests"],
    }


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes and their children (a gunicorn master's
    workers)."""
    import psutil

    total = 0.0
    for pid in pids:
        parent = psutil.Process(pid)
        for proc in [parent, *parent.children(recursive=True)]:
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def children_cpu_seconds() -> float:
    """CPU seconds of this process's finished children (the wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def saturate(url: str, path: str, *, n: int, duration: int, server: int, redis_pid: int, tmp: Path) -> dict[str, float]:
    """A saturation run of wrk, plus CPU milliseconds per request of the gunicorn ``server`` (master and
    workers: ``cpu_ms``), of Redis (``redis_cpu_ms``) and of wrk (``wrk_cpu_ms``)."""
    server0, redis0, wrk0 = cpu_seconds([server]), cpu_seconds([redis_pid]), children_cpu_seconds()
    r = wrk(url, path, n=n, duration=duration, connections=16, threads=2, tmp=tmp)
    per_request_ms = 1000 / r["requests"]
    r["cpu_ms"] = (cpu_seconds([server]) - server0) * per_request_ms
    r["redis_cpu_ms"] = (cpu_seconds([redis_pid]) - redis0) * per_request_ms
    r["wrk_cpu_ms"] = (children_cpu_seconds() - wrk0) * per_request_ms
    return r


def cpu_total_ms(r: dict[str, float]) -> float:
    return r["cpu_ms"] + r["redis_cpu_ms"] + r["wrk_cpu_ms"]


def cache_counts(base: str) -> dict[str, float]:
    """The API's cache counters: ``hit``/``miss`` (Redis lists) and ``near_*`` (the workers' page caches)."""
    with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for name, metric, label in [
        ("hit", "recsys_cache_requests_total", 'result="hit"'),
        ("miss", "recsys_cache_requests_total", 'result="miss"'),
        ("near_hit", "recsys_near_cache_total", 'event="hit"'),
        ("near_miss", "recsys_near_cache_total", 'event="miss"'),
        ("near_stale", "recsys_near_cache_total", 'event="stale"'),
    ]:
        marker = f"{metric}{{{label}}} "
        out[name] = float(text.split(marker)[1].split()[0]) if marker in text else 0.0
    return out


def fmt(name: str, r: dict[str, float]) -> str:
    return (
        f"{name:<34} {r['rps']:>9.0f} req/s  p50 {r['p50_ms']:>7.2f} ms  p99 {r['p99_ms']:>7.2f} ms"
        f"  errors {int(r['errors'])}  non-2xx {int(r['non2xx'])}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--rate", type=int, default=500, help="target rate of the fixed-rate hit runs")
    parser.add_argument("--miss-rate", type=int, default=40, help="target rate of the miss run")
    parser.add_argument(
        "--pairs", type=int, default=3, help="trivial/hit saturation pairs to run (the median ratio is the figure)"
    )
    parser.add_argument(
        "--page-cache-size",
        type=int,
        default=None,
        help="serving.page_cache_size for the API (default: the config's; 0 measures hits read from Redis)",
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None or shutil.which("redis-server") is None:
        print("bench/serve.py needs wrk and redis-server: run `make setup`", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="recsys-bench-serve-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        from recsys.localredis import start_redis

        redis_port = free_port()
        procs.append(start_redis(redis_port, tmp))  # returns once it answers PING
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        t0 = time.monotonic()
        build_world(tmp, redis_url, args.products, args.rank)
        print(
            f"world: {args.products} products at rank {args.rank}, {HIT_USERS} cached users, "
            f"{MISS_USERS} users with history ({time.monotonic() - t0:.0f} s to build)"
        )
        env = {
            **os.environ,
            "RECSYS_CONF_FILE": "conf/local.yaml",
            "RECSYS__REDIS__URL": redis_url,
            "RECSYS__LAKE__MODELS_ROOT": str(tmp / "models"),
            "RECSYS__SERVING__API_KEY": API_KEY,
            "RECSYS__REDIS__TTL_SECONDS": "3600",
            "PYTHONPATH": str(ROOT),
        }
        if args.page_cache_size is not None:
            env["RECSYS__SERVING__PAGE_CACHE_SIZE"] = str(args.page_cache_size)
        api_port, base_port = free_port(), free_port()
        procs.append(
            gunicorn(
                "serving:create_app()",
                api_port,
                {**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prom-api")},
                tmp / "api.log",
            )
        )
        procs.append(
            gunicorn(
                "serve:trivial_app()",
                base_port,
                {**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prom-base")},
                tmp / "base.log",
            )
        )
        api, baseline = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{base_port}"
        wait_http(api + "/readyz")
        wait_http(baseline + "/ping")
        from recsys.config import load_config

        scfg = load_config(ROOT / "conf" / "local.yaml").serving
        print(
            f"gunicorn: {scfg.workers} workers x {scfg.threads} threads, wrk and Redis on the same "
            f"{os.cpu_count()} cores; load average before: {os.getloadavg()[0]:.1f}"
        )
        d = args.duration
        hit_path = "/v1/users/H%d/recommendations"
        # Warm-up, as long as a measured run: each worker's near cache (serving.page_cache_size) fills with
        # the pages it is asked for, as it does in steady state; the first saturation pair shows what is left.
        wrk(api, hit_path, n=HIT_USERS, duration=d, connections=8, tmp=tmp)
        wrk(baseline, "/ping", n=1, duration=2, connections=8, tmp=tmp)
        redis_pid, api_pid, base_pid = (p.pid for p in procs)
        pairs = []
        near_before = cache_counts(api)
        for _ in range(args.pairs):
            trivial = saturate(baseline, "/ping", n=1, duration=d, server=base_pid, redis_pid=redis_pid, tmp=tmp)
            hit = saturate(api, hit_path, n=HIT_USERS, duration=d, server=api_pid, redis_pid=redis_pid, tmp=tmp)
            pairs.append((trivial, hit))
        near_after = cache_counts(api)
        rows = {
            "trivial /ping, saturation": pairs[0][0],
            "cache hit, saturation": pairs[0][1],
            f"trivial /ping, ~{args.rate}/s": wrk(
                baseline, "/ping", n=1, duration=d, connections=8, rate=args.rate, tmp=tmp
            ),
            f"cache hit, ~{args.rate}/s": wrk(
                api, hit_path, n=HIT_USERS, duration=d, connections=8, rate=args.rate, tmp=tmp
            ),
        }
        before = cache_counts(api)
        rows[f"miss (on demand), ~{args.miss_rate}/s"] = wrk(
            api,
            "/v1/users/M%d/recommendations",
            n=MISS_USERS,
            duration=d,
            connections=2,
            rate=args.miss_rate,
            tmp=tmp,
        )
        after = cache_counts(api)
        rows["POST /v1/interactions, saturation"] = wrk(
            api,
            "/v1/interactions",
            n=1_000_000,
            duration=d,
            connections=16,
            threads=2,
            method="POST",
            tmp=tmp,
        )
        print()
        for name, r in rows.items():
            print(fmt(name, r))
        misses = after["miss"] - before["miss"]
        hits = after["hit"] - before["hit"]
        print("\nsaturation pairs: CPU per request (gunicorn + Redis + wrk), throughput ratio, CPU ratio")
        for trivial, hit in pairs:
            print(
                f"  trivial {trivial['cpu_ms']:.3f} + {trivial['redis_cpu_ms']:.3f} + {trivial['wrk_cpu_ms']:.3f} ms,"
                f" hit {hit['cpu_ms']:.3f} + {hit['redis_cpu_ms']:.3f} + {hit['wrk_cpu_ms']:.3f} ms;"
                f" hit/trivial {hit['rps'] / trivial['rps']:.2f} (throughput),"
                f" {cpu_total_ms(trivial) / cpu_total_ms(hit):.2f} (CPU)"
            )
        near = {k: near_after[k] - near_before[k] for k in near_after}
        print(
            f"\ncache hits at saturation: {near['hit']:.0f}, of which {near['near_hit']:.0f} answered from the"
            f" workers' page caches ({near['near_miss']:.0f} page-cache misses, {near['near_stale']:.0f} stale;"
            f" serving.page_cache_size {env.get('RECSYS__SERVING__PAGE_CACHE_SIZE', 'from the config')})"
        )
        ratios = sorted(hit["rps"] / trivial["rps"] for trivial, hit in pairs)
        print(f"\nhit/trivial throughput ratio at saturation: {ratios[len(ratios) // 2]:.2f} (target >= 0.8)")
        print(
            f"miss run: {misses:.0f} misses and {hits:.0f} hits counted by /metrics; "
            f"p99 {rows[f'miss (on demand), ~{args.miss_rate}/s']['p99_ms']:.1f} ms (target <= 20 ms)"
        )
        print(f"load average after: {os.getloadavg()[0]:.1f}")
        return 0
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
