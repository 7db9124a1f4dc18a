"""deploy/grafana: the dashboard and its provisioning."""

from __future__ import annotations

import re

from tests.deploy.support import (
    DEPLOY,
    NOT_YET_EXPORTED,
    dashboard,
    dashboard_exprs,
    exported_metric_names,
    load_yaml,
    promql_metric_names,
)

GRAFANA = DEPLOY / "grafana"


def test_dashboard_has_the_expected_identity() -> None:
    board = dashboard()
    assert board["uid"] == "scheduler-obsv"
    assert board["title"] == "taskstream"


def test_every_panel_queries_prometheus_through_the_datasource_variable() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    for panel in dashboard()["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_dashboard_metrics_are_exported_by_the_services() -> None:
    exported = exported_metric_names()
    for title, exprs in dashboard_exprs().items():
        for expr in exprs:
            names = promql_metric_names(expr)
            assert names, f"{title}: no metric in {expr!r}"
            unknown = names - exported - NOT_YET_EXPORTED
            assert not unknown, f"panel {title!r} uses metrics no service exports: {unknown}"


def test_dashboard_covers_what_an_operator_watches() -> None:
    used = set().union(*(promql_metric_names(e) for es in dashboard_exprs().values() for e in es))
    assert {
        "queue_depth",
        "tasks_enqueued_total",
        "tasks_dequeued_total",
        "tasks_succeeded_total",
        "tasks_failed_total",
        "tasks_retried_total",
        "tasks_dead_lettered_total",
        "task_run_seconds_bucket",
        "enqueue_to_start_seconds_bucket",
        "processing_inflight",
        "oldest_pending_age_seconds",
        "consumers",
    } <= used


def test_quantiles_aggregate_by_le() -> None:
    for title, exprs in dashboard_exprs().items():
        for expr in exprs:
            if "histogram_quantile" not in expr:
                continue
            groupings = re.findall(r"\bby \(([^)]*)\)", expr)
            assert groupings, f"{title}: {expr}"
            assert all("le" in (g.strip() for g in grp.split(",")) for grp in groupings), title


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    panels = dashboard()["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine


def test_provisioning_points_at_prometheus_and_the_dashboard_folder() -> None:
    sources = load_yaml(GRAFANA / "provisioning/datasources/prometheus.yml")
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus"
    assert source["uid"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    providers = load_yaml(GRAFANA / "provisioning/dashboards/dashboards.yml")
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/etc/grafana/dashboards"
