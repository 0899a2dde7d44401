"""OpenTelemetry tracing, configured by the standard `OTEL_*` variables.

`OTEL_TRACES_EXPORTER` = `otlp` (to `OTEL_EXPORTER_OTLP_ENDPOINT`, http/protobuf),
`console`, or `none` (the default); `OTEL_SDK_DISABLED=true` turns tracing off;
`OTEL_SERVICE_NAME` overrides the process's service name; `OTEL_BSP_*` tune batching;
`OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` choose the head sampling (the SDK reads them).
Traces that erred or were slow are kept whatever the sampling dropped: `mbs.telemetry.sampling`
(`MBS_TRACE_KEEP`, `MBS_TRACE_SLOW_MS`, `MBS_TRACE_BUFFER_SPANS`, `MBS_TRACE_BUFFER_TRACE_SPANS`).
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import StatusCode

from mbs.errors import MbsError
from mbs.telemetry import sampling

TRACER_NAME = "mbs"
_provider: TracerProvider | None = None
_tracer: tuple[trace.TracerProvider, trace.Tracer] | None = None


def setup_tracing(service: str) -> TracerProvider | None:
    """Install a tracer provider for this process; None when tracing is off."""
    global _provider  # noqa: PLW0603 (one provider per process, installed at start-up)
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "none").split(",")]
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true" or names == ["none"]:
        return None
    policy = sampling.KeepPolicy.from_env()
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service)})
    provider = TracerProvider(resource=resource)  # its sampler: from OTEL_TRACES_SAMPLER(_ARG)
    exporting = [BatchSpanProcessor(_exporter(name)) for name in names]
    sampling.install(provider, exporting, policy)
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,
        )

        return OTLPSpanExporter()
    raise MbsError(f"OTEL_TRACES_EXPORTER={name!r} is not supported; use otlp, console or none")


def shutdown_tracing() -> None:
    """Flush what is buffered (call on graceful shutdown)."""
    if _provider is not None:
        _provider.shutdown()


def tracer() -> trace.Tracer:
    """The process's tracer, made once per tracer provider (making one per span cost 2% of the
    gateway's CPU with tracing on)."""
    global _tracer  # noqa: PLW0603 (a cache of the provider's tracer)
    provider = trace.get_tracer_provider()
    if _tracer is None or _tracer[0] is not provider:
        _tracer = (provider, provider.get_tracer(TRACER_NAME))
    return _tracer[1]


def mark_error(span: trace.Span, description: str) -> None:
    """The span's work failed (a journey that did not complete): status ERROR, which also
    keeps its trace when sampling would drop it."""
    span.set_status(StatusCode.ERROR, description)


def inject_headers(headers: dict[str, str]) -> dict[str, str]:
    """Add `traceparent` (and `tracestate`, `baggage`) of the current span to headers."""
    inject(headers)
    return headers


def context_from(carrier: dict[str, str] | None) -> Context:
    """The trace context stored in a carrier (e.g. a saved run), for resuming a trace."""
    return extract(carrier or {})
