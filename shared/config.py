"""Configuration: every knob, read once from the environment into frozen Structs, one section
per role (the stores, the service process, ingest, task defaults, leases, the executor, the
watcher, the janitor, the console, and the Python client), each field with its description
beside it.

Each field's environment variable is the upper-cased field name unless ``ENV_NAMES`` says
otherwise; where the Go scheduler this project replaces had a knob meaning the same thing, its
name and default are kept (``WORKER_POOL``, ``VIS_TIMEOUT_MS``, ``RETRY_*``, ``METRICS_ADDR``).
Field names are unique across sections, so ``load`` and ``replace`` take them flat. The
README's configuration table is generated from the Structs and a test keeps them in step.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Iterator, Mapping
from typing import Annotated, Any

import msgspec

from taskstream.shared.domain import PRIORITIES
from taskstream.shared.domain.access import looks_like_key
from taskstream.shared.errors import ConfigError


def _d(text: str) -> msgspec.Meta:
    return msgspec.Meta(description=text)


class StoreConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Where Redis and Postgres are, and how many connections each process opens."""

    redis_url: Annotated[str, _d("Redis URL (Redis ≥ 6.2; 7 is the main target).")] = (
        "redis://127.0.0.1:6379/0"
    )
    database_url: Annotated[str, _d("Postgres URL; the source of truth for every task.")] = (
        "postgresql://postgres@127.0.0.1:5432/taskstream"
    )
    namespace: Annotated[
        str, _d("Namespace of every Redis key (`{<ns>}:stream:<priority>` …).")
    ] = "taskstream"
    db_pool_min: Annotated[int, _d("Postgres connections each service keeps open.")] = 2
    db_pool_max: Annotated[int, _d("Most Postgres connections each service opens.")] = 10
    redis_timeout_ms: Annotated[
        int,
        _d(
            "Longest wait for a Redis reply (socket timeout): a Redis host that vanished "
            "without a reset is noticed within this, not TCP's 15 minutes."
        ),
    ] = 5000


class ServiceConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The service process: its metrics listener and its logs."""

    metrics_addr: Annotated[
        str,
        _d(
            "`host:port` of a service's own `/metrics` listener; empty: none "
            "(ingest also serves `/metrics` on its API port)."
        ),
    ] = ""
    log_level: Annotated[str, _d("Logging level.")] = "INFO"
    log_format: Annotated[
        str, _d("`json`, `text`, or `auto` (JSON lines when stderr is not a terminal).")
    ] = "auto"


class IngestConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The HTTP API."""

    http_host: Annotated[str, _d("Address the ingest HTTP API binds to.")] = "0.0.0.0"
    http_port: Annotated[int, _d("Port of the ingest HTTP API (the Go scheduler's 8080).")] = 8080
    batch_max_tasks: Annotated[int, _d("Most tasks in one `POST /v1/tasks/batch`.")] = 1000
    workflow_max_steps: Annotated[int, _d("Most steps in one workflow (`POST /v1/workflows`).")] = (
        1000
    )
    max_body_bytes: Annotated[int, _d("Largest request body ingest accepts (413 above).")] = (
        4 * 1024 * 1024
    )
    publish_retry_ms: Annotated[
        int,
        _d("How often ingest retries publishing tasks it committed while Redis was unreachable."),
    ] = 1000


class AccessConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Who may call ingest: API keys and JWTs, tenants and their limits (ingest only)."""

    auth_mode: Annotated[
        str,
        _d(
            "`off`, `keys`, `jwt` or `keys,jwt`. Off: every request is the `default` tenant "
            "with every scope; ingest refuses it on a non-loopback `HTTP_HOST` unless "
            "`AUTH_ALLOW_INSECURE=1`."
        ),
    ] = "off"
    auth_allow_insecure: Annotated[
        int, _d("1: let ingest serve with auth off on a non-loopback address.")
    ] = 0
    api_key_cache_ms: Annotated[
        int,
        _d(
            "How long ingest trusts what it read of an API key: a key revoked elsewhere "
            "works at most this much longer (0: read it on every request)."
        ),
    ] = 2000
    api_key_touch_ms: Annotated[
        int, _d("A key's `last_used_at` is written at most this often (per ingest process).")
    ] = 60_000
    api_key_bootstrap: Annotated[
        str,
        _d(
            "An API key (`ts_live_…`) ingest makes sure exists at start, with the `admin` "
            "scope for the `default` tenant (stored hashed): how Compose and Kubernetes get "
            "a first key. Empty: none."
        ),
    ] = ""
    jwt_algorithm: Annotated[
        str, _d("The one algorithm JWTs may use: `HS256`, `RS256` or `ES256`.")
    ] = "HS256"
    jwt_secret: Annotated[str, _d("HS256: the shared secret (at least 32 bytes).")] = ""
    jwt_public_key: Annotated[
        str, _d("RS256/ES256: the PEM public key, or a path to a file holding it.")
    ] = ""
    jwt_jwks_file: Annotated[
        str, _d("RS256/ES256: a JWKS file (keys chosen by the token's `kid`).")
    ] = ""
    jwt_issuer: Annotated[str, _d("When set, a JWT's `iss` must equal it.")] = ""
    jwt_audience: Annotated[str, _d("When set, a JWT's `aud` must contain it.")] = ""
    jwt_tenant_claim: Annotated[str, _d("The claim naming the tenant.")] = "tenant"
    jwt_scopes_claim: Annotated[
        str, _d("The claim holding the scopes (a space-separated string or a list).")
    ] = "scope"
    jwt_leeway_s: Annotated[int, _d("Clock skew allowed on `exp`, `nbf` and `iat`.")] = 30
    fair_share_entries: Annotated[
        int,
        _d(
            "Fair shares between tenants: each tenant may have at most this many entries (times "
            "its weight, `tenants set --weight`) waiting on the streams; what it submits beyond "
            "waits in Postgres and is released as its entries are read. 0: off (one queue for "
            "everyone, nothing held back). Ingest and the watcher read it."
        ),
    ] = 0
    limits_cache_ms: Annotated[
        int,
        _d(
            "How long ingest uses the tenants' limits it read (`taskstream tenants set` "
            "takes effect within this)."
        ),
    ] = 3000


class TaskDefaults(msgspec.Struct, frozen=True, kw_only=True):
    """What a task gets when its request does not say."""

    max_attempts: Annotated[int, _d("Default attempts per task (first run included).")] = 5
    retry_base_ms: Annotated[int, _d("Base of the exponential retry backoff.")] = 500
    retry_max_ms: Annotated[int, _d("Cap of the retry backoff.")] = 30_000
    retry_jitter_ms: Annotated[int, _d("Random jitter added to each retry delay (0..value).")] = 500
    task_timeout_ms: Annotated[
        int, _d("Default handler timeout when a task gives no `timeout_ms`.")
    ] = 300_000


class LeaseConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Leases on delivered entries, shared by executors (heartbeats) and the janitor."""

    vis_timeout_ms: Annotated[int, _d("Visibility timeout: an entry idle longer is reclaimed.")] = (
        30_000
    )
    max_deliveries: Annotated[
        int,
        _d(
            "Poison cap: an entry delivered more often goes to the dead letters even if its "
            "handler never returned."
        ),
    ] = 10


class ExecutorConfig(msgspec.Struct, frozen=True, kw_only=True):
    """An executor: its handlers, reads, fair shares, completions and shutdown."""

    worker_pool: Annotated[
        int, _d("Handlers an executor runs at once (the Go scheduler's knob).")
    ] = 64
    prefetch: Annotated[int, _d("Entries an executor reads ahead of free handler slots.")] = 64
    prefetch_fast: Annotated[
        int,
        _d(
            "Entries it reads ahead while its handlers are quick (a recent average under "
            "`FAST_HANDLER_MS`): bigger batches, fewer round trips per task."
        ),
    ] = 960
    fast_handler_ms: Annotated[
        float, _d("Below this average run time, handlers count as quick (`PREFETCH_FAST`).")
    ] = 2.0
    priority_mode: Annotated[
        str, _d("`weighted` (fair shares by weight, nothing starves) or `strict`.")
    ] = "weighted"
    priority_weights: Annotated[
        str, _d("Weights of critical,high,default,low in weighted mode.")
    ] = "8,4,2,1"
    consumer_name: Annotated[str, _d("Stable consumer name; empty: `<hostname>-<pid>`.")] = ""
    handler_modules: Annotated[
        str, _d("Comma-separated modules imported at executor start to register handlers.")
    ] = ""
    shutdown_grace_ms: Annotated[
        int,
        _d(
            "On SIGTERM, how long in-flight handlers may finish before they are cancelled "
            "and left pending."
        ),
    ] = 25_000
    read_block_ms: Annotated[int, _d("Longest blocking XREADGROUP (capped at 1000).")] = 1000
    complete_batch_max: Annotated[
        int, _d("Most outcomes an executor commits in one statement.")
    ] = 1000
    complete_linger_ms: Annotated[
        int, _d("How long an executor waits to gather outcomes into one commit.")
    ] = 2
    result_max_bytes: Annotated[
        int,
        _d(
            "Largest handler result stored (its JSON); a larger one, or one that is not JSON, "
            "fails the attempt without retry (dead letter reason `bad_result`)."
        ),
    ] = 1024 * 1024
    pause_poll_ms: Annotated[
        int,
        _d(
            "How often an executor reads which queues are paused (a paused priority or type "
            "stops starting within this)."
        ),
    ] = 1000
    limits_poll_ms: Annotated[
        int,
        _d(
            "How often an executor reads the concurrency caps (`taskstream limits set` takes "
            "hold within this)."
        ),
    ] = 1000

    def weights(self) -> dict[str, int]:
        """The weight of each priority, in ``PRIORITIES`` order."""
        return dict(zip(PRIORITIES, _parse_weights(self.priority_weights), strict=True))


class WatcherConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The watcher's roles: the due mover, the repair of lost entries, the schedules and the
    release of parked tasks."""

    watch_interval_ms: Annotated[
        int,
        _d(
            "How often the watcher looks for due retries and delayed tasks (the most a due "
            "task is late)."
        ),
    ] = 100
    watch_batch: Annotated[int, _d("Most due rows the watcher moves in one transaction.")] = 1000
    repair_after_ms: Annotated[
        int,
        _d(
            "A queued task whose entry should have been delivered this long ago is "
            "re-published (its entry was lost)."
        ),
    ] = 30_000
    repair_interval_ms: Annotated[
        int, _d("How often the watcher checks for lost entries and a lost Redis.")
    ] = 5_000
    outbox_grace_ms: Annotated[
        int,
        _d(
            "An outbox row older than this (its publisher died, or Redis refused) has its "
            "queued tasks re-sent by the watcher."
        ),
    ] = 5_000
    sweep_batch: Annotated[
        int,
        _d(
            "Tasks the slow sweeps (the repair's and the orphans') read per pass: the "
            "backstop for entries lost in ways nothing else notices."
        ),
    ] = 5_000
    outbox_interval_ms: Annotated[
        int,
        _d(
            "How often the watcher scans for tasks enqueued in applications' transactions "
            "besides being woken by their notification (the backstop if one is missed)."
        ),
    ] = 1_000
    schedule_batch: Annotated[
        int,
        _d(
            "Most schedules, and most ticks of one schedule, the watcher fires in one "
            "transaction (a long catch-up continues in the next pass at once)."
        ),
    ] = 1000
    schedule_grace_ms: Annotated[
        int,
        _d(
            "A tick fired at most this late counts as on time (`enqueued`); later, within the "
            "schedule's `catchup`, as `caught_up`; later still it is `missed`."
        ),
    ] = 30_000
    unwait_interval_ms: Annotated[
        int,
        _d(
            "How often the watcher re-publishes tasks waiting for a concurrency slot, as many "
            "as their cap has free (the most a waiting task starts after a slot frees)."
        ),
    ] = 100


class JanitorConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The janitor's roles: reclaim (with poison), orphans, trimming, consumers, gauges."""

    janitor_interval_ms: Annotated[int, _d("How often the janitor reclaims, trims and prunes.")] = (
        1000
    )
    reclaim_batch: Annotated[
        int, _d("Entries per XAUTOCLAIM call (the janitor follows the cursor).")
    ] = 100
    consumer_idle_ms: Annotated[
        int, _d("A consumer idle this long with nothing pending is removed.")
    ] = 3_600_000


_DAY_MS = 24 * 3_600_000


class RetentionConfig(msgspec.Struct, frozen=True, kw_only=True):
    """What the janitor's retention keeps, and for how long after it ended (milliseconds)."""

    keep_succeeded_ms: Annotated[
        int, _d("How long a succeeded task (with its attempts) is kept after it finished.")
    ] = 7 * _DAY_MS
    keep_cancelled_ms: Annotated[int, _d("How long a cancelled task is kept.")] = 7 * _DAY_MS
    keep_dead_ms: Annotated[
        int, _d("How long a dead task is kept, with its dead letter and error history.")
    ] = 30 * _DAY_MS
    idempotency_ttl_ms: Annotated[
        int,
        _d("How long an idempotency key holds: after it, the same key makes a new task."),
    ] = _DAY_MS
    keep_dead_entries_ms: Annotated[
        int, _d("How long undecodable stream entries are kept in `dead_entries`.")
    ] = 30 * _DAY_MS
    retention_interval_ms: Annotated[int, _d("How often the retention pass runs.")] = 10_000
    retention_batch: Annotated[
        int, _d("Most rows one retention statement reads or deletes (bounded locks).")
    ] = 1000


class ConsoleConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The operators' web console that ingest serves under `/ui/`."""

    console_secret: Annotated[
        str,
        _d(
            "Key that signs the console's session cookies and CSRF tokens; empty: a random "
            "one per process (sessions end when ingest restarts; give every ingest replica "
            "the same value behind a load balancer)."
        ),
    ] = ""
    console_session_ttl_ms: Annotated[
        int, _d("How long a console session lasts before signing in again.")
    ] = 8 * 3_600_000
    console_refresh_ms: Annotated[int, _d("How often the console's overview refreshes.")] = 3000
    console_sample_ms: Annotated[
        int,
        _d("How often ingest samples the streams' counters for the console's throughput."),
    ] = 5000


class ClientConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Where the Python client (``taskstream.Client``, ``AsyncClient``, a handler's
    ``ctx.client``) finds the API; read by the client itself, from the process it runs in."""

    api_url: Annotated[
        str, _d("Base URL of the ingest API for `taskstream.Client` and `ctx.client`.")
    ] = "http://127.0.0.1:8080"
    api_key: Annotated[
        str, _d("Sent by the client as `Authorization: Bearer <key>` when set (never shown).")
    ] = ""


class Config(msgspec.Struct, frozen=True, kw_only=True):
    """Every section; ``load`` builds it from the environment."""

    stores: StoreConfig = msgspec.field(default_factory=StoreConfig)
    service: ServiceConfig = msgspec.field(default_factory=ServiceConfig)
    ingest: IngestConfig = msgspec.field(default_factory=IngestConfig)
    access: AccessConfig = msgspec.field(default_factory=AccessConfig)
    tasks: TaskDefaults = msgspec.field(default_factory=TaskDefaults)
    lease: LeaseConfig = msgspec.field(default_factory=LeaseConfig)
    executor: ExecutorConfig = msgspec.field(default_factory=ExecutorConfig)
    watcher: WatcherConfig = msgspec.field(default_factory=WatcherConfig)
    janitor: JanitorConfig = msgspec.field(default_factory=JanitorConfig)
    retention: RetentionConfig = msgspec.field(default_factory=RetentionConfig)
    console: ConsoleConfig = msgspec.field(default_factory=ConsoleConfig)
    client: ClientConfig = msgspec.field(default_factory=ClientConfig)


SECTIONS: dict[str, type[msgspec.Struct]] = {
    name: typing.get_type_hints(Config)[name] for name in Config.__struct_fields__
}

# Knob → environment variable. The Go scheduler's names are kept where they mean the same.
ENV_NAMES: dict[str, str] = {
    "namespace": "TASKSTREAM_NAMESPACE",
    "db_pool_min": "DB_POOL_MIN",
    "db_pool_max": "DB_POOL_MAX",
    "log_level": "LOG_LEVEL",
    "log_format": "LOG_FORMAT",
    "api_url": "TASKSTREAM_URL",
    "api_key": "TASKSTREAM_API_KEY",
}

# Secrets: ``taskstream config`` shows whether they are set, never their value.
SECRETS = ("api_key", "console_secret")

# Values that must be positive (zero or less makes no sense or divides by zero).
POSITIVE = (
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
    "http_port",
    "publish_retry_ms",
    "read_block_ms",
    "redis_timeout_ms",
    "outbox_grace_ms",
    "sweep_batch",
    "outbox_interval_ms",
    "pause_poll_ms",
    "result_max_bytes",
    "schedule_batch",
    "keep_succeeded_ms",
    "keep_cancelled_ms",
    "keep_dead_ms",
    "idempotency_ttl_ms",
    "keep_dead_entries_ms",
    "retention_interval_ms",
    "retention_batch",
    "console_session_ttl_ms",
    "console_refresh_ms",
    "console_sample_ms",
)
NON_NEGATIVE = (
    "api_key_cache_ms",
    "api_key_touch_ms",
    "jwt_leeway_s",
    "limits_cache_ms",
    "limits_poll_ms",
    "fair_share_entries",
    "unwait_interval_ms",
    "prefetch",
    "prefetch_fast",
    "fast_handler_ms",
    "db_pool_min",
    "retry_base_ms",
    "retry_max_ms",
    "retry_jitter_ms",
    "shutdown_grace_ms",
    "complete_linger_ms",
    "schedule_grace_ms",
)


class Field(msgspec.Struct, frozen=True):
    section: str
    name: str
    default: Any
    description: str


def _fields() -> Iterator[Field]:
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls, include_extras=True)
        for name, default in zip(cls.__struct_fields__, cls.__struct_defaults__, strict=True):
            metas = getattr(hints[name], "__metadata__", ())
            text = next((m.description for m in metas if isinstance(m, msgspec.Meta)), "")
            yield Field(section, name, default, text or "")


FIELDS_INFO: dict[str, Field] = {f.name: f for f in _fields()}
FIELDS: tuple[str, ...] = tuple(FIELDS_INFO)
DESCRIPTIONS: dict[str, str] = {n: f.description for n, f in FIELDS_INFO.items()}


def env_name(field: str) -> str:
    return ENV_NAMES.get(field, field.upper())


def defaults() -> dict[str, Any]:
    return {name: f.default for name, f in FIELDS_INFO.items()}


def value(config: Config, field: str) -> Any:
    """One knob's value, by its flat name."""
    return getattr(getattr(config, FIELDS_INFO[field].section), field)


def build(values: Mapping[str, Any], base: Config | None = None) -> Config:
    """``base`` (default: the defaults) with the flat ``values`` applied, validated."""
    unknown = [k for k in values if k not in FIELDS_INFO]
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r}")
    base = base or Config()
    sections: dict[str, Any] = {}
    for section in SECTIONS:
        changed = {k: v for k, v in values.items() if FIELDS_INFO[k].section == section}
        current = getattr(base, section)
        sections[section] = msgspec.structs.replace(current, **changed) if changed else current
    config = Config(**sections)
    validate(config)
    return config


def replace(config: Config, **values: Any) -> Config:
    """``config`` with some knobs changed, by their flat names (tests, the bootstrap)."""
    return build(values, config)


def load(environ: Mapping[str, str] | None = None, **overrides: Any) -> Config:
    """Read the configuration from ``environ`` (default: the process environment).

    Raises ``ConfigError`` naming the variable when a value does not parse or makes no sense.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field, info in FIELDS_INFO.items():
        name = env_name(field)
        raw = env.get(name)
        if raw is None or raw == "":
            continue
        if isinstance(info.default, float):
            try:
                values[field] = float(raw)
            except ValueError:
                raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        elif isinstance(info.default, int):
            try:
                values[field] = int(raw.replace("_", ""))
            except ValueError:
                raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        else:
            values[field] = raw
    values.update(overrides)
    return build(values)


def validate(config: Config) -> None:
    """Check values that parse but make no sense; raise ``ConfigError`` naming the variable."""
    for field in POSITIVE:
        if value(config, field) <= 0:
            raise ConfigError(f"{env_name(field)} must be positive, got {value(config, field)}")
    for field in NON_NEGATIVE:
        if value(config, field) < 0:
            raise ConfigError(f"{env_name(field)} must not be negative")
    if config.stores.redis_timeout_ms <= config.executor.read_block_ms:
        raise ConfigError("REDIS_TIMEOUT_MS must exceed READ_BLOCK_MS (a blocking read waits)")
    r = config.retention
    if r.idempotency_ttl_ms > min(r.keep_succeeded_ms, r.keep_cancelled_ms, r.keep_dead_ms):
        raise ConfigError(
            "IDEMPOTENCY_TTL_MS must not exceed KEEP_SUCCEEDED_MS, KEEP_CANCELLED_MS or "
            "KEEP_DEAD_MS (a key must not outlive the task it names)"
        )
    if config.stores.db_pool_min > config.stores.db_pool_max:
        raise ConfigError("DB_POOL_MIN must not exceed DB_POOL_MAX")
    if config.executor.priority_mode not in ("weighted", "strict"):
        raise ConfigError("PRIORITY_MODE must be 'weighted' or 'strict'")
    _parse_weights(config.executor.priority_weights)
    if config.service.log_format not in ("auto", "json", "text"):
        raise ConfigError("LOG_FORMAT must be 'auto', 'json' or 'text'")
    _validate_access(config.access)
    namespace = config.stores.namespace
    if not namespace or any(c in namespace for c in " {}"):
        raise ConfigError("TASKSTREAM_NAMESPACE must be non-empty, without spaces or braces")


AUTH_MODES = ("off", "keys", "jwt", "keys,jwt")
JWT_ALGORITHMS = ("HS256", "RS256", "ES256")


def auth_kinds(access: AccessConfig) -> frozenset[str]:
    """The credentials ingest accepts: ``keys``, ``jwt``, both, or none (auth off)."""
    kinds = frozenset(m.strip() for m in access.auth_mode.split(","))
    return frozenset() if kinds == {"off"} else kinds


def _validate_access(a: AccessConfig) -> None:
    kinds = auth_kinds(a)
    mode = "off" if not kinds else ",".join(sorted(kinds, reverse=True))
    if mode not in AUTH_MODES:
        raise ConfigError("AUTH_MODE must be off, keys, jwt or keys,jwt")
    if a.auth_allow_insecure not in (0, 1):
        raise ConfigError("AUTH_ALLOW_INSECURE must be 0 or 1")
    if a.jwt_algorithm not in JWT_ALGORITHMS:
        raise ConfigError(f"JWT_ALGORITHM must be one of {', '.join(JWT_ALGORITHMS)}")
    if "jwt" in mode:
        if a.jwt_algorithm == "HS256" and len(a.jwt_secret.encode()) < 32:
            raise ConfigError("JWT_SECRET must be at least 32 bytes for HS256")
        if a.jwt_algorithm != "HS256" and not (a.jwt_public_key or a.jwt_jwks_file):
            raise ConfigError(f"{a.jwt_algorithm} needs JWT_PUBLIC_KEY or JWT_JWKS_FILE")
        if not a.jwt_tenant_claim or not a.jwt_scopes_claim:
            raise ConfigError("JWT_TENANT_CLAIM and JWT_SCOPES_CLAIM must not be empty")
    if a.api_key_bootstrap and not looks_like_key(a.api_key_bootstrap):
        raise ConfigError(
            "API_KEY_BOOTSTRAP must be ts_live_ followed by at least 32 of A-Z a-z 0-9 _ -"
        )


def _parse_weights(raw: str) -> list[int]:
    try:
        weights = [int(w) for w in raw.split(",")]
    except ValueError:
        raise ConfigError(f"PRIORITY_WEIGHTS must be four integers, got {raw!r}") from None
    if len(weights) != len(PRIORITIES) or any(w <= 0 for w in weights):
        raise ConfigError(f"PRIORITY_WEIGHTS must be four positive integers, got {raw!r}")
    return weights


def markdown_table() -> str:
    """The README's configuration table, generated from the Structs, one group per section."""
    lines = ["| section | variable | default | meaning |", "| --- | --- | --- | --- |"]
    for f in FIELDS_INFO.values():
        shown = f"`{f.default}`" if f.default != "" else "(empty)"
        lines.append(f"| {f.section} | `{env_name(f.name)}` | {shown} | {f.description} |")
    return "\n".join(lines)
