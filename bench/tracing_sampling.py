"""What tracing costs in-process, by sampling and tail keeping: journey-like traces (a root
and 6 children, with the engine's and caller's attributes) per second, in one run, the
configurations interleaved round by round (medians reported).

    .venv/bin/python -m bench.tracing_sampling --traces 1500 --rounds 5

Spans go through a BatchSpanProcessor to an exporter that does the OTLP work (encodes each
batch to protobuf bytes) and sends nothing; the time includes the final flush, so export
work done on the processor's thread counts. The queue is made large enough that no span is
dropped (the default 2048 would drop under a tight loop, hiding export cost).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBasedTraceIdRatio,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from mbs.telemetry import tracing
from mbs.telemetry.sampling import KeepPolicy, install

STEPS = 6
KEEP = KeepPolicy()
NO_KEEP = KeepPolicy(errors=False, slow_ms=None)
FLOOR = KeepPolicy(errors=False, slow_ms=None, max_decided=-1)  # recorded, no keeper
NO_ENCODING = KeepPolicy(errors=False, slow_ms=None, max_decided=-2)  # exporter does nothing
CONFIGS: dict[str, tuple[float, KeepPolicy] | None] = {
    "tracing off (no SDK)": None,
    "ratio 1.0, MBS_TRACE_KEEP=none": (1.0, NO_KEEP),
    "ratio 1.0, keep errors,slow": (1.0, KEEP),
    "ratio 1.0, KEEP=none, exporter encodes nothing": (1.0, NO_ENCODING),
    "ratio 0.1, MBS_TRACE_KEEP=none": (0.1, NO_KEEP),
    "ratio 0.1, keep errors,slow": (0.1, KEEP),
    "ratio 0.1, recorded, no keeper (SDK floor)": (0.1, FLOOR),
    "ratio 0.01, keep errors,slow": (0.01, KEEP),
}


class RecordAll(Sampler):
    """Records what the head drops, with its attributes (the SDK's AlwaysRecordSampler keeps
    a DROP result's attributes: none), and no tail keeper: what recording costs the SDK."""

    def __init__(self, head: Sampler) -> None:
        self.head = head

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: trace.SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[trace.Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        result = self.head.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )
        if result.decision is Decision.DROP:
            return SamplingResult(Decision.RECORD_ONLY, attributes, result.trace_state)
        return result

    def get_description(self) -> str:
        return "RecordAll"


class EncodingExporter(SpanExporter):
    """Does an OTLP exporter's CPU work, sends nothing."""

    def __init__(self, encode: bool = True) -> None:
        self.encode = encode
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.encode:
            encode_spans(spans).SerializeToString()
        self.spans += len(spans)
        return SpanExportResult.SUCCESS


def journeys(tracer: trace.Tracer, count: int, every_failed: int) -> None:
    for i in range(count):
        status = "failed" if every_failed and i % every_failed == 0 else "completed"
        attributes: dict[str, str | int] = {
            "mbs.journey": "bench",
            "mbs.journey.version": 1,
            "mbs.journey.id": str(i),
        }
        with tracer.start_as_current_span("journey bench", attributes=attributes) as root:
            for step in range(STEPS):
                with tracer.start_as_current_span(
                    f"step s{step}",
                    kind=trace.SpanKind.CLIENT,
                    attributes={
                        "mbs.unit": "pricing",
                        "mbs.owner": "team",
                        "mbs.capability": "pricing.quote",
                        "mbs.provider": "pricing",
                        "mbs.step": f"s{step}",
                        "mbs.shadow": False,
                    },
                ) as span:
                    span.set_attribute("mbs.outcome", "ok")
                    span.set_attribute("mbs.cost", 0.001)
                    span.set_attribute("mbs.price", 0.01)
            root.set_attribute("mbs.journey.status", status)
            if status != "completed":
                tracing.mark_error(root, status)
            root.set_attribute("mbs.price", 0.06)
            root.set_attribute("mbs.cost", 0.006)


def measure(config: tuple[float, KeepPolicy] | None, count: int, every_failed: int) -> float:
    """Traces per second, flush included."""
    if config is None:
        start = time.perf_counter()
        journeys(trace.NoOpTracer(), count, every_failed)
        return count / (time.perf_counter() - start)
    ratio, policy = config
    exporter = EncodingExporter(encode=policy is not NO_ENCODING)
    provider = TracerProvider(sampler=ParentBasedTraceIdRatio(ratio), shutdown_on_exit=False)
    processor = BatchSpanProcessor(exporter, max_queue_size=count * 8)
    if policy is FLOOR:  # what recording every span costs the SDK alone (BSP skips unsampled)
        provider.sampler = RecordAll(provider.sampler)
    install(provider, [processor], policy)
    tracer = provider.get_tracer("bench")
    start = time.perf_counter()
    journeys(tracer, count, every_failed)
    provider.force_flush()
    elapsed = time.perf_counter() - start
    provider.shutdown()
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", type=int, default=1500, help="traces per measurement")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--failed", type=float, default=0.01, help="share of failed journeys")
    args = parser.parse_args()
    every_failed = round(1 / args.failed) if args.failed > 0 else 0
    rates: dict[str, list[float]] = {name: [] for name in CONFIGS}
    for config in CONFIGS.values():  # warm-up
        measure(config, max(args.traces // 10, 50), every_failed)
    for _ in range(args.rounds):
        for name, config in CONFIGS.items():
            gc.collect()
            rates[name].append(measure(config, args.traces, every_failed))
    base = statistics.median(rates["tracing off (no SDK)"])
    full = statistics.median(rates["ratio 1.0, MBS_TRACE_KEEP=none"])
    print(f"{args.traces} traces x {args.rounds} rounds, {args.failed:.0%} failed, 1+{STEPS} spans")
    print("| configuration | traces/s | spans/s | us per trace | us over no SDK | vs ratio 1.0 |")
    print("|---|---|---|---|---|---|")
    for name, values in rates.items():
        rate = statistics.median(values)
        us = 1e6 / rate
        over = us - 1e6 / base
        print(
            f"| {name} | {rate:,.0f} | {rate * (1 + STEPS):,.0f} | {us:.0f} | {over:.0f} "
            f"| {rate / full - 1:+.0%} |"
        )


if __name__ == "__main__":
    main()
