"""Head sampling by the standard variables, plus an in-process tail decision that keeps the
traces of errors and slow journeys whatever the head sampling dropped.

The head sampler is the SDK's own, from `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`
(production: `parentbased_traceidratio` at `0.1`). Keeping errors and slow journeys takes two
pieces, both installed by `install`:

- `KeepSampler` wraps the head sampler. Where it would drop a local root (a span with no
  parent, or with a parent from another process) or a child of a recorded local span, it
  answers RECORD_ONLY instead: the span is recorded, its trace flags still say "not sampled",
  so nothing downstream samples it and the exporters never see it as it is.
- `TailKeeper` wraps the exporting processors. Sampled spans pass straight through. Recorded
  but unsampled spans wait in a bounded buffer per trace id until the trace's last open local
  root ends; then the whole buffered trace is exported (as sampled, marked `mbs.trace.kept`)
  if any of its spans ended with status ERROR, an `mbs.journey.status` other than
  `completed` or an `mbs.outcome` other than `ok`, or if a local root lasted longer than
  `MBS_TRACE_SLOW_MS`; otherwise it is discarded.

The decision is per process: a unit sees only its own spans, so a journey that fails or is
slow at the gateway has its unsampled units' spans exported only where the unit's own spans
erred or were slow. `MBS_TRACE_KEEP=none` turns the tail decision off: unsampled spans are
then dropped at creation, the cheapest setting.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanContext, SpanKind, StatusCode, TraceFlags
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

from mbs.errors import MbsError

log = logging.getLogger("mbs.telemetry.sampling")

KEEP_ENV = "MBS_TRACE_KEEP"
SLOW_ENV = "MBS_TRACE_SLOW_MS"
BUFFER_ENV = "MBS_TRACE_BUFFER_SPANS"
TRACE_BUFFER_ENV = "MBS_TRACE_BUFFER_TRACE_SPANS"
KEPT_ATTRIBUTE = "mbs.trace.kept"  # on every span a tail decision exported: error or slow
JOURNEY_STATUS = "mbs.journey.status"
OUTCOME = "mbs.outcome"
_KEEP_WORDS = frozenset({"errors", "slow"})


@dataclass(frozen=True)
class KeepPolicy:
    """Which unsampled traces the tail decision keeps, and how much it may hold meanwhile."""

    errors: bool = True
    slow_ms: float | None = 1000.0  # None: slow traces are not kept
    max_spans: int = 10_000  # buffered spans of all traces together
    max_trace_spans: int = 256  # buffered spans of one trace
    max_decided: int = 4096  # decisions remembered for spans that end after their root

    @property
    def active(self) -> bool:
        return self.errors or self.slow_ms is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KeepPolicy:
        """`MBS_TRACE_KEEP` (`errors,slow`, `errors`, `slow` or `none`), `MBS_TRACE_SLOW_MS`,
        `MBS_TRACE_BUFFER_SPANS`, `MBS_TRACE_BUFFER_TRACE_SPANS`."""
        env = os.environ if environ is None else environ
        words = {w.strip().lower() for w in env.get(KEEP_ENV, "errors,slow").split(",")}
        words.discard("")
        if words == {"none"}:
            words = set()
        if not words <= _KEEP_WORDS:
            raise MbsError(f"{KEEP_ENV}={env[KEEP_ENV]!r}: use errors, slow, errors,slow or none")
        slow_ms = _number(env, SLOW_ENV, 1000.0, float)
        return cls(
            errors="errors" in words,
            slow_ms=slow_ms if "slow" in words else None,
            max_spans=int(_number(env, BUFFER_ENV, cls.max_spans, int, least=1)),
            max_trace_spans=int(_number(env, TRACE_BUFFER_ENV, cls.max_trace_spans, int, least=1)),
        )


def _number(
    env: Mapping[str, str], name: str, default: float, kind: type[float], least: float = 0
) -> float:
    raw = env.get(name, "").strip()
    try:
        value = kind(raw) if raw else default
    except ValueError:
        value = -1
    if value < least:
        raise MbsError(f"{name}={raw!r}: expected a number of at least {least}")
    return value


def install(
    provider: TracerProvider, processors: Sequence[SpanProcessor], policy: KeepPolicy
) -> TailKeeper | None:
    """Add the exporting processors to a provider built without a sampler (so it holds the
    one the `OTEL_TRACES_SAMPLER*` variables name), behind one tail keeper when the policy
    keeps anything. Call before the provider hands out a tracer."""
    if not policy.active:
        for processor in processors:
            provider.add_span_processor(processor)
        return None
    provider.sampler = KeepSampler(provider.sampler)  # tracers take the sampler when made
    keeper = TailKeeper(processors, policy)
    provider.add_span_processor(keeper)
    return keeper


class KeepSampler(Sampler):
    """The head sampler, except that what it drops is still recorded (RECORD_ONLY, sampled
    flag off) when it is a local root or the child of a recorded local span."""

    def __init__(self, head: Sampler) -> None:
        self.head = head

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        # A recorded span starts with the attributes of its sampling result: those it was
        # started with, which a DROP result no longer holds.
        parent = trace.get_current_span(parent_context)
        context = parent.get_span_context()
        local = context.is_valid and not context.is_remote
        if local and not context.trace_flags.sampled and parent.is_recording():
            # a child of a span this sampler recorded: the head already dropped its trace
            return SamplingResult(Decision.RECORD_ONLY, attributes, context.trace_state)
        result = self.head.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )
        if result.decision is not Decision.DROP or local:
            return result  # sampled, or the child of a dropped (or ended) local span
        return SamplingResult(Decision.RECORD_ONLY, attributes, result.trace_state)

    def get_description(self) -> str:
        return f"KeepSampler{{{self.head.get_description()}}}"


class _Trace:
    __slots__ = ("open", "reason", "spans")

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []
        self.open = 0  # local roots started and not yet ended
        self.reason: str | None = None  # why it is kept, once it is


class TailKeeper(SpanProcessor):
    """Passes sampled spans to its processors; buffers the recorded-but-unsampled ones per
    trace and exports a trace's buffer only if it erred or was slow (see the module)."""

    def __init__(self, processors: Sequence[SpanProcessor], policy: KeepPolicy) -> None:
        self._processors = tuple(processors)
        # those that do something when a span starts (a BatchSpanProcessor does not)
        self._starting = tuple(
            p for p in processors if type(p).on_start is not SpanProcessor.on_start
        )
        self._errors = policy.errors
        self._slow_ns = None if policy.slow_ms is None else int(policy.slow_ms * 1_000_000)
        self._max_spans = policy.max_spans
        self._max_trace_spans = policy.max_trace_spans
        self._max_decided = policy.max_decided
        self._traces: dict[int, _Trace] = {}  # oldest first
        self._decided: dict[int, str | None] = {}  # trace id -> why kept (None: discarded)
        self._buffered = 0
        self._lock = threading.Lock()
        self.dropped = 0  # spans lost to the buffer's bounds
        self.kept = 0  # traces exported by the tail decision
        self.discarded = 0  # traces it did not export

    @property
    def buffered(self) -> int:
        return self._buffered

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        for processor in self._starting:
            processor.on_start(span, parent_context)
        context = span.context
        parent = span.parent
        if context.trace_flags.sampled or (parent is not None and not parent.is_remote):
            return
        with self._lock:  # a new local root of an unsampled trace: its decision is to come
            entry = self._traces.get(context.trace_id)
            if entry is None:
                entry = self._traces[context.trace_id] = _Trace()
                self._evict_traces()
            entry.open += 1

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None:
            return
        if context.trace_flags.sampled:
            for processor in self._processors:
                processor.on_end(span)
            return
        reason = self._alarm(span) if self._errors else None
        parent = span.parent
        local_root = parent is None or parent.is_remote
        if reason is None and local_root and self._slow(span):
            reason = "slow"
        trace_id = context.trace_id
        with self._lock:
            entry = self._traces.get(trace_id)
            if (  # the common case, a child while its trace is open: held, nothing more
                entry is not None
                and not local_root
                and len(entry.spans) < self._max_trace_spans
                and self._buffered < self._max_spans
            ):
                entry.spans.append(span)
                self._buffered += 1
                if entry.reason is None:
                    entry.reason = reason
                return
            if entry is None and trace_id in self._decided:
                # ended after its local root (a shadow call, say): follows the decision
                verdict, spans = self._decided[trace_id], [span]
            else:
                if entry is None:
                    entry = self._traces[trace_id] = _Trace()
                    self._evict_traces()
                verdict, spans = self._buffer(entry, trace_id, span, reason, local_root)
        if verdict is not None:
            self._export(spans, verdict)

    def _buffer(
        self, entry: _Trace, trace_id: int, span: ReadableSpan, reason: str | None, root: bool
    ) -> tuple[str | None, list[ReadableSpan]]:
        """Hold the span (under the lock); the trace's spans and verdict when it is decided."""
        if reason is not None and entry.reason is None:
            entry.reason = reason
        if len(entry.spans) >= self._max_trace_spans:
            del entry.spans[0]
            self._buffered -= 1
            self._count_drops(1)
        entry.spans.append(span)
        self._buffered += 1
        if root:
            entry.open -= 1
        if not root or entry.open > 0:
            if self._buffered > self._max_spans:
                self._evict_oldest(keep=trace_id)
            return None, []
        del self._traces[trace_id]
        self._buffered -= len(entry.spans)
        self._decided[trace_id] = entry.reason
        if len(self._decided) > self._max_decided:
            del self._decided[next(iter(self._decided))]
        if entry.reason is None:
            self.discarded += 1
            return None, []
        self.kept += 1
        return entry.reason, entry.spans

    def _alarm(self, span: ReadableSpan) -> str | None:
        if span.status.status_code is StatusCode.ERROR:
            return "error"
        attributes = span.attributes
        if attributes:
            status = attributes.get(JOURNEY_STATUS)
            if status is not None and status != "completed":
                return "error"
            outcome = attributes.get(OUTCOME)
            if outcome is not None and outcome != "ok":
                return "error"
        return None

    def _slow(self, root: ReadableSpan) -> bool:
        limit = self._slow_ns
        return limit is not None and (root.end_time or 0) - (root.start_time or 0) > limit

    def _evict_oldest(self, keep: int) -> None:
        """Over the total bound: drop the oldest traces' spans (not the one being added to,
        unless it is the only one; then its oldest span)."""
        while self._buffered > self._max_spans:
            oldest = next(iter(self._traces))
            entry = self._traces[oldest]
            if oldest == keep and len(self._traces) > 1:
                self._traces[oldest] = self._traces.pop(oldest)  # to the young end
                continue
            if oldest == keep:
                del entry.spans[0]
                self._buffered -= 1
                self._count_drops(1)
                continue
            del self._traces[oldest]
            self._buffered -= len(entry.spans)
            self._count_drops(len(entry.spans))

    def _evict_traces(self) -> None:
        """Bound the number of traces too (local roots that never end hold no spans)."""
        if len(self._traces) > self._max_spans:
            oldest = next(iter(self._traces))
            entry = self._traces.pop(oldest)
            self._buffered -= len(entry.spans)
            self._count_drops(len(entry.spans))

    def _count_drops(self, count: int) -> None:
        before = self.dropped
        self.dropped += count
        if before // 10_000 != self.dropped // 10_000 or before == 0 < count:
            log.warning(
                "tail sampling buffer full: %d unsampled spans dropped so far "
                "(MBS_TRACE_BUFFER_SPANS=%d, MBS_TRACE_BUFFER_TRACE_SPANS=%d)",
                self.dropped,
                self._max_spans,
                self._max_trace_spans,
            )

    def _export(self, spans: list[ReadableSpan], reason: str) -> None:
        for span in spans:
            kept = _as_sampled(span, reason)
            for processor in self._processors:
                processor.on_end(kept)

    def shutdown(self) -> None:
        for processor in self._processors:
            processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return all(p.force_flush(timeout_millis) for p in self._processors)


def _as_sampled(span: ReadableSpan, reason: str) -> ReadableSpan:
    """A copy of the span with the sampled flag set (exporters pass only sampled spans) and
    the reason it was kept."""
    context = span.context
    if context is None:  # not so for the SDK's spans; the type allows it
        return span
    return ReadableSpan(
        name=span.name,
        context=SpanContext(
            context.trace_id,
            context.span_id,
            is_remote=context.is_remote,
            trace_flags=TraceFlags(context.trace_flags | TraceFlags.SAMPLED),
            trace_state=context.trace_state,
        ),
        parent=span.parent,
        resource=span.resource,
        attributes={**(span.attributes or {}), KEPT_ATTRIBUTE: reason},
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )
