"""Tracing: one trace per task, from the HTTP request through the watcher to the executor.

The W3C ``traceparent`` travels with the task (stored on its row and carried in every stream
entry), so the executor's span joins the trace ingest started, or the caller's own trace when
the request had a ``traceparent`` header. Exporting is off by default and switched on by the
standard ``OTEL_TRACES_EXPORTER`` variable: ``console``, or ``otlp`` (with the
``opentelemetry-exporter-otlp-proto-http`` package installed and the usual ``OTEL_EXPORTER_OTLP_*``
variables). With exporting off, spans cost next to nothing and context still propagates.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Tracer, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from taskstream.shared.errors import ConfigError

_propagator = TraceContextTextMapPropagator()
_provider: TracerProvider = trace.NoOpTracerProvider()
_tracer: Tracer = _provider.get_tracer("taskstream")


def setup(service: str, environ: Mapping[str, str] | None = None) -> None:
    """Install an exporting provider when ``OTEL_TRACES_EXPORTER`` asks for one."""
    env = os.environ if environ is None else environ
    exporter_name = env.get("OTEL_TRACES_EXPORTER", "none").strip().lower()
    if exporter_name in ("", "none"):
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    exporter: SpanExporter
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    elif exporter_name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter,
            )
        except ImportError:
            raise ConfigError(
                "OTEL_TRACES_EXPORTER=otlp needs the opentelemetry-exporter-otlp-proto-http package"
            ) from None
        exporter = OTLPSpanExporter()
    else:
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER must be none, console or otlp, not {exporter_name!r}"
        )
    name = env.get("OTEL_SERVICE_NAME") or f"taskstream-{service}"
    provider = SdkProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    use(provider)


def use(provider: TracerProvider) -> None:
    """Trace with ``provider`` (``setup`` calls this; tests pass an in-memory one)."""
    global _provider, _tracer
    _provider = provider
    _tracer = provider.get_tracer("taskstream")


def enabled() -> bool:
    """Whether spans go anywhere (hot paths skip them otherwise)."""
    return not isinstance(_provider, trace.NoOpTracerProvider)


def tracer() -> Tracer:
    return _tracer


def shutdown() -> None:
    """Flush spans not yet exported (at service exit)."""
    flush = getattr(_provider, "shutdown", None)
    if flush is not None:
        flush()


def current_traceparent() -> str | None:
    """The ``traceparent`` of the current span, if there is a valid one."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def context_from(traceparent: str | None) -> otel_context.Context | None:
    """The context a ``traceparent`` names, to parent a span on; None without one."""
    if not traceparent:
        return None
    return _propagator.extract({"traceparent": traceparent})
