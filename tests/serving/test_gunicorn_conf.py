"""serving.gunicorn_conf: settings derived from the config, applied in the gunicorn master and its workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import PROJECT_ROOT

# What a worker sees: the config module imported in the master, then its post_fork hook in the worker.
PROBE = (
    "import json, os; import numpy; import serving.gunicorn_conf as c; "
    "from threadpoolctl import threadpool_info; c.post_fork(None, None); "
    "print(json.dumps({'env': [os.environ.get(v) for v in c.BLAS_THREAD_VARS], "
    "'threads': sorted({p['num_threads'] for p in threadpool_info() if p['user_api'] == 'blas'})}))"
)


def _probe(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    return subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=PROJECT_ROOT,
        env={**inherited, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"), **env},
        capture_output=True,
        text=True,
    )


def test_workers_use_the_configured_blas_threads(tmp_path: Path) -> None:
    out = _probe(tmp_path, OPENBLAS_NUM_THREADS="8", RECSYS__SERVING__BLAS_THREADS="1")
    assert out.returncode == 0, out.stderr
    # numpy was loaded before the config module: the hook, not the variable, sets the pool; the config wins.
    assert json.loads(out.stdout) == {"env": ["1", "1", "1"], "threads": [1]}


def test_blas_threads_zero_leaves_the_library_alone(tmp_path: Path) -> None:
    out = _probe(tmp_path, OPENBLAS_NUM_THREADS="2", RECSYS__SERVING__BLAS_THREADS="0")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"env": ["2", None, None], "threads": [2]}


def test_negative_blas_threads_is_an_error_naming_the_key(tmp_path: Path) -> None:
    out = _probe(tmp_path, RECSYS__SERVING__BLAS_THREADS="-1")
    assert out.returncode != 0 and "serving.blas_threads must be >= 0" in out.stderr


def test_workers_freeze_their_startup_heap_after_loading_the_app(tmp_path: Path) -> None:
    probe = (
        "import gc, json; import serving.gunicorn_conf as c; from serving import create_app; "
        "app = create_app('conf/local.yaml'); before = gc.get_freeze_count(); c.post_worker_init(None); "
        "print(json.dumps([before, gc.get_freeze_count(), len(gc.get_objects())]))"
    )
    (tmp_path / "prom").mkdir()
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=PROJECT_ROOT,
        env={
            **os.environ,
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
            "RECSYS__REDIS__URL": "redis://127.0.0.1:1/0",
        },
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    before, frozen, tracked = json.loads(out.stdout.splitlines()[-1])
    # Everything alive after the app loaded leaves the generations a full collection walks.
    assert before == 0 and frozen > 10_000 and tracked < frozen / 10
