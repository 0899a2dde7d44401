"""What the journey benchmark runs: its phases (code and tracing), the environment of each
phase's gateway and units, and what else shares the broker with them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka.admin import AdminClient

from mbs.broker.local import LocalBroker
from mbs.settings import Settings

PHASES = ("raw", "off", "sampled", "on", "baseline-off", "baseline-on")
JOURNEY_CHOICES = {
    "one-step": ("bench-one-step",),
    "three-step": ("bench-three-step",),
    "both": ("bench-one-step", "bench-three-step"),
}
_OTEL = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
)


@dataclass(frozen=True)
class Phase:
    name: str  # one of PHASES
    tracing: str  # off | sampled | on
    baseline: bool


def parse_phases(text: str) -> list[Phase]:
    """`raw,off,baseline-on` -> phases, in the order given."""
    phases = []
    for name in (n.strip() for n in text.split(",") if n.strip()):
        if name not in PHASES:
            raise ValueError(f"unknown phase {name!r}; known: {', '.join(PHASES)}")
        baseline = name.startswith("baseline-")
        tracing = name.removeprefix("baseline-") if name != "raw" else "off"
        phases.append(Phase(name, tracing, baseline))
    return phases


def tracing_label(tracing: str, ratio: float) -> str:
    return f"tracing {ratio * 100:g}%" if tracing == "sampled" else f"tracing {tracing}"


def phase_env(
    phase: Phase, *, bootstrap: str, uid: str, sink_port: int, sample_ratio: float
) -> dict[str, str]:
    """The environment of a phase's gateway and units (on top of the bench's own; an empty
    value removes a variable). Each phase gets its own journey log, definitions and gateway
    group, so no phase replays another's runs."""
    uid = f"{uid}.{phase.name}"
    env = {
        "MBS_KAFKA_BOOTSTRAP": bootstrap,
        "MBS_UNIT_PORT": "0",
        "MBS_JOURNEYS_TOPIC": f"bench.state.{uid}",
        "MBS_DEFINITIONS_TOPIC": f"bench.defs.{uid}",
        "MBS_GATEWAY_GROUP": f"bench.gateway.{uid}",
        "MBS_LOG_LEVEL": "WARNING",
        **dict.fromkeys(_OTEL, ""),
    }
    if phase.tracing == "off":
        env["OTEL_SDK_DISABLED"] = "true"
    else:  # all spans to an OTLP sink; sampled: the SDK's own head sampler picks them
        env["OTEL_TRACES_EXPORTER"] = "otlp"
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{sink_port}"
    if phase.tracing == "sampled":
        env["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
        env["OTEL_TRACES_SAMPLER_ARG"] = f"{sample_ratio:g}"
    return env


def broker_pid(settings: Settings) -> tuple[int | None, str]:
    """The local broker's pid, or None (and why) when the bench uses another cluster."""
    if settings.kafka_bootstrap:
        return None, f"n/a (MBS_KAFKA_BOOTSTRAP={settings.kafka_bootstrap})"
    pid = LocalBroker.on_port(settings).status().pid
    return pid, "" if pid else "n/a (no local broker pid)"


def unit_group_members(bootstrap: str, units: Iterable[str]) -> dict[str, int]:
    """Members of the units' consumer groups (`mbs.unit.<unit>.<capability>`) right now.
    Before the bench starts its units there should be none: a unit of another ecosystem on
    the same broker (a test, a soak run) takes a share of the bench's requests, and its CPU
    is not measured."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 3})  # errors only
    prefixes = tuple(f"mbs.unit.{unit}." for unit in units)
    listed = admin.list_consumer_groups(request_timeout=10).result(15)
    names = [g.group_id for g in listed.valid if g.group_id.startswith(prefixes)]
    if not names:
        return {}
    described = admin.describe_consumer_groups(names, request_timeout=10)
    members = {name: len(future.result(15).members) for name, future in described.items()}
    return {name: count for name, count in members.items() if count}
