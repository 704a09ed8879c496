"""The operations configs are valid for the tools that read them: promtool, nginx, Kubernetes schemas."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "conf" / "prometheus"
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def promtool() -> str:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is missing: run `make setup` (Debian package prometheus)")
    return exe


def test_prometheus_config_is_valid(promtool):
    res = run(promtool, "check", "config", str(PROM / "prometheus.yml"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "5 rules found" in res.stdout + res.stderr


def test_alert_rules_fire_as_specified(promtool):
    res = run(promtool, "test", "rules", str(PROM / "alerts_test.yml"))
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_rejects_a_broken_rule(promtool, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "groups:\n  - name: x\n    rules:\n      - alert: Broken\n        expr: sum(rate(x[5m]) > \n"
    )
    assert run(promtool, "check", "rules", str(bad)).returncode != 0


def test_every_alert_has_a_runbook_section():
    rules = yaml.safe_load((PROM / "alerts.yml").read_text())
    ops = (ROOT / "docs" / "operations.md").read_text().lower()
    for group in rules["groups"]:
        for rule in group["rules"]:
            anchor = rule["annotations"]["runbook"].split("#", 1)[1]
            assert f"### {anchor}" in ops, f"docs/operations.md has no runbook section for {rule['alert']}"


def test_nginx_config_is_valid(tmp_path):
    if NGINX is None:
        pytest.fail("nginx is missing: run `make setup` (Debian package nginx-light)")
    res = run(NGINX, "-t", "-p", str(tmp_path), "-c", str(ROOT / "conf" / "nginx" / "nginx.conf"))
    assert res.returncode == 0, res.stderr
    conf = (ROOT / "conf" / "nginx" / "nginx.conf").read_text()
    assert "least_conn;" in conf and "keepalive 32;" in conf and "non_idempotent" not in conf.split("#")[-1]


@pytest.mark.parametrize("manifest", sorted((ROOT / "deploy" / "k8s").glob("*.yaml")), ids=lambda p: p.name)
def test_kubernetes_manifests_match_the_schemas(manifest):
    import kubernetes_validate

    docs = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, "1.33", strict=True)


def test_the_schema_check_can_fail():
    import kubernetes_validate

    doc = yaml.safe_load((ROOT / "deploy" / "k8s" / "api.yaml").read_text().split("---")[0])
    doc["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, "1.33", strict=True)
