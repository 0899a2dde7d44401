"""OpenTelemetry tracing, configured by the standard `OTEL_*` variables.

`OTEL_TRACES_EXPORTER` = `otlp` (to `OTEL_EXPORTER_OTLP_ENDPOINT`, http/protobuf),
`console`, or `none` (the default); `OTEL_SDK_DISABLED=true` turns tracing off;
`OTEL_SERVICE_NAME` overrides the process's service name; `OTEL_BSP_*` tune batching.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from mbs.errors import MbsError

TRACER_NAME = "mbs"
_provider: TracerProvider | None = None


def setup_tracing(service: str) -> TracerProvider | None:
    """Install a tracer provider for this process; None when tracing is off."""
    global _provider  # noqa: PLW0603 (one provider per process, installed at start-up)
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "none").split(",")]
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true" or names == ["none"]:
        return None
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service)})
    provider = TracerProvider(resource=resource)
    for name in names:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
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
    return trace.get_tracer(TRACER_NAME)


def inject_headers(headers: dict[str, str]) -> dict[str, str]:
    """Add `traceparent` (and `tracestate`, `baggage`) of the current span to headers."""
    inject(headers)
    return headers


def context_from(carrier: dict[str, str] | None) -> Context:
    """The trace context stored in a carrier (e.g. a saved run), for resuming a trace."""
    return extract(carrier or {})
