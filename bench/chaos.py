"""Chaos run: a small ecosystem of real processes under a steady stream of journeys while
gateways, unit instances and the partner are SIGKILLed and restarted on a seeded schedule;
then every run must be decided and settled, and the invariants must hold.

    .venv/bin/python -m bench.chaos --seconds 120 --seed 7 --rate 5 --out /tmp/chaos
    .venv/bin/python -m bench.chaos --nodes 3 --seconds 600 --seed 11 --out /tmp/chaos3

The ecosystem: two gateways, two instances each of payments and inventory (sharing their
SQLite files), one each of pricing, fraud, shipping, notifications and FastShip, on private
journey-log, definitions and registry topics and a private MBS_UNIT_STATE_DIR under --out.
The request topics are the ecosystem's own: run one chaos run (or e2e test) at a time.

Traffic: order-to-delivery journeys (some fail on purpose and are compensated) and
return-and-refund journeys of completed orders, spread across both gateways. Kills: at least
max(2, seconds / 20) of each kind (gateway, unit instance, partner), each restarted after
0.5-3 s. With --nodes 3 the run starts its own three-node Kafka cluster (free ports, its
MBS_HOME under --out/kafka, heap MBS_BROKER_HEAP or 384m) instead of using MBS_KAFKA_BOOTSTRAP
or the local broker, and adds broker kills: max(2, seconds / 30), one node at a time, the
active controller first and every third, each restarted after 1-5 s; the next waits until
every partition is fully in sync again. Then the load stops, every run is polled until
decided and settled (at most --drain-seconds), the processes stop, and `bench.invariants`
judges what they wrote (a cluster is stopped only after that).

Writes to --out: summary.json (outcomes, kills, latency inside and outside kill windows,
restart-to-serving times, the invariants), accepted.jsonl, start_stock.json, events.log,
logs/ (one file per process life) and units/ (the units' state). Exit 1 on any violation.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.chaos_brokers import Brokers
from bench.chaos_cast import Cast
from bench.chaos_kills import Killer, plan_kills
from bench.chaos_load import Traffic
from bench.chaos_orders import OrderMaker
from bench.chaos_report import summarize
from bench.invariants import as_json, check, evidence_from, render, violations
from bench.journey_log import read_journey_log
from bench.unit_books import read_table
from mbs.settings import Settings
from services.inventory.handlers import OPENING_STOCK

TERMINAL = frozenset({"completed", "failed", "timed_out", "compensation_failed"})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=120.0, help="Load time (default 120).")
    parser.add_argument("--seed", type=int, default=None, help="Kill plan and inputs (random).")
    parser.add_argument("--rate", type=float, default=5.0, help="Journeys per second (5).")
    parser.add_argument("--out", type=Path, default=None, help="A new directory for the results.")
    parser.add_argument(
        "--drain-seconds",
        type=float,
        default=150.0,
        help="At most this long for every run to be decided and settled (150).",
    )
    parser.add_argument(
        "--membership",
        choices=("static", "dynamic"),
        default=None,
        help="static: each process with MBS_INSTANCE_ID=<its name>; dynamic: without. "
        "Default static on one broker, dynamic with --nodes 3 (see RELIABILITY.md: a Kafka "
        "3.9.1 broker fault with static members while a group's coordinator moves).",
    )
    parser.add_argument(
        "--nodes",
        type=int,
        default=1,
        choices=(1, 3),
        help="1: the configured broker (default); 3: a private three-node cluster with kills.",
    )
    args = parser.parse_args(argv)
    if args.membership is None:
        args.membership = "static" if args.nodes == 1 else "dynamic"
    if args.seconds <= 0 or args.rate <= 0:
        parser.error("--seconds and --rate must be positive")
    if args.seed is None:
        args.seed = random.randrange(1_000_000)
    if args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="mbs-chaos-"))
    elif args.out.exists() and any(args.out.iterdir()):
        parser.error(f"--out {args.out} is not empty: give a new directory")
    return args


class Say:
    """Prints and keeps each event with its wall-clock time and the run's elapsed time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.t0 = time.monotonic()

    def __call__(self, message: str) -> None:
        now = time.time()
        line = f"{time.strftime('%H:%M:%S', time.localtime(now))}.{int(now % 1 * 1000):03d} "
        line += f"[{time.monotonic() - self.t0:7.2f}s] {message}"
        print(line, flush=True)
        with self.path.open("a") as events:
            events.write(line + "\n")


def start_stock(state_dir: Path) -> dict[str, int]:
    """Stock on hand before the run: the opening stock, unless the store says otherwise."""
    return {**OPENING_STOCK, **read_table(state_dir, "inventory", "on_hand")}


async def drain(
    traffic: Traffic, bootstrap: str, topic: str, timeout_s: float, say: Callable[[str], None]
) -> None:
    """Until every run the driver knows, and every run in the log, is decided and settled
    (a run whose 202 was lost with its gateway is in the log all the same)."""
    deadline = time.monotonic() + timeout_s
    say(f"draining: {sum(1 for s in traffic.runs.values() if not s.finished)} runs still open")
    await traffic.settle_all(timeout_s)
    log = await read_journey_log(bootstrap, topic)
    for run_id, run in log.runs.items():
        if run.get("status") not in TERMINAL or run.get("unsettled"):
            traffic.follow(run_id, str(run.get("journey")))
    still = await traffic.settle_all(max(5.0, deadline - time.monotonic()))
    say(f"drained: {len(still)} runs still open")
    for sub in still[:5]:
        say(f"  open: {sub.location} {sub.status} (accepted {sub.accepted})")


async def chaos(args: argparse.Namespace) -> int:
    # SIGTERM cancels the run, so the processes it started are stopped, never orphaned
    this = asyncio.current_task()
    assert this is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, this.cancel)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    say = Say(out / "events.log")
    brokers = Brokers(out, args.nodes, say) if args.nodes > 1 else None
    try:
        if brokers is not None:
            await brokers.start()
        return await run_on(args, out, say, brokers)
    finally:
        if brokers is not None:
            brokers.stop()


async def run_on(args: argparse.Namespace, out: Path, say: Say, brokers: Brokers | None) -> int:
    """The run against the configured broker, or the run's own cluster."""
    bootstrap = brokers.bootstrap if brokers is not None else Settings().bootstrap
    uid = uuid.uuid4().hex[:8]
    rng = random.Random(args.seed)
    # units take the whole bootstrap list, as gateways do; each member is a static group
    # member under its own name (MBS_INSTANCE_ID), as a supervisor or a pod would start it
    cast = Cast(bootstrap, out, uid, static=args.membership == "static")
    stock = start_stock(cast.state_dir)
    (out / "start_stock.json").write_text(json.dumps(stock, indent=2))
    say(
        f"chaos run {uid}, seed {args.seed}, {args.seconds:g}s at {args.rate:g}/s, out {out}, "
        f"Kafka {bootstrap}, {args.membership} group membership"
    )
    traffic = Traffic(cast.gateway_urls(), OrderMaker(rng, uid), say)
    killer = Killer(cast, say, brokers)
    try:
        await exercise(args, rng, cast, traffic, killer, say)
        crashed = cast.crashed()
    finally:
        await traffic.close()
        cast.stop()
    say("processes stopped; checking the invariants")
    return await judge(args, cast, traffic, killer, stock, crashed)


async def exercise(
    args: argparse.Namespace,
    rng: random.Random,
    cast: Cast,
    traffic: Traffic,
    killer: Killer,
    say: Callable[[str], None],
) -> None:
    """Start everything, run the load while the kills happen, then drain."""
    await cast.start_all()
    say("every process serving; warming up")
    await traffic.warm_up()
    plan = plan_kills(rng, args.seconds, cast, killer.brokers)
    planned = ", ".join(f"{p.at_s:.1f}s {p.member}" for p in plan)
    say(f"load starts; {len(plan)} kills planned: {planned}")
    started = time.monotonic()
    kills = asyncio.create_task(killer.carry_out(plan, started, started + args.seconds))
    await traffic.drive(args.seconds, args.rate)
    say(f"load over: {len(traffic.accepted)} runs accepted")
    await kills
    bootstrap = str(cast.group.env["MBS_KAFKA_BOOTSTRAP"])
    await drain(traffic, bootstrap, cast.topics["MBS_JOURNEYS_TOPIC"], args.drain_seconds, say)


async def judge(
    args: argparse.Namespace,
    cast: Cast,
    traffic: Traffic,
    killer: Killer,
    stock: dict[str, int],
    crashed: list[str],
) -> int:
    """The checker's table, the summary (printed and in summary.json); 1 on a violation."""
    out: Path = args.out
    accepted = traffic.accepted
    with (out / "accepted.jsonl").open("w") as lines:
        lines.writelines(json.dumps(s.as_json()) + "\n" for s in accepted)
    topic = cast.topics["MBS_JOURNEYS_TOPIC"]
    log = await read_journey_log(str(cast.group.env["MBS_KAFKA_BOOTSTRAP"]), topic)
    run_ids = [s.run_id for s in accepted]
    findings = check(
        evidence_from(log.runs, cast.state_dir, run_ids, stock, log.unreadable, log.regressions)
    )
    render(findings)
    extra: dict[str, Any] = {
        "crashed_on_their_own": crashed,
        "runs_in_log": len(log.runs),
        "topics": cast.topics,
        "out": str(out),
        "kafka": str(cast.group.env["MBS_KAFKA_BOOTSTRAP"]),
        "check_again": (
            f"python -m bench.invariants --bootstrap {cast.group.env['MBS_KAFKA_BOOTSTRAP']} "
            f"--journeys-topic {topic} --state-dir {cast.state_dir} "
            f"--accepted {out / 'accepted.jsonl'} --start-stock {out / 'start_stock.json'}"
        ),
    }
    summary = summarize(
        seed=args.seed,
        seconds=args.seconds,
        rate=args.rate,
        runs=list(traffic.runs.values()),
        refused=traffic.refused,
        kills=killer.kills,
        findings=as_json(findings),
        extra=extra,
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(json.dumps({k: v for k, v in summary.items() if k != "kill_log"}, indent=2, default=str))
    return 1 if violations(findings) or crashed else 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(chaos(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
