"""Prometheus metrics, correct across gunicorn workers.

Under gunicorn, ``serving.gunicorn_conf`` sets ``PROMETHEUS_MULTIPROC_DIR`` before any worker imports
prometheus_client: every worker then writes its samples to memory-mapped files in that folder and ``/metrics``
(served by whichever worker) aggregates them with ``MultiProcessCollector``. Without the variable (tests, the
Flask dev server) the app's own registry is exposed.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from recsys.bundle import AlsBundle

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
M = TypeVar("M", Counter, Gauge, Histogram)
REDIS_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.0)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The API's metrics, registered in a registry of their own (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_duration = Histogram(
            "recsys_http_request_duration_seconds",
            "HTTP request latency by endpoint, method and status",
            ["endpoint", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.cache_requests = Counter(
            "recsys_cache_requests_total",
            "Recommendation reads by cache result",
            ["result"],
            registry=r,
        )
        self.near_cache = Counter(
            "recsys_near_cache_total",
            "Worker near-cache lookups (hit, miss, stale) and resets (every page dropped)",
            ["event"],
            registry=r,
        )
        self.ondemand_seconds = Histogram(
            "recsys_ondemand_scoring_seconds",
            "Time to compute a user's list on a cache miss",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.redis_errors = Counter(
            "recsys_redis_errors_total",
            "Failed Redis calls by operation",
            ["operation"],
            registry=r,
        )
        self.redis_duration = Histogram(
            "recsys_redis_command_duration_seconds",
            "Latency of the API's Redis calls by operation (a pipeline or script counts as one call)",
            ["command"],
            buckets=REDIS_BUCKETS,
            registry=r,
        )
        self.stream_pending = Gauge(
            "recsys_stream_pending_entries",
            "Interactions in the Redis Stream not yet committed to the lake (consumer-group lag + pending)",
            multiprocess_mode="livemostrecent",
            registry=r,
        )
        self.degraded = Counter(
            "recsys_degraded_responses_total",
            "Answers given without Redis",
            ["endpoint"],
            registry=r,
        )
        self.events = Counter(
            "recsys_events_total",
            "Interaction events accepted by result",
            ["result"],
            registry=r,
        )
        self.model_info = Gauge(
            "recsys_model_info",
            "The ALS bundle loaded by each worker (value 1)",
            ["model_version"],
            multiprocess_mode="liveall",
            registry=r,
        )
        self.model_created = Gauge(
            "recsys_model_created_timestamp_seconds",
            "Creation time of the loaded ALS bundle (epoch s)",
            multiprocess_mode="livemax",
            registry=r,
        )
        self.model_age = Gauge(
            "recsys_model_age_seconds",
            "Age of the loaded ALS bundle at the last scrape",
            multiprocess_mode="livemostrecent",
            registry=r,
        )
        self._created_at: float | None = None
        self._version: str | None = None
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: M, *labels: str) -> M:
        """``metric.labels(*labels)``, looked up once per label set (``labels`` takes a lock and builds a key
        on every call; the request path asks for the same few children thousands of times a second)."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return cast(M, found)

    def model_loaded(self, bundle: AlsBundle) -> None:
        if self._version is not None:
            self.model_info.labels(self._version).set(0)
        self._version = bundle.model_version
        self.model_info.labels(bundle.model_version).set(1)
        self._created_at = _created_at(bundle)
        self.model_created.set(self._created_at)

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition (aggregated over workers in multiprocess mode) and its content type."""
        if self._created_at is not None:
            self.model_age.set(time.time() - self._created_at)
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _created_at(bundle: AlsBundle) -> float:
    """The bundle's ``created_at`` (ISO text or epoch seconds), else its folder's modification time."""
    created = bundle.meta.get("created_at")
    try:
        if isinstance(created, int | float):
            return float(created)
        if isinstance(created, str):
            parsed = datetime.fromisoformat(created.replace("Z", "+00:00"))
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    except ValueError:
        pass
    return bundle.path.stat().st_mtime
