"""compose.yaml: valid against the Compose Specification, and wired the way taskstream runs."""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from taskstream.shared import config as config_mod
from tests.deploy.support import DEPLOY, ROOT, load_yaml

SCHEMA = Path(__file__).resolve().parents[1] / "data" / "compose-spec.json"
TASKSTREAM = ("ingest", "executor", "watcher", "janitor")
KNOBS = {config_mod.env_name(field) for field in config_mod.FIELDS}


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(ROOT / "compose.yaml")
    return data


@functools.cache
def _validator() -> Any:
    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _errors(document: dict[str, Any]) -> list[str]:
    return [f"{e.json_path}: {e.message}" for e in _validator().iter_errors(document)]


def _services() -> dict[str, Any]:
    services: dict[str, Any] = _compose()["services"]
    return services


def test_compose_file_validates_against_the_compose_spec_schema() -> None:
    assert _errors(_compose()) == []


def test_the_schema_check_rejects_a_misspelt_key() -> None:
    broken = copy.deepcopy(_compose())
    broken["services"]["executor"]["stop_grace_periods"] = "40s"
    assert any("stop_grace_periods" in error for error in _errors(broken))


def test_every_service_has_an_image_and_ours_build_from_the_dockerfile() -> None:
    for name, service in _services().items():
        assert "image" in service or "build" in service, name
    for name in (*TASKSTREAM, "migrate"):
        build = _services()[name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).is_file(), name
        assert _services()[name]["image"] == "taskstream:local", name


def test_each_taskstream_service_runs_its_own_command() -> None:
    for name in TASKSTREAM:
        assert _services()[name]["command"] == [name]
    assert _services()["migrate"]["command"] == ["migrate", "--create-db"]


def test_executor_scales_with_distinct_consumer_names() -> None:
    executor = _services()["executor"]
    assert "container_name" not in executor
    assert "ports" not in executor  # replicas would fight over a host port
    assert "hostname" not in executor  # each replica's hostname is its container id
    assert "CONSUMER_NAME" not in executor["environment"]


def test_executor_is_given_longer_than_its_shutdown_grace_to_stop() -> None:
    executor = _services()["executor"]
    grace_ms = int(executor["environment"]["SHUTDOWN_GRACE_MS"])
    assert grace_ms == config_mod.Config().executor.shutdown_grace_ms
    period = executor["stop_grace_period"]
    assert period.endswith("s")
    assert int(period[:-1]) * 1000 > grace_ms


@pytest.mark.parametrize("name", (*TASKSTREAM, "migrate"))
def test_environment_variables_are_config_knobs(name: str) -> None:
    environment = _services()[name]["environment"]
    assert set(environment) <= KNOBS, set(environment) - KNOBS
    assert environment["REDIS_URL"].startswith("redis://redis:")
    assert "@postgres:5432/" in environment["DATABASE_URL"]


def test_published_ports() -> None:
    services = _services()
    assert services["ingest"]["ports"] == ["8080:8080"]
    assert services["prometheus"]["ports"] == ["9090:9090"]
    assert services["grafana"]["ports"] == ["3000:3000"]


def test_healthchecks() -> None:
    services = _services()
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert services["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert "http://127.0.0.1:8080/readyz" in services["ingest"]["healthcheck"]["test"][-1]
    for name in ("executor", "watcher", "janitor"):
        port = services[name]["environment"]["METRICS_ADDR"].rpartition(":")[2]
        probe = services[name]["healthcheck"]["test"][-1]
        assert f"http://127.0.0.1:{port}/healthz" in probe, name


def test_services_start_after_healthy_stores_and_a_finished_migration() -> None:
    services = _services()
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["migrate"]["restart"] == "no"
    for name in TASKSTREAM:
        assert services[name]["depends_on"] == {
            "redis": {"condition": "service_healthy"},
            "postgres": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }, name


def test_postgres_keeps_its_data_in_a_volume() -> None:
    compose = _compose()
    volumes = compose["services"]["postgres"]["volumes"]
    assert "postgres-data:/var/lib/postgresql/data" in volumes
    assert "postgres-data" in compose["volumes"]


def test_prometheus_mounts_the_rules_and_scrapes_the_compose_services() -> None:
    services = _services()
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    config = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name in TASKSTREAM:
        (sd,) = jobs[f"taskstream-{name}"]["dns_sd_configs"]
        assert sd["names"] == [name]
        environment = services[name]["environment"]
        port = environment.get("HTTP_PORT") or environment["METRICS_ADDR"].rpartition(":")[2]
        assert sd["port"] == int(port), name


def test_grafana_mounts_provisioning_and_dashboards_where_provisioning_looks() -> None:
    volumes = _services()["grafana"]["volumes"]
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in volumes
    providers = load_yaml(DEPLOY / "grafana/provisioning/dashboards/dashboards.yml")
    path = providers["providers"][0]["options"]["path"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in volumes


def test_ingest_runs_with_api_keys_and_an_example_bootstrap_key() -> None:
    from taskstream.shared.domain.access import looks_like_key

    env = _services()["ingest"]["environment"]
    assert env["AUTH_MODE"] == "keys"
    assert looks_like_key(env["API_KEY_BOOTSTRAP"])
    assert "change-me" in env["API_KEY_BOOTSTRAP"]
