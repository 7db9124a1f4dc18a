"""Configuration: every knob, read once from the environment into a frozen Struct.

Each field's environment variable is the upper-cased field name unless ``ENV_NAMES`` says
otherwise; where the Go scheduler this project replaces had a knob meaning the same thing, its
name and default are kept (``WORKER_POOL``, ``VIS_TIMEOUT_MS``, ``RETRY_*``, ``METRICS_ADDR``).
The README's configuration table is generated from ``FIELDS`` and a test keeps them in step.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import msgspec

from taskstream.shared.errors import ConfigError

PRIORITIES: tuple[str, ...] = ("critical", "high", "default", "low")


class Config(msgspec.Struct, frozen=True, kw_only=True):
    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/taskstream"
    namespace: str = "taskstream"
    db_pool_min: int = 2
    db_pool_max: int = 10

    http_host: str = "0.0.0.0"
    http_port: int = 8080
    metrics_addr: str = ""
    batch_max_tasks: int = 1000
    max_body_bytes: int = 4 * 1024 * 1024
    publish_retry_ms: int = 1000

    worker_pool: int = 64
    prefetch: int = 64
    priority_mode: str = "weighted"
    priority_weights: str = "8,4,2,1"
    consumer_name: str = ""
    handler_modules: str = ""
    task_timeout_ms: int = 300_000
    shutdown_grace_ms: int = 25_000
    read_block_ms: int = 1000
    complete_batch_max: int = 500
    complete_linger_ms: int = 2

    watch_interval_ms: int = 100
    watch_batch: int = 1000
    repair_after_ms: int = 30_000
    repair_interval_ms: int = 5_000

    vis_timeout_ms: int = 30_000
    max_deliveries: int = 10
    janitor_interval_ms: int = 1000
    reclaim_batch: int = 100
    consumer_idle_ms: int = 3_600_000
    max_attempts: int = 5
    retry_base_ms: int = 500
    retry_max_ms: int = 30_000
    retry_jitter_ms: int = 500

    log_level: str = "INFO"
    log_format: str = "auto"

    def weights(self) -> dict[str, int]:
        """The weight of each priority, in ``PRIORITIES`` order."""
        return dict(zip(PRIORITIES, _parse_weights(self.priority_weights), strict=True))


# Knob → environment variable. The Go scheduler's names are kept where they mean the same.
ENV_NAMES: dict[str, str] = {
    "namespace": "TASKSTREAM_NAMESPACE",
    "db_pool_min": "DB_POOL_MIN",
    "db_pool_max": "DB_POOL_MAX",
    "log_level": "LOG_LEVEL",
    "log_format": "LOG_FORMAT",
}

DESCRIPTIONS: dict[str, str] = {
    "redis_url": "Redis URL (Redis ≥ 6.2; 7 is the main target).",
    "database_url": "Postgres URL; the source of truth for every task.",
    "namespace": "Namespace of every Redis key (`{<ns>}:stream:<priority>` …).",
    "db_pool_min": "Postgres connections each service keeps open.",
    "db_pool_max": "Most Postgres connections each service opens.",
    "http_host": "Address the ingest HTTP API binds to.",
    "http_port": "Port of the ingest HTTP API (the Go scheduler's 8080).",
    "metrics_addr": "`host:port` of a service's own `/metrics` listener; empty: none "
    "(ingest also serves `/metrics` on its API port).",
    "batch_max_tasks": "Most tasks in one `POST /v1/tasks/batch`.",
    "max_body_bytes": "Largest request body ingest accepts (413 above).",
    "publish_retry_ms": "How often ingest retries publishing tasks it committed while Redis "
    "was unreachable.",
    "worker_pool": "Handlers an executor runs at once (the Go scheduler's knob).",
    "prefetch": "Entries an executor reads ahead of free handler slots.",
    "priority_mode": "`weighted` (fair shares by weight, nothing starves) or `strict`.",
    "priority_weights": "Weights of critical,high,default,low in weighted mode.",
    "consumer_name": "Stable consumer name; empty: `<hostname>-<pid>`.",
    "handler_modules": "Comma-separated modules imported at executor start to register handlers.",
    "task_timeout_ms": "Default handler timeout when a task gives no `timeout_ms`.",
    "shutdown_grace_ms": "On SIGTERM, how long in-flight handlers may finish before they are "
    "cancelled and left pending.",
    "read_block_ms": "Longest blocking XREADGROUP (capped at 1000).",
    "complete_batch_max": "Most outcomes an executor commits in one statement.",
    "complete_linger_ms": "How long an executor waits to gather outcomes into one commit.",
    "watch_interval_ms": "How often the watcher looks for due retries and delayed tasks "
    "(the most a due task is late).",
    "watch_batch": "Most due rows the watcher moves in one transaction.",
    "repair_after_ms": "A queued task whose entry should have been delivered this long ago "
    "is re-published (its entry was lost).",
    "repair_interval_ms": "How often the watcher checks for lost entries and a lost Redis.",
    "vis_timeout_ms": "Visibility timeout: an entry idle longer is reclaimed.",
    "max_deliveries": "Poison cap: an entry delivered more often goes to the dead letters even "
    "if its handler never returned.",
    "janitor_interval_ms": "How often the janitor reclaims, trims and prunes.",
    "reclaim_batch": "Entries per XAUTOCLAIM call (the janitor follows the cursor).",
    "consumer_idle_ms": "A consumer idle this long with nothing pending is removed.",
    "max_attempts": "Default attempts per task (first run included).",
    "retry_base_ms": "Base of the exponential retry backoff.",
    "retry_max_ms": "Cap of the retry backoff.",
    "retry_jitter_ms": "Random jitter added to each retry delay (0..value).",
    "log_level": "Logging level.",
    "log_format": "`json`, `text`, or `auto` (JSON lines when stderr is not a terminal).",
}


def env_name(field: str) -> str:
    return ENV_NAMES.get(field, field.upper())


FIELDS: tuple[str, ...] = Config.__struct_fields__


def defaults() -> dict[str, Any]:
    return {f: d for f, d in zip(FIELDS, Config.__struct_defaults__, strict=True)}


def load(environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
    """Read the configuration from ``environ`` (default: the process environment).

    Raises ``ConfigError`` naming the variable when a value does not parse.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field, default in defaults().items():
        name = env_name(field)
        raw = env.get(name)
        if raw is None or raw == "":
            continue
        if isinstance(default, int):
            try:
                values[field] = int(raw.replace("_", ""))
            except ValueError:
                raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        else:
            values[field] = raw
    values.update(overrides)
    config = Config(**values)
    validate(config)
    return config


def validate(config: Config) -> None:
    """Check values that parse but make no sense; raise ``ConfigError``."""
    positive = (
        "worker_pool",
        "batch_max_tasks",
        "max_body_bytes",
        "vis_timeout_ms",
        "max_attempts",
        "task_timeout_ms",
        "complete_batch_max",
        "db_pool_max",
        "watch_interval_ms",
        "watch_batch",
        "repair_after_ms",
        "repair_interval_ms",
        "max_deliveries",
        "janitor_interval_ms",
        "reclaim_batch",
        "consumer_idle_ms",
    )
    for field in positive:
        if getattr(config, field) <= 0:
            raise ConfigError(f"{env_name(field)} must be positive")
    if config.priority_mode not in ("weighted", "strict"):
        raise ConfigError("PRIORITY_MODE must be 'weighted' or 'strict'")
    _parse_weights(config.priority_weights)
    if config.log_format not in ("auto", "json", "text"):
        raise ConfigError("LOG_FORMAT must be 'auto', 'json' or 'text'")
    if not config.namespace or any(c in config.namespace for c in " {}"):
        raise ConfigError("TASKSTREAM_NAMESPACE must be non-empty, without spaces or braces")


def _parse_weights(raw: str) -> list[int]:
    try:
        weights = [int(w) for w in raw.split(",")]
    except ValueError:
        raise ConfigError(f"PRIORITY_WEIGHTS must be four integers, got {raw!r}") from None
    if len(weights) != len(PRIORITIES) or any(w <= 0 for w in weights):
        raise ConfigError(f"PRIORITY_WEIGHTS must be four positive integers, got {raw!r}")
    return weights


def markdown_table() -> str:
    """The README's configuration table, generated from the Struct."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for field, default in defaults().items():
        shown = f"`{default}`" if default != "" else "(empty)"
        lines.append(f"| `{env_name(field)}` | {shown} | {DESCRIPTIONS[field]} |")
    return "\n".join(lines)
