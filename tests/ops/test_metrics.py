"""The dashboard and the alerts query only what the code exports; batch run metrics reach a Pushgateway."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml

from recsys.batch_metrics import BATCH_METRICS, push_run_metrics, run_registry
from serving.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
# Series from exporters we run next to the API (node_exporter, redis_exporter), not from our code.
EXTERNAL_PREFIXES = ("node_", "redis_")
# Labels Prometheus attaches at scrape time (job also comes from the Pushgateway grouping key).
TARGET_LABELS = {"job", "instance", "service"}
SUFFIXES = {"histogram": ("_bucket", "_count", "_sum"), "counter": ("_total",), "gauge": ("",)}
NAME = re.compile(r"\b((?:recsys|node|redis)_[a-zA-Z0-9_]+)\b(\{[^}]*\})?")
MATCHER = re.compile(r'([a-zA-Z_]+)\s*(?:=~|!=|!~|=)\s*"([^"]*)"')


def exported() -> dict[str, set[str]]:
    """Every sample name the code exports, mapped to its label names."""
    out: dict[str, set[str]] = {}
    for family in Metrics().registry.collect():
        labels = set(_labelnames(family))
        for suffix in SUFFIXES[family.type]:
            out[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    for name, labels in BATCH_METRICS.items():
        out[name] = set(labels)
    return out


def _labelnames(family) -> tuple[str, ...]:
    m = Metrics()
    for collector in m.registry._collector_to_names:  # noqa: SLF001 - the label names are not on the family
        if getattr(collector, "_name", None) in (family.name, family.name + "_total"):
            return tuple(collector._labelnames)  # type: ignore[attr-defined]  # noqa: SLF001
    return ()


def dashboard_exprs() -> list[tuple[str, str]]:
    board = json.loads((ROOT / "conf" / "grafana" / "recsys-dashboard.json").read_text())
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p["targets"]]


def alert_exprs() -> list[tuple[str, str]]:
    rules = yaml.safe_load((ROOT / "conf" / "prometheus" / "alerts.yml").read_text())
    return [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"]]


def flask_rules() -> set[str]:
    from serving import create_app
    from tests.serving.conftest import make_config

    app = create_app(make_config(ROOT / "build" / "no-such-lake", "redis://127.0.0.1:1/0"))
    return {rule.rule for rule in app.url_map.iter_rules()}


def check(where: str, expr: str, names: dict[str, set[str]], rules: set[str]) -> list[str]:
    problems = []
    found = NAME.findall(expr)
    if not found:
        problems.append(f"{where}: names no metric: {expr}")
    for name, selector in found:
        if name.startswith(EXTERNAL_PREFIXES):
            continue
        if name not in names:
            problems.append(f"{where}: {name} is not exported by serving.metrics or recsys.batch_metrics")
            continue
        for label, value in MATCHER.findall(selector or ""):
            if label not in names[name] | TARGET_LABELS:
                problems.append(f"{where}: {name} has no label {label!r}")
            if label == "endpoint" and value not in rules:
                problems.append(f"{where}: endpoint {value!r} is not a route of the API")
    for group in re.findall(r"\bby \(([^)]*)\)", expr):
        ours = [n for n, _ in found if not n.startswith(EXTERNAL_PREFIXES) and n in names]
        for label in (x.strip() for x in group.split(",")):
            if ours and not any(label in names[n] | TARGET_LABELS for n in ours):
                problems.append(f"{where}: grouped by {label!r}, a label none of {ours} has")
    return problems


def test_every_dashboard_and_alert_query_names_an_exported_metric() -> None:
    names, rules = exported(), flask_rules()
    assert "recsys_redis_command_duration_seconds_bucket" in names
    problems = [p for where, e in dashboard_exprs() + alert_exprs() for p in check(where, e, names, rules)]
    assert problems == []


def test_the_check_catches_a_wrong_name_label_or_endpoint() -> None:
    names = exported()
    rules = {"/v1/users/<user_id>/recommendations"}
    assert check("p", "rate(recsys_cache_hits_total[5m])", names, rules) == [
        "p: recsys_cache_hits_total is not exported by serving.metrics or recsys.batch_metrics"
    ]
    assert check("p", 'rate(recsys_cache_requests_total{status="hit"}[5m])', names, rules) == [
        "p: recsys_cache_requests_total has no label 'status'"
    ]
    assert check(
        "p", 'recsys_http_request_duration_seconds_count{endpoint="recommendations"}', names, rules
    ) == ["p: endpoint 'recommendations' is not a route of the API"]
    assert check("p", "sum by (shard) (recsys_stream_pending_entries)", names, rules) == [
        "p: grouped by 'shard', a label none of ['recsys_stream_pending_entries'] has"
    ]


def test_metric_names_follow_prometheus_conventions() -> None:
    for name in exported():
        assert name.startswith("recsys_") and name == name.lower(), name
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        assert base.endswith(("_seconds", "_total", "_entries", "_info", "_rows", "_loaded")), name


class _Recorder(BaseHTTPRequestHandler):
    pushes: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 - the http.server hook name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.pushes.append((self.command, self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    _Recorder.pushes = []
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.pushes
    server.shutdown()
    server.server_close()


def test_run_metrics_are_pushed_under_the_jobs_grouping_key(gateway) -> None:
    url, pushes = gateway
    assert push_run_metrics(
        url,
        job="pipeline",
        stage_seconds={"als": 12.5, "load": 3.0},
        rows={"interactions": 541909},
        keys_loaded={"user": 4372},
    )
    ((method, path, body),) = pushes
    assert (method, path) == ("POST", "/metrics/job/pipeline")
    text = body.decode()
    for line in (
        'recsys_batch_stage_seconds{stage="als"} 12.5',
        'recsys_batch_stage_seconds{stage="load"} 3.0',
        'recsys_batch_rows{table="interactions"} 541909.0',
        'recsys_batch_keys_loaded{kind="user"} 4372.0',
        "recsys_batch_duration_seconds 15.5",
    ):
        assert line in text.splitlines()
    assert "recsys_batch_last_success_timestamp_seconds " in text


def test_no_push_without_a_url_and_a_dead_gateway_does_not_fail_the_run(caplog) -> None:
    assert push_run_metrics("", job="load", stage_seconds={"x": 1.0}) is False
    from tests.conftest import free_port

    assert push_run_metrics(f"http://127.0.0.1:{free_port()}", job="load", stage_seconds={"x": 1.0}) is False
    assert "pushing run metrics of load" in caplog.text
    with pytest.raises(ValueError, match="job"):
        push_run_metrics("http://x", job="", stage_seconds={})


def test_a_failed_run_keeps_the_last_success_time_unset() -> None:
    reg = run_registry(stage_seconds={"fit": 2.0}, success=False)
    assert reg.get_sample_value("recsys_batch_stage_seconds", {"stage": "fit"}) == 2.0
    assert reg.get_sample_value("recsys_batch_last_success_timestamp_seconds") is None


def test_duration_is_the_stages_sum_unless_the_wall_time_is_given() -> None:
    stages = {"als": 5.0, "content": 4.0}  # side by side: 5.5 s from start to end
    assert run_registry(stage_seconds=stages).get_sample_value("recsys_batch_duration_seconds") == 9.0
    given = run_registry(stage_seconds=stages, duration_s=5.5)
    assert given.get_sample_value("recsys_batch_duration_seconds") == 5.5
    assert given.get_sample_value("recsys_batch_stage_seconds", {"stage": "als"}) == 5.0
