"""Helpers of the deploy tests: the files under deploy/, and metric names.

Metric names come in two sets: the ones the services export, and the ones PromQL uses.
The exported set is built from ``shared.metrics`` itself, through the same OpenTelemetry
Prometheus exporter the services run, so the deploy tests follow the code: rename an
instrument and the dashboard and alert tests name every panel and rule left behind.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import yaml
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from taskstream.shared import metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"

# Made by Prometheus at scrape time, not by the services.
SCRAPE_METRICS = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})

# Metrics the alerts and dashboard use that shared/metrics.py does not declare yet. Each name
# must leave this set in the change that adds the instrument:
# test_the_not_yet_exported_list_is_current fails while a listed name is already exported.
NOT_YET_EXPORTED: frozenset[str] = frozenset()

_ATTRIBUTES = {"priority": "default", "type": "noop", "reason": "exhausted", "stage": "claim"}


def load_yaml(path: Path) -> Any:
    """One YAML document, parsed with libyaml when available (parsed once per test run)."""
    return _load_all(path)[0]


def load_yaml_all(path: Path) -> list[Any]:
    return _load_all(path)


@functools.cache
def _load_all(path: Path) -> list[Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return list(yaml.load_all(path.read_text(), Loader=loader))


@functools.cache
def exported_metric_names() -> frozenset[str]:
    """Every sample name a service exposes once each instrument has recorded a value."""
    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry)
    instruments = metrics.build(reader)
    for instrument in vars(instruments).values():
        if hasattr(instrument, "add"):  # counters and up-down counters
            instrument.add(1, _ATTRIBUTES)
        elif hasattr(instrument, "record"):  # histograms
            instrument.record(0.1, _ATTRIBUTES)
        elif hasattr(instrument, "set"):  # synchronous gauges
            instrument.set(1, _ATTRIBUTES)
    text = generate_latest(registry).decode()
    return frozenset(
        s.name for family in text_string_to_metric_families(text) for s in family.samples
    )


_STRING = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_VARIABLES = re.compile(r"\$\{[^}]*\}|\$\w+")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}
    | {"and", "or", "unless", "inf", "nan"}
)


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions and keywords left out)."""
    text = _STRING.sub('""', expr)
    text = _VARIABLES.sub("", text)
    text = _MATCHERS.sub("", text)
    text = _RANGES.sub("", text)
    text = _GROUPING.sub("", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        before = text[match.start() - 1] if match.start() else " "
        if before.isalnum() or before == ".":  # the unit of a duration, or a number's exponent
            continue
        if text[match.end() :].lstrip().startswith("("):  # a function or an aggregation
            continue
        if match.group().lower() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def alert_rules() -> list[dict[str, Any]]:
    doc = load_yaml(DEPLOY / "prometheus" / "alerts.yml")
    return [rule for group in doc["groups"] for rule in group["rules"] if "alert" in rule]


@functools.cache
def dashboard() -> dict[str, Any]:
    board: dict[str, Any] = json.loads(
        (DEPLOY / "grafana" / "dashboards" / "taskstream.json").read_text()
    )
    return board


def dashboard_exprs() -> dict[str, list[str]]:
    """Panel title → the PromQL expressions of its targets."""
    return {
        panel["title"]: [t["expr"] for t in panel.get("targets", [])]
        for panel in dashboard()["panels"]
        if panel["type"] != "row"
    }
