"""nginx (conf/nginx/nginx.conf) in front of two gunicorn instances on loopback: both serve, and neither a
crashed instance nor a Redis restart costs a GET."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.client import HTTPException
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.ops.stack import USERS, Stack, http

pytestmark = [pytest.mark.redis, pytest.mark.slow]

PATHS = [f"/v1/users/{u}/recommendations" for u in USERS] + ["/v1/popular", "/v1/products/K1/similar"]


@dataclass(frozen=True)
class Answer:
    at: float
    path: str
    status: int  # 0: no complete HTTP answer (connection error, timeout, or an answer cut short)
    served_by: str
    degraded: bool
    end: float
    error: str  # the exception's class name when status is 0, else ""


def traffic(
    base: str, seconds: float, *, threads: int = 4, at: Callable[[float], None] | None = None
) -> list[Answer]:
    """GETs of ``PATHS`` from ``threads`` threads for ``seconds``; ``at(elapsed)`` runs in the main thread."""
    out: list[Answer] = []
    lock = threading.Lock()
    start = time.monotonic()
    stop = start + seconds

    def worker(k: int) -> None:
        i = k
        while time.monotonic() < stop:
            path = PATHS[i % len(PATHS)]
            i += threads
            t = time.monotonic() - start
            error = ""
            try:
                status, headers = http("GET", base + path, timeout=10)
            except (OSError, HTTPException) as exc:  # a cut answer raises IncompleteRead
                status, headers, error = 0, {}, type(exc).__name__
            end = time.monotonic() - start
            with lock:
                out.append(
                    Answer(t, path, status, headers.get("X-Served-By", ""), "X-Degraded" in headers, end, error)
                )

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    if at is not None:
        at(start)
    for t in pool:
        t.join()
    return out


class _CutShort(BaseHTTPRequestHandler):
    """Sends the headers of a 529-byte answer and only its first bytes, then closes the connection."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "529")
        self.end_headers()
        self.wfile.write(b'{"items": [')

    def log_message(self, format: str, *args: object) -> None:  # keep the test output clean
        pass


def test_an_answer_cut_mid_body_is_a_failed_answer_not_a_dead_client_thread() -> None:
    """``traffic`` against a server that cuts every answer short: every GET is an answer with status 0 and the
    exception's class name, and no client thread dies (the kill test below depends on it)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CutShort)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        answers = traffic(f"http://127.0.0.1:{server.server_address[1]}", 0.5, threads=2)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert answers
    assert {(a.status, a.error, a.served_by) for a in answers} == {(0, "IncompleteRead", "")}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("stack")).start()
    yield s
    s.stop()


def _pid(served_by: str) -> int:
    return int(served_by.rsplit(":", 1)[1])


def test_redis_restart_while_serving_gives_no_5xx(stack: Stack) -> None:
    def restart(start: float) -> None:
        time.sleep(2.0)
        stack.stop_redis()
        time.sleep(2.0)
        stack.start_redis()

    answers = traffic(stack.base, 9.0, at=restart)
    bad = [a for a in answers if a.status != 200]
    assert bad == [], f"{len(bad)} of {len(answers)} GETs failed, first: {bad[:3]}"
    # While Redis was down the answers were degraded (from the worker's memory), not errors.
    degraded = [a for a in answers if a.degraded]
    assert degraded and all(2.0 <= a.at <= 9.0 for a in degraded)
    # After the restart (AOF kept the keys) the answers are normal again.
    assert not any(a.degraded for a in answers if a.at > 7.5)
    status, _ = http(
        "POST",
        stack.base + "/v1/interactions",
        json.dumps({"user_id": "UK1", "product_id": "K2", "event_type": "view"}).encode(),
    )
    assert status == 202


def test_both_instances_serve_and_a_kill_under_load_fails_only_answers_it_cut(stack: Stack) -> None:
    """No GET fails except, at most one per client thread, a GET in flight at the instant of the SIGKILL whose
    answer the killed worker had begun to send: nginx retries a request only while nothing of its answer has
    gone to the client (docs/operations.md, "Load balancing")."""
    pids = [api.pids() for api in stack.apis]
    assert all(pids) and not pids[0] & pids[1]
    killed_at: list[float] = []
    kill_started: list[float] = []

    def kill(start: float) -> None:
        time.sleep(3.0)
        kill_started.append(time.monotonic() - start)
        stack.kill_api(0)
        killed_at.append(time.monotonic() - start)

    threads = 4
    answers = traffic(stack.base, 8.0, threads=threads, at=kill)
    bad = [a for a in answers if a.status != 200]
    cut = [a for a in bad if a.status == 0 and a.at <= killed_at[0] and a.end >= kill_started[0]]
    assert len(cut) <= threads and bad == cut, f"{len(bad)} of {len(answers)} GETs failed, first: {bad[:3]}"
    before = [a for a in answers if a.at < killed_at[0] - 0.5]
    after = [a for a in answers if a.at > killed_at[0] + 0.5]
    served_before = {i for a in before for i, p in enumerate(pids) if _pid(a.served_by) in p}
    assert served_before == {0, 1}, "both instances take traffic before the kill"
    assert after and all(_pid(a.served_by) in pids[1] for a in after)
    print(
        f"\nload balancing: {len(answers)} GETs, {len(before)} before the kill, {len(after)} after, "
        f"{len(cut)} cut at the kill ({', '.join(a.error for a in cut) or 'none'}), no other failed"
    )
