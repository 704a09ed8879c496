"""Run metrics of the batch jobs, pushed to a Prometheus Pushgateway when ``metrics.pushgateway_url`` is set.

A batch job lives for minutes, so Prometheus cannot scrape it: at the end of a run the job pushes to the group
``job=<job name>`` (a POST: each metric name pushed replaces that name's series from the previous run, and a
failed run, which pushes no last-success time, leaves the previous success time in place). The series carry
no ``job`` label of their own; the grouping key adds it, and the scrape keeps it (``honor_labels: true`` in
conf/prometheus).

=========================================== ===== ============================================
series                                      type  meaning
=========================================== ===== ============================================
recsys_batch_stage_seconds{stage}           gauge seconds of each stage of the last run
recsys_batch_rows{table}                    gauge rows read or written per table by the last run
recsys_batch_keys_loaded{kind}              gauge Redis keys written per kind by the last load
recsys_batch_duration_seconds               gauge wall-clock seconds of the last run
recsys_batch_last_success_timestamp_seconds gauge end of the last successful run (epoch s)
=========================================== ===== ============================================

Example:
    >>> push_run_metrics("http://pushgateway:9091", job="pipeline", stage_seconds={"als": 812.4},
    ...                  rows={"interactions": 541909}, keys_loaded={"user": 4372})
    True
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway

log = logging.getLogger(__name__)

BATCH_METRICS: dict[str, tuple[str, ...]] = {
    "recsys_batch_stage_seconds": ("stage",),
    "recsys_batch_rows": ("table",),
    "recsys_batch_keys_loaded": ("kind",),
    "recsys_batch_duration_seconds": (),
    "recsys_batch_last_success_timestamp_seconds": (),
}


def run_registry(
    *,
    stage_seconds: Mapping[str, float],
    rows: Mapping[str, int] | None = None,
    keys_loaded: Mapping[str, int] | None = None,
    success: bool = True,
    now: float | None = None,
    duration_s: float | None = None,
) -> CollectorRegistry:
    """A registry holding one run's metrics (see the module table).

    Args:
        stage_seconds: Seconds per stage (``Stages.seconds``).
        rows: Rows per table.
        keys_loaded: Redis keys written per kind.
        success: The run succeeded; only then is the last-success series present.
        now: The run's end (epoch s); the current time by default.
        duration_s: The run's wall-clock seconds; by default the sum of ``stage_seconds`` (stages that ran
            side by side, as the pipeline's als and content, need it given).

    Example:
        >>> reg = run_registry(stage_seconds={"fit": 1.5})
        >>> reg.get_sample_value("recsys_batch_stage_seconds", {"stage": "fit"})
        1.5
    """
    registry = CollectorRegistry()
    names = [n for n in BATCH_METRICS if success or n != "recsys_batch_last_success_timestamp_seconds"]
    g = {name: Gauge(name, _HELP[name], list(BATCH_METRICS[name]), registry=registry) for name in names}
    for stage, seconds in stage_seconds.items():
        g["recsys_batch_stage_seconds"].labels(stage).set(float(seconds))
    for table, n in (rows or {}).items():
        g["recsys_batch_rows"].labels(table).set(int(n))
    for kind, n in (keys_loaded or {}).items():
        g["recsys_batch_keys_loaded"].labels(kind).set(int(n))
    g["recsys_batch_duration_seconds"].set(float(sum(stage_seconds.values()) if duration_s is None else duration_s))
    if success:
        g["recsys_batch_last_success_timestamp_seconds"].set(time.time() if now is None else now)
    return registry


def push_run_metrics(
    gateway_url: str,
    *,
    job: str,
    stage_seconds: Mapping[str, float],
    rows: Mapping[str, int] | None = None,
    keys_loaded: Mapping[str, int] | None = None,
    success: bool = True,
    timeout_s: float = 5.0,
    duration_s: float | None = None,
) -> bool:
    """Pushes one run's metrics to the Pushgateway at ``gateway_url`` (``metrics.pushgateway_url``).

    An empty ``gateway_url`` skips the push. A failed push is logged as a warning and returns False: a
    monitoring outage must not fail the batch run it reports on.

    Args:
        gateway_url: ``http://host:9091``; empty for no push.
        job: The job name (the grouping key; each push replaces the job's previous group).
        stage_seconds: Seconds per stage.
        rows: Rows per table.
        keys_loaded: Redis keys written per kind.
        success: The run succeeded.
        timeout_s: Abandon the push after this long.
        duration_s: The run's wall-clock seconds (default: the sum of ``stage_seconds``).

    Returns:
        True when the Pushgateway accepted the metrics.
    """
    if not job:
        raise ValueError("job must be a non-empty job name")
    if not gateway_url:
        log.debug("metrics.pushgateway_url is empty: run metrics of %s not pushed", job)
        return False
    registry = run_registry(
        stage_seconds=stage_seconds, rows=rows, keys_loaded=keys_loaded, success=success, duration_s=duration_s
    )
    try:
        pushadd_to_gateway(gateway_url, job=job, registry=registry, timeout=timeout_s)
    except OSError as exc:  # URLError, connection refused, timeouts, HTTP errors
        log.warning("pushing run metrics of %s to %s failed: %s", job, gateway_url, exc)
        return False
    log.info("pushed run metrics of %s to %s", job, gateway_url)
    return True


_HELP = {
    "recsys_batch_stage_seconds": "Seconds of each stage of the job's last run",
    "recsys_batch_rows": "Rows read or written per table by the job's last run",
    "recsys_batch_keys_loaded": "Redis keys written per kind by the last load",
    "recsys_batch_duration_seconds": "Wall-clock seconds of the job's last run",
    "recsys_batch_last_success_timestamp_seconds": "End of the job's last successful run (epoch seconds)",
}
