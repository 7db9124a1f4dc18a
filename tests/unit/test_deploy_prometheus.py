"""deploy/prometheus: alert rules and scrape config are valid, tested, and name real metrics."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from tests.deploy.support import (
    DEPLOY,
    NOT_YET_EXPORTED,
    SCRAPE_METRICS,
    alert_rules,
    exported_metric_names,
    load_yaml,
    promql_metric_names,
)

PROMETHEUS = DEPLOY / "prometheus"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not on PATH (Debian: apt-get install prometheus)"
)

REQUIRED_ALERTS = {
    "QueueStuckHigh",
    "HighFailureRate",
    "SlowP95Run",
    "RetriesSurge",
    "DeadLettersGrowing",
    "PendingPastVisibilityTimeout",
    "NoConsumersWithBacklog",
    "WatcherLagging",
    "ScheduleMissedRuns",
}


def promtool(*args: str) -> str:
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


@needs_promtool
def test_promtool_check_rules_accepts_the_alerts() -> None:
    out = promtool("check", "rules", "alerts.yml")
    assert f"SUCCESS: {len(alert_rules())} rules found" in out


@needs_promtool
def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")


@needs_promtool
def test_promtool_check_config_accepts_the_scrape_config() -> None:
    assert "is valid prometheus config file syntax" in promtool("check", "config", "prometheus.yml")


def test_every_required_alert_is_defined_once() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))
    assert set(names) >= REQUIRED_ALERTS


def test_every_alert_has_a_severity_summary_and_description() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert rule["annotations"]["description"].strip(), rule["alert"]


def _evaluations() -> list[dict[str, Any]]:
    doc = load_yaml(PROMETHEUS / "alerts_test.yml")
    return [ev for test in doc["tests"] for ev in test["alert_rule_test"]]


def test_the_rule_tests_make_every_alert_fire_and_stay_quiet() -> None:
    evaluations = _evaluations()
    for rule in alert_rules():
        mine = [ev for ev in evaluations if ev["alertname"] == rule["alert"]]
        assert any(ev["exp_alerts"] for ev in mine), f"{rule['alert']}: no firing case"
        assert any(not ev["exp_alerts"] for ev in mine), f"{rule['alert']}: no quiet case"


def test_alerts_use_only_metrics_the_services_export() -> None:
    exported = exported_metric_names() | SCRAPE_METRICS
    for rule in alert_rules():
        unknown = promql_metric_names(rule["expr"]) - exported - NOT_YET_EXPORTED
        assert not unknown, f"{rule['alert']} uses metrics no service exports: {unknown}"


def test_the_not_yet_exported_list_is_current() -> None:
    # When shared/metrics.py gains one of these instruments, drop it from NOT_YET_EXPORTED
    # so that the alert and dashboard tests check it like every other name.
    assert not NOT_YET_EXPORTED & exported_metric_names()


def test_promql_metric_names_ignores_functions_labels_and_durations() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (type, le) (rate(task_run_seconds_bucket{job=~"a.*"}'
        "[5m] offset 1h))) > 1e3 and on (priority) max without (instance) (queue_depth) "
        "or vector(0) unless sum(rate(tasks_failed_total[$__rate_interval])) > bool 2"
    )
    assert promql_metric_names(expr) == {
        "task_run_seconds_bucket",
        "queue_depth",
        "tasks_failed_total",
    }


def test_scrape_config_loads_the_alert_rules_and_scrapes_every_service() -> None:
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for service in ("ingest", "executor", "watcher", "janitor"):
        assert f"taskstream-{service}" in jobs, service
