"""The app factory: no Spark import, no connection at import or creation time, config from a path."""

from __future__ import annotations

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
