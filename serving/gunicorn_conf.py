"""gunicorn settings derived from the project config (``serving.*``), for ``make serve`` and the benchmark.

    RECSYS_CONF_FILE=conf/local.yaml gunicorn -c python:serving.gunicorn_conf 'serving:create_app()'

Command-line flags (``-b``, ``-w``) still override these. Prometheus multiprocess mode: the metrics folder is
set here, before any worker imports prometheus_client, emptied when the server starts, and a dead worker's
live gauges are dropped in ``child_exit``.

BLAS threads: each worker limits its BLAS library to ``serving.blas_threads`` threads (default 1) in
``post_fork``, with threadpoolctl (numpy is already loaded in the master: ``serving/__init__`` imports it, so
an environment variable set here would come too late). The on-demand scoring's one matrix-vector product
(100k x 64 float32) takes about 1 ms on one thread; with OpenBLAS's default of one thread per core, the
workers' BLAS threads fight over the same cores and the product took 8-12 ms at p50 and up to 40 ms at p99 on
a 2-core machine (the main cause of the miss path's tail). The same count is exported as
``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` for libraries loaded later; these
override values inherited from the shell, so set ``serving.blas_threads`` (``RECSYS__SERVING__BLAS_THREADS``)
instead. 0 leaves the library's default.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from recsys.config import load_config

_cfg = load_config(os.environ.get("RECSYS_CONF_FILE", "conf/local.yaml"))
if _cfg.serving.blas_threads < 0:
    raise ValueError(f"serving.blas_threads must be >= 0, got {_cfg.serving.blas_threads}")
BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
if _cfg.serving.blas_threads > 0:
    for _var in BLAS_THREAD_VARS:
        os.environ[_var] = str(_cfg.serving.blas_threads)
_owns_multiproc = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _owns_multiproc:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="recsys-prometheus-")
_multiproc = os.environ["PROMETHEUS_MULTIPROC_DIR"]

bind = f"{_cfg.serving.host}:{_cfg.serving.port}"
workers = _cfg.serving.workers
threads = _cfg.serving.threads
worker_class = "gthread" if _cfg.serving.threads > 1 else "sync"
timeout = _cfg.serving.timeout_s
graceful_timeout = _cfg.serving.timeout_s
keepalive = 5
limit_request_line = 4094
limit_request_fields = 50
# Access logging is off here (it costs about 10% of throughput at a few thousand requests/s); `make serve`
# turns it on with --access-logfile -. The request id (X-Request-ID, set by the app on every response)
# is in each access-log line.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'
loglevel = "info"


def on_starting(server: Any) -> None:
    folder = Path(_multiproc)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


def post_fork(server: Any, worker: Any) -> None:
    if _cfg.serving.blas_threads > 0:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=_cfg.serving.blas_threads)


def post_worker_init(worker: Any) -> None:
    # The app and its ALS bundle are loaded: collect once, then move every object alive now out of the
    # collector's generations (gc.freeze), so the full collections of the request path no longer walk the
    # startup heap. Frozen objects are still freed by reference counting when dropped.
    gc.collect()
    gc.freeze()


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    if _owns_multiproc:
        shutil.rmtree(_multiproc, ignore_errors=True)
