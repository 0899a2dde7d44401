"""Memory soak of the gateway and the units: is every process's RSS flat after warm-up?

    .venv/bin/python -m bench.soak [--minutes 10] [--rate 50] [--warmup-s 60] [--out DIR]

Starts the units pricing, fraud and notifications and the gateway (the way bench.journeys does,
on the broker of `Settings()`), drives the bench's three-step journey at a steady rate over
HTTP for the whole time, and reads each process's VmRSS from /proc every few seconds. Writes
rss.csv and rss.png to the output directory and prints, per process, RSS at the end of
warm-up, min/max after it, at the end, growth = (end - at warm-up) / at warm-up and spread =
(max - min) / min, with the verdict against "flat after warm-up within 10%". Exits 1 if a
journey failed or a process died.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench.load import OtlpSink, percentile
from bench.soak_http import HttpPool
from bench.soak_load import JOURNEY, Tally, define, drive, journey_body, until_served
from bench.soak_plot import plot
from bench.soak_proc import other_units, python_pid, rss_mb
from bench.soak_report import TOLERANCE_PCT, CsvLog, RssSample, summarize, table
from mbs.errors import MbsError
from mbs.settings import Settings
from mbs.testing import Process, ProcessGroup, free_port, wait_http_ok

UNITS = ("pricing", "fraud", "notifications")
PROGRESS_EVERY_S = 30.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--minutes",
        type=float,
        default=10.0,
        help="How long the load runs, warm-up included. Default: %(default)s.",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=50.0,
        help="Three-step journeys started per second, on a fixed schedule (open loop). "
        "Default: %(default)s.",
    )
    parser.add_argument(
        "--warmup-s",
        type=float,
        default=60.0,
        help="Seconds of load before the baseline: RSS at this time is what growth is "
        "measured from; earlier samples are drawn (shaded) but not judged. "
        "Default: %(default)s.",
    )
    parser.add_argument(
        "--every-s",
        type=float,
        default=5.0,
        help="Seconds between two RSS samples of every process. Default: %(default)s.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="Directory for rss.csv, rss.png and the processes' logs (logs/). "
        "Default: a new mbs-soak-* directory under the system's temp directory.",
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=200,
        help="Journeys waiting for an answer at most; a start due while this many are in "
        "flight is skipped and counted, so a stalled gateway never faces a pile-up. "
        "Default: %(default)s.",
    )
    parser.add_argument(
        "--tolerance-pct",
        type=float,
        default=TOLERANCE_PCT,
        help="Growth after warm-up (either way, in %%) that still counts as flat. "
        "Default: %(default)s.",
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="Export traces over OTLP to a local sink that drops them (default: tracing "
        "off, OTEL_SDK_DISABLED=true).",
    )
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.rate <= 0 or args.every_s <= 0 or args.max_in_flight < 1:
        parser.error("--minutes, --rate, --every-s and --max-in-flight must be positive")
    if not 0 <= args.warmup_s < args.minutes * 60:
        parser.error("--warmup-s must be at least 0 and shorter than --minutes")
    return args


@dataclass
class Watched:
    """A process of the soak: its ProcessGroup child and the pid whose RSS is read."""

    name: str
    child: Process
    pid: int


@dataclass
class Soak:
    """Everything a run gathers; reported even when the run is cut short."""

    args: argparse.Namespace
    out: Path
    tally: Tally = field(default_factory=Tally)
    samples: list[RssSample] = field(default_factory=list)
    died: str | None = None
    strangers: list[str] = field(default_factory=list)  # see other_units()
    cpu_s: float = 0.0
    elapsed_s: float = 0.0


def start(group: ProcessGroup) -> int:
    """The units and the gateway, as bench.journeys starts them; the gateway's port."""
    for unit in UNITS:
        group.start(unit, "run", "unit", unit)
    port = free_port()
    group.env = {**group.env, "MBS_GATEWAY_PORT": str(port)}
    group.start("gateway", "run", "gateway")
    wait_http_ok(f"http://127.0.0.1:{port}/readyz", group, timeout_s=90)
    return port


async def run(soak: Soak, port: int, watched: list[Watched]) -> None:
    args, seconds = soak.args, soak.args.minutes * 60
    path = f"/journeys/{JOURNEY}"
    body = journey_body(uuid.uuid4().hex[:8])
    client = HttpPool("127.0.0.1", port)
    try:
        await define(client)
        await until_served(client, path, body(-1))
        print(f"load: {args.rate:g} journeys/s for {args.minutes:g} min", flush=True)
        cpu, started = time.process_time(), time.monotonic()
        load = asyncio.create_task(
            drive(client, path, body, args.rate, seconds, args.max_in_flight, soak.tally)
        )
        csv_log = CsvLog(soak.out / "rss.csv")
        try:
            soak.died = await sample(soak, watched, seconds, csv_log)
            if soak.died is None:
                await load
        finally:  # a process died, Ctrl-C or an error: stop starting journeys
            load.cancel()
            await asyncio.gather(load, return_exceptions=True)
            csv_log.close()
            soak.cpu_s = time.process_time() - cpu
            soak.elapsed_s = time.monotonic() - started
    finally:
        await client.close()


async def sample(soak: Soak, watched: list[Watched], seconds: float, csv_log: CsvLog) -> str | None:
    """Every process's RSS at 0, every_s, 2 * every_s, ... and at the end; a progress line
    every ~30 s. Returns why it stopped early (a process died), or None."""
    loop = asyncio.get_running_loop()
    every = soak.args.every_s
    times = [k * every for k in range(int(seconds // every) + 1)]
    if times[-1] < seconds:
        times.append(seconds)
    start, next_progress = loop.time(), PROGRESS_EVERY_S
    for due in times:
        await asyncio.sleep(max(0.0, start + due - loop.time()))
        now = round(loop.time() - start, 1)
        latest = {}
        for process in watched:
            try:
                if not process.child.alive():
                    raise ProcessLookupError(process.pid)
                latest[process.name] = rss_mb(process.pid)
            except OSError:
                code = process.child.popen.poll()
                tail = process.child.tail()
                return (
                    f"{process.name} died at {now:.0f} s (exit code {code}); its log ends:\n{tail}"
                )
            soak.samples.append(RssSample(now, process.name, latest[process.name]))
            csv_log.add(soak.samples[-1])
        if now >= next_progress or due == times[-1]:
            next_progress += PROGRESS_EVERY_S
            progress(soak, now, latest)
    return None


def progress(soak: Soak, now: float, latest: dict[str, float]) -> None:
    rate, p50 = soak.tally.window()
    tally = soak.tally
    phase = "warm-up" if now < soak.args.warmup_s else "soak"
    rss = ", ".join(f"{name} {mb:.1f}" for name, mb in latest.items())
    print(
        f"[{int(now // 60)}:{int(now % 60):02d} {phase}] {tally.completed} completed, "
        f"{tally.failed} failed, {tally.skipped} skipped, {tally.in_flight} in flight, "
        f"{rate:.1f}/s, p50 {p50:.1f} ms | "
        f"RSS MB: {rss}",
        flush=True,
    )


def report(soak: Soak) -> int:
    """Writes rss.png, prints the table and the totals; the exit code."""
    args, tally = soak.args, soak.tally
    summaries = summarize(soak.samples, args.warmup_s, args.tolerance_pct)
    if soak.samples:
        title = (
            f"RSS under {args.rate:g} three-step journeys/s "
            f"(warm-up {args.warmup_s:g} s, growth judged after it)"
        )
        plot(soak.samples, args.warmup_s, soak.out / "rss.png", title)
    load_s = soak.elapsed_s if soak.died else args.minutes * 60
    latencies = tally.latencies_ms
    why = ", ".join(f"{n} {reason}" for reason, n in tally.failures.most_common())
    print()
    print(table(summaries))
    print()
    print(
        f"journeys: {tally.sent} sent, {tally.completed} completed, {tally.failed} failed"
        f"{f' ({why})' if why else ''}, {tally.skipped} skipped (in-flight cap)"
        f"{f', {tally.in_flight} unanswered when it stopped' if tally.in_flight else ''}; "
        "achieved "
        f"{tally.completed / max(load_s, 1e-9):.1f}/s of {args.rate:g}/s; latency p50 "
        f"{percentile(latencies, 0.5):.1f} ms, p99 {percentile(latencies, 0.99):.1f} ms"
    )
    if soak.elapsed_s:
        print(f"load generator CPU: {soak.cpu_s / soak.elapsed_s * 100:.1f}% of one core")
    if tally.skipped:
        print(
            f"note: {tally.skipped} starts were skipped at --max-in-flight: the platform did "
            "not keep up with --rate, so growth may be the backlog of runs, not a leak"
        )
    if soak.strangers:
        print(
            f"note: other unit processes shared the units' consumer groups: {soak.strangers}; "
            "the soak's units served only part of the load"
        )
    grows = [s.process for s in summaries if not s.flat]
    judged = "flat" if not grows else f"NOT flat: {', '.join(grows)}"
    print(f"memory after warm-up: {judged} (target: within {args.tolerance_pct:g}%)")
    if summaries:
        print(f"largest spread after warm-up: {max(s.spread_pct for s in summaries):.1f}%")
    print(f"written: {soak.out / 'rss.csv'}, {soak.out / 'rss.png'}; logs in {soak.out / 'logs'}")
    if soak.died:
        print(f"FAILED: {soak.died}", file=sys.stderr)
    if tally.failed:
        print(f"FAILED: {tally.failed} journeys failed", file=sys.stderr)
    return 1 if soak.died or tally.failed or not summaries else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="mbs-soak-"))
    out.mkdir(parents=True, exist_ok=True)
    settings, uid = Settings(), uuid.uuid4().hex[:8]
    env = {
        "MBS_KAFKA_BOOTSTRAP": settings.bootstrap,
        "MBS_UNIT_PORT": "0",
        "MBS_JOURNEYS_TOPIC": f"bench.state.{uid}",
        "MBS_DEFINITIONS_TOPIC": f"bench.defs.{uid}",
        "MBS_GATEWAY_GROUP": f"bench.gateway.{uid}",
        "MBS_LOG_LEVEL": "WARNING",
        "OTEL_SDK_DISABLED": "true",
    }
    sink = OtlpSink() if args.tracing else None
    if sink is not None:
        env |= {
            "OTEL_SDK_DISABLED": "",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.port}",
        }
    group = ProcessGroup(out / "logs", env=env)
    soak = Soak(args, out)
    try:
        print(f"soak: starting {', '.join(UNITS)} and the gateway on {settings.bootstrap}")
        port = start(group)
        watched = [Watched(c.name, c, python_pid(c.popen.pid)) for c in group.children]
        print("pids: " + ", ".join(f"{w.name} {w.pid}" for w in watched), flush=True)
        soak.strangers = other_units(UNITS, [w.pid for w in watched])
        if soak.strangers:
            print(f"warning: other unit processes share the units' work: {soak.strangers}")
        asyncio.run(run(soak, port, watched))
    except KeyboardInterrupt:
        soak.died = soak.died or "interrupted (Ctrl-C)"
    except (MbsError, RuntimeError) as exc:  # a process died starting, or never served
        soak.died = str(exc)
    finally:
        group.stop()
        if sink is not None:
            sink.server.shutdown()
    return report(soak)


if __name__ == "__main__":
    sys.exit(main())
