"""The serving API: ``create_app(config)`` builds a Flask app; gunicorn runs the factory.

    gunicorn -c python:serving.gunicorn_conf 'serving:create_app()'

No Spark here: the app imports numpy, pandas, redis-py and the Spark-free ``recsys`` package only.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import socket
import time
from pathlib import Path

from flask import Flask, g, has_request_context, request
from flask.wrappers import Response

from recsys import redis_client
from recsys.config import Config, load_config
from serving.api import register_blueprints
from serving.errors import register_error_handlers
from serving.json_provider import OrjsonProvider
from serving.metrics import Metrics
from serving.model import ModelHolder
from serving.nearcache import NearCache
from serving.ondemand import Recommender
from serving.services import EXTENSION, Services
from serving.store import RedisStore, StoreUnavailable, open_client

# The config file read when create_app gets none (gunicorn's factory call): documented in docs/serving.md.
CONF_ENV = "RECSYS_CONF_FILE"
DEFAULT_CONF = "conf/local.yaml"
REQUEST_ID_HEADER = "X-Request-ID"
SERVED_BY_HEADER = "X-Served-By"
_REQUEST_ID_ENV = "HTTP_X_REQUEST_ID"  # REQUEST_ID_HEADER as the WSGI environ names it
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")

log = logging.getLogger(__name__)


class _Process:
    """Per-process values of the request hooks, set again after a fork (gunicorn forks after the import).

    ``served_by`` is the ``X-Served-By`` value (host and pid); :meth:`request_id` gives ids for requests
    that bring none: a random 64-bit prefix per process and a counter, unique like a uuid4 in practice and
    cheaper (no random draw and no UUID object per request; a cache hit costs well under a millisecond).
    """

    def __init__(self, host: str) -> None:
        self.host = host
        self.pid = -1
        self.served_by = ""
        self._prefix = ""
        self._count = itertools.count()

    def current(self) -> _Process:
        pid = os.getpid()
        if pid != self.pid:
            self.pid, self.served_by = pid, f"{self.host}:{pid}"
            self._prefix, self._count = os.urandom(8).hex(), itertools.count()
        return self

    def request_id(self) -> str:
        return f"{self._prefix}{next(self._count):016x}"


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every log record (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


def create_app(config: Config | str | os.PathLike[str] | None = None) -> Flask:
    """Builds the API.

    Args:
        config: A loaded :class:`Config`, the path of an environment file, or ``None`` for the file named by
            ``$RECSYS_CONF_FILE`` (default ``conf/local.yaml``).

    Returns:
        The Flask app; its Redis client connects lazily, so the app starts while Redis is down.

    Example:
        >>> app = create_app(load_config("conf/local.yaml"))
        >>> app.test_client().get("/healthz").status_code
        200
    """
    cfg = (
        config
        if isinstance(config, Config)
        else load_config(config or os.environ.get(CONF_ENV, DEFAULT_CONF))
    )
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = cfg.serving.max_body_bytes
    app.json = OrjsonProvider(app)
    app.json.sort_keys = False
    metrics = Metrics()
    client = open_client(cfg.redis)
    near = None
    if cfg.serving.page_cache_size > 0 and cfg.serving.page_cache_s > 0 and not cfg.redis.cluster:
        near_events = {e: metrics.child(metrics.near_cache, e) for e in ("hit", "miss", "stale", "reset")}
        near = NearCache(
            lambda: redis_client.open_client(
                cfg.redis.url, cluster=False, socket_timeout_s=cfg.redis.socket_timeout_s, protocol=2
            ),
            max_pages=cfg.serving.page_cache_size,
            max_age_s=cfg.serving.page_cache_s,
            on_event=lambda event: near_events[event].inc(),
        )
    store = RedisStore(
        client,
        cfg.serving,
        cfg.redis.ttl_seconds,
        on_error=lambda op: metrics.child(metrics.redis_errors, op).inc(),
        on_timing=lambda op, seconds: metrics.child(metrics.redis_duration, op).observe(seconds),
        cluster=cfg.redis.cluster,
        near=near,
    )

    def pointer() -> str | None:
        try:
            return store.model_pointer()
        except StoreUnavailable:
            return None

    models = ModelHolder(
        Path(cfg.model_path("als")), cfg.serving.model_check_s, pointer=pointer, on_load=metrics.model_loaded
    )
    app.extensions[EXTENSION] = Services(cfg, store, models, Recommender(cfg, store, models), metrics)
    _install_request_hooks(app, metrics)
    register_error_handlers(app)
    register_blueprints(app)
    models.get()
    return app


def _install_request_hooks(app: Flask, metrics: Metrics) -> None:
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())

    process = _Process(socket.gethostname())

    # Both hooks run on every request, the cache hit's included: each context proxy costs a lookup per
    # attribute, so g and request are resolved once per hook, and the request id is read from the WSGI
    # environ (request.headers rebuilds the environ key on each get).
    @app.before_request
    def _start() -> None:
        sent = request.environ.get(_REQUEST_ID_ENV, "")
        ctx = g._get_current_object()
        ctx.request_id = sent if _REQUEST_ID_RE.match(sent) else process.current().request_id()
        ctx.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        ctx = g._get_current_object()
        headers = response.headers
        headers[REQUEST_ID_HEADER] = ctx.get("request_id", "-")
        # Which process answered (behind a load balancer): host and worker pid, for tracing and the LB test.
        headers[SERVED_BY_HEADER] = process.current().served_by
        started = ctx.get("started")
        if started is not None:
            req = request._get_current_object()  # type: ignore[attr-defined]
            rule = req.url_rule
            endpoint = rule.rule if rule is not None else "unmatched"
            metrics.child(metrics.request_duration, endpoint, req.method, str(response.status_code)).observe(
                time.perf_counter() - started
            )
        return response
