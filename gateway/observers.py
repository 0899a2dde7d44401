"""The gateway's telemetry seam: the engine tells its observers what happened (a call was
answered or not, a shadow reply compared, a journey finished, a run parked), and each
observer keeps its own books: Prometheus metrics, the scorecards, the providers' observed
latency. Like Temporal's interceptors: the engine holds no metric code."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.models import Call, JourneyRun
from gateway.policy import ProviderChooser
from mbs.contract import Contract
from mbs.kafka import Reply
from mbs.telemetry import metrics


class JourneyObserver:
    """Does nothing by default; an observer overrides what it keeps books on."""

    def call_answered(
        self, run: JourneyRun, contract: Contract, call: Call, reply: Reply | None
    ) -> None:
        """A call got its reply (`call` already says what it meant), or none in time."""

    def shadow_compared(self, contract: Contract, agreement: str) -> None:
        """A shadow provider's reply was compared with the primary's."""

    def journey_finished(self, run: JourneyRun) -> None:
        """A run reached its outcome (its bill is made)."""

    def run_parked(self, run: JourneyRun) -> None:
        """A run's side effects could not all be settled or undone."""


class Observers(JourneyObserver):
    """Several observers, told in order."""

    def __init__(self, observers: Sequence[JourneyObserver]) -> None:
        self.observers = list(observers)

    def call_answered(
        self, run: JourneyRun, contract: Contract, call: Call, reply: Reply | None
    ) -> None:
        for observer in self.observers:
            observer.call_answered(run, contract, call, reply)

    def shadow_compared(self, contract: Contract, agreement: str) -> None:
        for observer in self.observers:
            observer.shadow_compared(contract, agreement)

    def journey_finished(self, run: JourneyRun) -> None:
        for observer in self.observers:
            observer.journey_finished(run)

    def run_parked(self, run: JourneyRun) -> None:
        for observer in self.observers:
            observer.run_parked(run)


class ProviderLatency(JourneyObserver):
    """Feeds measured round trips to the `fastest` provider policy."""

    def __init__(self, chooser: ProviderChooser) -> None:
        self.chooser = chooser

    def call_answered(
        self, run: JourneyRun, contract: Contract, call: Call, reply: Reply | None
    ) -> None:
        if reply is not None:
            self.chooser.observe(contract.capability, contract.unit, reply.latency_ms)


class PrometheusObserver(JourneyObserver):
    """The gateway's fixed metrics (DESIGN.md): steps, journeys, shadows, parked runs."""

    def call_answered(
        self, run: JourneyRun, contract: Contract, call: Call, reply: Reply | None
    ) -> None:
        if reply is None:
            return
        metrics.STEP_SECONDS.labels(
            journey=run.journey,
            step=call.message_id.split(":")[1],
            unit=contract.capability.split(".")[0],
            provider=contract.unit,
        ).observe(reply.latency_ms / 1000)

    def shadow_compared(self, contract: Contract, agreement: str) -> None:
        metrics.SHADOW_COMPARISONS.labels(
            capability=contract.capability, provider=contract.unit, agreement=agreement
        ).inc()

    def journey_finished(self, run: JourneyRun) -> None:
        labels = {"journey": run.journey, "version": str(run.version)}
        metrics.JOURNEYS.labels(**labels, outcome=run.status).inc()
        metrics.JOURNEY_SECONDS.labels(**labels).observe((run.latency_ms or 0.0) / 1000)
        for line in run.bill.by_unit if run.bill else []:
            metrics.JOURNEY_COST.labels(
                journey=run.journey, unit=line.unit, currency=run.bill.currency if run.bill else ""
            ).inc(float(line.price))

    def run_parked(self, run: JourneyRun) -> None:
        metrics.COMPENSATIONS_PARKED.labels(journey=run.journey).inc()
