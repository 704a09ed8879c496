"""gunicorn settings derived from the project config (``serving.*``), for ``make serve`` and the benchmark.

    RECSYS_CONF_FILE=conf/local.yaml gunicorn -c python:serving.gunicorn_conf 'serving:create_app()'

Command-line flags (``-b``, ``-w``) still override these. Prometheus multiprocess mode: the metrics folder is
set here, before any worker imports prometheus_client, emptied when the server starts, and a dead worker's
live gauges are dropped in ``child_exit``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from recsys.config import load_config

_cfg = load_config(os.environ.get("RECSYS_CONF_FILE", "conf/local.yaml"))
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


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    if _owns_multiproc:
        shutil.rmtree(_multiproc, ignore_errors=True)
