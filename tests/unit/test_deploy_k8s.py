"""deploy/k8s: manifests valid against the Kubernetes schemas (offline) and wired correctly."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest

from taskstream.shared import config as config_mod
from taskstream.shared.domain import PRIORITIES
from taskstream.shared.keys import GROUP, Keys
from tests.deploy.support import DEPLOY, load_yaml, load_yaml_all

K8S = DEPLOY / "k8s"
# Schemas shipped by kubernetes-validate; pinned so that a new release cannot change the result.
KUBERNETES_VERSION = "1.30.0"
NOT_BUILT_IN = ("keda.sh/", "kustomize.config.k8s.io/")
SERVICES = ("ingest", "executor", "watcher", "janitor")
KNOBS = {config_mod.env_name(field) for field in config_mod.FIELDS}


def _documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, doc)
        for path in sorted(K8S.glob("*.yaml"))
        for doc in load_yaml_all(path)
        if doc
    ]


def _one(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for _, d in _documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    """The one container of a Deployment's or Job's pod template."""
    containers: list[dict[str, Any]] = workload["spec"]["template"]["spec"]["containers"]
    (container,) = containers
    return container


def _config_map() -> dict[str, str]:
    data: dict[str, str] = _one("ConfigMap", "taskstream-config")["data"]
    return data


BUILT_IN = [
    pytest.param(doc, id=f"{file}:{doc['kind']}")
    for file, doc in _documents()
    if not doc["apiVersion"].startswith(NOT_BUILT_IN)
]


@pytest.mark.parametrize("doc", BUILT_IN)
def test_built_in_kinds_validate_strictly(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_strict_validation_rejects_a_misspelt_field() -> None:
    broken = copy.deepcopy(_one("Deployment", "taskstream-executor"))
    _container(broken)["livenesProbe"] = _container(broken).pop("livenessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_manifests_set_no_namespace() -> None:
    for file, doc in _documents():
        assert "namespace" not in doc.get("metadata", {}), file


@pytest.mark.parametrize("service", SERVICES)
def test_deployments_probe_health_and_set_resources(service: str) -> None:
    deployment = _one("Deployment", f"taskstream-{service}")
    container = _container(deployment)
    assert container["args"] == [service]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    liveness, readiness = container["livenessProbe"], container["readinessProbe"]
    assert liveness["httpGet"]["path"] == "/healthz"
    if service == "ingest":
        assert readiness["httpGet"]["path"] == "/readyz"
        assert ports == {"http": 8080}
    else:
        assert readiness["httpGet"]["path"] == "/healthz"
        env = {e["name"]: e["value"] for e in container["env"]}
        assert int(env["METRICS_ADDR"].rpartition(":")[2]) == ports["metrics"]
    assert {liveness["httpGet"]["port"], readiness["httpGet"]["port"]} <= set(ports)
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}, kind
    pod = deployment["spec"]["template"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(next(iter(ports.values())))
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()


def test_executor_termination_grace_outlasts_its_shutdown_grace() -> None:
    grace_ms = int(_config_map()["SHUTDOWN_GRACE_MS"])
    assert grace_ms == config_mod.Config().executor.shutdown_grace_ms
    pod = _one("Deployment", "taskstream-executor")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] * 1000 > grace_ms


def test_executor_replicas_are_left_to_keda() -> None:
    assert "replicas" not in _one("Deployment", "taskstream-executor")["spec"]


@pytest.mark.parametrize("service", ["executor", "ingest"])
def test_disruption_budgets_select_their_pods(service: str) -> None:
    budget = _one("PodDisruptionBudget", f"taskstream-{service}")
    labels = _one("Deployment", f"taskstream-{service}")["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert {"minAvailable", "maxUnavailable"} & set(budget["spec"])


def test_ingest_service_targets_the_http_port() -> None:
    service = _one("Service", "taskstream-ingest")
    labels = _one("Deployment", "taskstream-ingest")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http"}]


def test_migrate_job_runs_once() -> None:
    job = _one("Job", "taskstream-migrate")
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("OnFailure", "Never")
    assert _container(job)["args"] == ["migrate"]
    assert job["spec"]["backoffLimit"] >= 1


def test_config_and_secret_hold_only_config_knobs() -> None:
    assert set(_config_map()) - KNOBS == {"REDIS_ADDRESS"}  # read by KEDA, not by taskstream
    secret = _one("Secret", "taskstream-secrets")
    assert set(secret["stringData"]) == {"REDIS_URL", "DATABASE_URL", "API_KEY_BOOTSTRAP"}
    assert _config_map()["AUTH_MODE"] == "keys"  # ingest runs with API keys
    for deployment in SERVICES:
        sources = _container(_one("Deployment", f"taskstream-{deployment}"))["envFrom"]
        assert {"configMapRef": {"name": "taskstream-config"}} in sources
        assert {"secretRef": {"name": "taskstream-secrets"}} in sources


def test_secret_is_an_example_left_out_of_the_kustomization() -> None:
    text = (K8S / "secret.example.yaml").read_text()
    assert text.startswith("# EXAMPLE ONLY")
    assert all(
        "CHANGE-ME" in value
        for value in _one("Secret", "taskstream-secrets")["stringData"].values()
    )
    kustomization = load_yaml(K8S / "kustomization.yaml")
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == manifests - {"secret.example.yaml"}


def test_keda_scales_executors_on_the_lag_of_every_priority_stream() -> None:
    scaled = _one("ScaledObject", "taskstream-executor")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    target = scaled["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "taskstream-executor")
    assert 1 <= scaled["spec"]["minReplicaCount"] < scaled["spec"]["maxReplicaCount"]
    keys = Keys(_config_map()["TASKSTREAM_NAMESPACE"])
    triggers = scaled["spec"]["triggers"]
    assert {t["type"] for t in triggers} == {"redis-streams"}
    streams = [t["metadata"]["stream"] for t in triggers]
    assert sorted(streams) == sorted(keys.stream(p) for p in PRIORITIES)
    executor_env = _container(_one("Deployment", "taskstream-executor"))
    for trigger in triggers:
        meta = trigger["metadata"]
        assert meta["consumerGroup"] == GROUP
        assert meta["lagCount"].isdigit() and int(meta["lagCount"]) > 0
        assert "pendingEntriesCount" not in meta and "streamLength" not in meta
        # KEDA reads the address from the scale target's environment (here via envFrom).
        assert meta["addressFromEnv"] in _config_map()
        assert {"configMapRef": {"name": "taskstream-config"}} in executor_env["envFrom"]
