"""Sampling keeps tracing cheap, and the tail decision keeps the traces worth reading: at any
head sampling, a journey that failed (status ERROR, a journey status other than completed, a
step outcome other than ok) or was slow is exported whole; a fast completed one is not."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from gateway.definition import JourneyDefinition
from mbs.errors import MbsError
from mbs.telemetry import tracing
from mbs.telemetry.sampling import KEPT_ATTRIBUTE, KeepPolicy, KeepSampler, TailKeeper, install
from tests.engine_world import World, contract, live_through

SECOND_NS = 1_000_000_000
STEPS = 6


class Setup:
    def __init__(self, ratio: float, policy: KeepPolicy) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(sampler=ParentBasedTraceIdRatio(ratio))
        self.keeper = install(self.provider, [SimpleSpanProcessor(self.exporter)], policy)
        self.tracer = self.provider.get_tracer("test")

    def exported(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def journey(
        self,
        status: str = "completed",
        seconds: float = 0.01,
        outcomes: tuple[str, ...] = ("ok",) * STEPS,
        parent: SpanContext | None = None,
    ) -> int:
        """A journey-like trace: a root and one child per step, as the engine makes them;
        the trace id."""
        start = 1_000 * SECOND_NS
        context = None if parent is None else trace.set_span_in_context(NonRecordingSpan(parent))
        root = self.tracer.start_span(
            "journey checkout",
            context=context,
            attributes={"mbs.journey": "checkout"},
            start_time=start,
        )
        with trace.use_span(root, end_on_exit=False):
            for i, outcome in enumerate(outcomes):
                step_attributes = {"mbs.step": f"s{i}"}
                with self.tracer.start_as_current_span(
                    f"step s{i}", attributes=step_attributes
                ) as step:
                    step.set_attribute("mbs.outcome", outcome)
        root.set_attribute("mbs.journey.status", status)
        if status != "completed":
            tracing.mark_error(root, status)
        root.end(end_time=start + int(seconds * SECOND_NS))
        return root.get_span_context().trace_id


def keeper(setup: Setup) -> TailKeeper:
    assert setup.keeper is not None
    return setup.keeper


@pytest.fixture
def dropping() -> Iterator[Setup]:
    """Ratio 0: the head sampler drops every trace; only the tail decision exports."""
    setup = Setup(0.0, KeepPolicy())
    yield setup
    setup.provider.shutdown()


def test_a_fast_completed_journey_is_not_exported_at_ratio_zero(dropping: Setup) -> None:
    dropping.journey()
    assert dropping.exported() == []
    assert (keeper(dropping).discarded, keeper(dropping).kept) == (1, 0)
    assert keeper(dropping).buffered == 0  # nothing held after the decision


@pytest.mark.parametrize("status", ["failed", "timed_out", "compensation_failed"])
def test_a_failed_journey_is_exported_with_all_its_spans(dropping: Setup, status: str) -> None:
    trace_id = dropping.journey(status=status)
    spans = dropping.exported()
    assert sorted(s.name for s in spans) == ["journey checkout"] + [f"step s{i}" for i in range(6)]
    assert {s.context.trace_id for s in spans if s.context} == {trace_id}
    root = next(s for s in spans if s.parent is None)
    assert root.context is not None
    assert root.status.status_code is trace.StatusCode.ERROR
    assert root.status.description == status
    assert root.attributes is not None
    assert root.attributes["mbs.journey.status"] == status
    for span in spans:
        assert span.context is not None
        assert span.context.trace_flags.sampled  # exporters see them as sampled
        assert span.attributes is not None
        assert span.attributes[KEPT_ATTRIBUTE] == "error"
        started_with = "mbs.journey" if span is root else "mbs.step"
        assert started_with in span.attributes, "the attributes given at the start are kept"
        if span is not root:
            assert span.parent is not None
            assert span.parent.span_id == root.context.span_id
    assert keeper(dropping).kept == 1


def test_a_failed_step_keeps_the_trace_even_if_the_journey_completed(dropping: Setup) -> None:
    dropping.journey(outcomes=("ok", "timeout", "ok"))
    assert len(dropping.exported()) == 4


def test_an_exception_in_a_step_keeps_the_trace(dropping: Setup) -> None:
    root = dropping.tracer.start_span("journey checkout")
    with trace.use_span(root, end_on_exit=False):
        with dropping.tracer.start_as_current_span("step ok"):
            pass
        with (
            pytest.raises(RuntimeError),
            dropping.tracer.start_as_current_span("step boom"),
        ):
            raise RuntimeError("boom")
    root.end()
    assert sorted(s.name for s in dropping.exported()) == [
        "journey checkout",
        "step boom",
        "step ok",
    ]


def test_a_slow_journey_is_exported_and_a_quick_one_is_not() -> None:
    setup = Setup(0.0, KeepPolicy(slow_ms=1000))
    setup.journey(seconds=0.9)
    assert setup.exported() == []
    setup.journey(seconds=1.2)
    spans = setup.exported()
    assert len(spans) == 1 + STEPS
    assert {s.attributes[KEPT_ATTRIBUTE] for s in spans if s.attributes} == {"slow"}


def test_what_the_policy_leaves_out_is_not_kept() -> None:
    errors_only = Setup(0.0, KeepPolicy(slow_ms=None))
    errors_only.journey(seconds=5)
    assert errors_only.exported() == []
    slow_only = Setup(0.0, KeepPolicy(errors=False))
    slow_only.journey(status="failed")
    assert slow_only.exported() == []
    slow_only.journey(status="failed", seconds=2)
    assert len(slow_only.exported()) == 1 + STEPS


def test_keep_none_drops_unsampled_spans_at_creation() -> None:
    setup = Setup(0.0, KeepPolicy(errors=False, slow_ms=None))
    assert setup.keeper is None
    assert not isinstance(setup.provider.sampler, KeepSampler)
    span = setup.tracer.start_span("journey checkout")
    assert not span.is_recording()  # the cheap path: nothing recorded at all
    span.end()
    setup.journey(status="failed", seconds=5)
    assert setup.exported() == []


def test_sampled_traces_are_exported_as_before() -> None:
    setup = Setup(1.0, KeepPolicy())
    setup.journey()
    setup.journey(status="failed")
    spans = setup.exported()
    assert len(spans) == 2 * (1 + STEPS)
    assert all(KEPT_ATTRIBUTE not in (s.attributes or {}) for s in spans)
    assert (keeper(setup).kept, keeper(setup).discarded, keeper(setup).buffered) == (0, 0, 0)


def test_the_per_trace_bound_keeps_the_newest_spans() -> None:
    setup = Setup(0.0, KeepPolicy(max_trace_spans=4))
    setup.journey(status="failed", outcomes=("ok",) * 10)
    names = [s.name for s in setup.exported()]
    assert names == ["step s7", "step s8", "step s9", "journey checkout"]
    assert keeper(setup).dropped == 7


def test_the_total_bound_drops_the_oldest_traces() -> None:
    setup = Setup(0.0, KeepPolicy(max_spans=10))
    roots = [setup.tracer.start_span(f"journey {i}") for i in range(5)]
    for root in roots:
        with trace.use_span(root, end_on_exit=False):
            for step in range(3):
                setup.tracer.start_span(f"step {step}").end()
                assert keeper(setup).buffered <= 10
    assert keeper(setup).dropped == 5 * 3 - 10 + 1  # whole oldest traces go
    for root in roots:
        tracing.mark_error(root, "failed")
        root.end()
    exported = [s.name for s in setup.exported()]
    assert exported.count("step 0") == 3  # the three newest traces are whole
    assert [n for n in exported if n.startswith("journey")] == [f"journey {i}" for i in range(5)]
    assert keeper(setup).buffered == 0


def test_a_span_ending_after_its_root_follows_the_decision(dropping: Setup) -> None:
    for status, exported in (("completed", 0), ("failed", 3)):
        root = dropping.tracer.start_span("journey checkout")
        with trace.use_span(root, end_on_exit=False):
            dropping.tracer.start_span("step s0").end()
            shadow = dropping.tracer.start_span("step s0 (shadow)")
        root.set_attribute("mbs.journey.status", status)
        root.end()
        shadow.end()  # after the root, as a shadow call may
        assert len(dropping.exported()) == exported
    assert keeper(dropping).buffered == 0


def test_a_unit_keeps_its_own_failed_spans_of_an_unsampled_trace(dropping: Setup) -> None:
    """In a unit the local root has a remote parent (the gateway's step span, not sampled):
    its spans are kept if they failed there, dropped otherwise."""
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(0))
    dropping.journey(outcomes=("ok",), parent=remote)
    assert dropping.exported() == []
    dropping.journey(outcomes=("out_of_stock",), parent=remote)  # the unit's business error
    spans = dropping.exported()
    assert len(spans) == 2
    assert {s.context.trace_id for s in spans if s.context} == {0xABC}
    sampled = SpanContext(0xABD, 0xDEF, is_remote=True, trace_flags=TraceFlags(1))
    dropping.journey(outcomes=("ok",), parent=sampled)  # sampled by the gateway: as before
    assert len(dropping.exported()) == 4


def test_a_resumed_run_of_a_discarded_trace_is_decided_afresh(dropping: Setup) -> None:
    trace_id = dropping.journey()
    resumed = SpanContext(trace_id, 0x1234, is_remote=True, trace_flags=TraceFlags(0))
    dropping.journey(status="failed", parent=resumed)
    assert len(dropping.exported()) == 1 + STEPS


def test_policy_from_the_environment() -> None:
    assert KeepPolicy.from_env({}) == KeepPolicy()
    assert not KeepPolicy.from_env({"MBS_TRACE_KEEP": "none"}).active
    assert KeepPolicy.from_env({"MBS_TRACE_KEEP": "errors"}) == KeepPolicy(slow_ms=None)
    policy = KeepPolicy.from_env(
        {
            "MBS_TRACE_KEEP": "slow",
            "MBS_TRACE_SLOW_MS": "250",
            "MBS_TRACE_BUFFER_SPANS": "100",
            "MBS_TRACE_BUFFER_TRACE_SPANS": "20",
        }
    )
    assert policy == KeepPolicy(errors=False, slow_ms=250, max_spans=100, max_trace_spans=20)
    for bad in (
        {"MBS_TRACE_KEEP": "all"},
        {"MBS_TRACE_SLOW_MS": "soon"},
        {"MBS_TRACE_SLOW_MS": "-1"},
        {"MBS_TRACE_BUFFER_SPANS": "0"},
    ):
        with pytest.raises(MbsError):
            KeepPolicy.from_env(bad)


def test_the_head_sampler_comes_from_the_otel_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0.25")
    provider = TracerProvider(shutdown_on_exit=False)  # as setup_tracing builds it
    install(provider, [SimpleSpanProcessor(InMemorySpanExporter())], KeepPolicy())
    assert isinstance(provider.sampler, KeepSampler)
    assert "TraceIdRatioBased{0.25}" in provider.sampler.get_description()


@pytest.mark.parametrize(
    ("fault", "status", "exported"), [("ok", "completed", 0), ("business", "failed", 2)]
)
def test_the_engine_marks_a_failed_journey_so_its_trace_is_kept(
    dropping: Setup, monkeypatch: pytest.MonkeyPatch, fault: str, status: str, exported: int
) -> None:
    monkeypatch.setattr(tracing, "tracer", lambda: dropping.tracer)
    world = World([contract("c0", "c0.act", side_effects=False, price="0.01")], faults=[fault])
    step = {"id": "s0", "capability": "c0.act", "input": {"x": "$input.x"}}
    definition = JourneyDefinition(name="scripted", version=1, steps=[step])
    assert asyncio.run(live_through(world, definition)).status == status
    spans = {s.name: s for s in dropping.exported()}
    assert len(spans) == exported
    if exported:
        assert spans["journey scripted"].status.status_code is trace.StatusCode.ERROR
        assert spans["journey scripted"].status.description == "failed"


def test_local_roots_of_one_trace_open_at_once_are_decided_together(dropping: Setup) -> None:
    """Two messages of one journey handled at once by one unit: the trace is decided when
    the last of them ends, so the one that failed keeps the other's spans too."""
    remote = SpanContext(0xABC, 0xDEF, is_remote=True, trace_flags=TraceFlags(0))
    context = trace.set_span_in_context(NonRecordingSpan(remote))
    first = dropping.tracer.start_span("reserve process", context=context)
    second = dropping.tracer.start_span("release process", context=context)
    with trace.use_span(first, end_on_exit=False):
        dropping.tracer.start_span("reserve publish").end()
    first.end()
    with trace.use_span(second, end_on_exit=False):
        dropping.tracer.start_span("release publish").end()
    second.set_attribute("mbs.outcome", "failed")
    second.end()
    assert sorted(s.name for s in dropping.exported()) == [
        "release process",
        "release publish",
        "reserve process",
        "reserve publish",
    ]
