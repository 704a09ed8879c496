"""The app factory: no Spark import, no connection at import or creation time, config from a path."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import PROJECT_ROOT


def test_app_imports_without_spark_and_starts_without_redis() -> None:
    code = (
        "import sys\n"
        "from serving import create_app\n"
        "app = create_app('conf/local.yaml')\n"
        "r = app.test_client().get('/v1/popular')\n"
        "print(r.status_code, r.headers.get('X-Degraded'), 'pyspark' in sys.modules)\n"
    )
    env = {
        "RECSYS__REDIS__URL": "redis://127.0.0.1:1/0",
        "RECSYS__LAKE__MODELS_ROOT": "/nonexistent",
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.split() == ["200", "redis-unavailable", "False"]


def test_request_ids_and_served_by_are_drawn_again_in_a_forked_worker() -> None:
    from serving import _Process

    process = _Process("host-a")
    parent = process.current().request_id()
    assert process.current().served_by == f"host-a:{os.getpid()}"
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what a gunicorn worker does on its first request
        os.write(write_end, f"{process.current().request_id()} {process.current().served_by}".encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child_id, child_served_by = os.read(read_end, 200).decode().split()
    assert child_served_by == f"host-a:{pid}"
    assert len(child_id) == 32 and child_id[:16] != parent[:16]
