"""Journey throughput, latency and CPU per journey through the gateway, beside a raw aiokafka
round trip, with tracing off, sampled and on, and beside an older commit, in one run on one
broker: a private one started for the run (on free ports, state in a temp dir), unless
--shared-broker.

    .venv/bin/python -m bench.journeys --seconds 8 --baseline COMMIT --json out.json

Closed loop: N clients each send the next request as soon as their last one is answered
(N = 1, 10, 100 in flight). The raw baseline is a bare aiokafka producer/consumer pair in
this process and a bare aiokafka responder process. The journeys run over HTTP (wrk) through
the gateway to unit processes; their `step` latency is the gateway's own request-to-reply
time, comparable to the raw round trip. CPU per journey: utime + stime of each process from
/proc/<pid>/stat over the middle of each measured row (bench/cpu.py). `--baseline COMMIT`
runs that commit's gateway and units from a git worktree after the current ones
(bench/worktree.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.cpu import CLK_TCK, Pids, check_python, ms_per_item, snapshot
from bench.journeys_report import UNITS, describe, report
from bench.load import (
    OtlpSink,
    RawClient,
    Sample,
    Wrk,
    closed_loop,
    define,
    journey_call,
    percentile,
)
from bench.phases import (
    JOURNEY_CHOICES,
    PHASES,
    Phase,
    broker_pid,
    parse_phases,
    phase_env,
    tracing_label,
    unit_group_members,
)
from bench.worktree import (
    Worktree,
    check_cwd,
    git,
    head_commit,
    imports_from,
    open_worktree,
    remove_worktree,
)
from mbs.broker import LocalBroker
from mbs.kafka import Connection, ensure_topics
from mbs.settings import Settings
from mbs.testing import ProcessGroup, free_port, wait_http_ok

IN_FLIGHT = (1, 10, 100)
_STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {message}", flush=True)


class Bench:
    def __init__(self, args: argparse.Namespace, settings: Settings) -> None:
        self.args = args
        self.settings = settings
        self.uid = uuid.uuid4().hex[:8]
        self.seconds = max(2, round(args.seconds))  # wrk takes whole seconds
        self.margin = min(1.0, self.seconds / 5)  # left out of each CPU window, either end
        self.broker_pid, self.broker_note = broker_pid(self.settings)
        self.tree: Worktree | None = None
        self.imports: dict[str, str] = {}
        self.rows: list[dict[str, Any]] = []
        self.failed: dict[str, str] = {}
        self.idle: dict[str, dict[str, float | None]] = {}
        self.shared: dict[str, dict[str, int]] = {}
        self.sink = OtlpSink()

    def env(self, phase: Phase) -> dict[str, str]:
        env = phase_env(
            phase,
            bootstrap=self.settings.bootstrap,
            uid=self.uid,
            sink_port=self.sink.port,
            sample_ratio=self.args.sample_ratio,
        )
        if phase.baseline and self.tree is not None:
            env.update(self.tree.env())
        return env

    def notes(self) -> list[str]:
        found = [
            f"phase {name}: units of another ecosystem were in the units' consumer groups "
            f"({members}); they served part of the requests and their CPU is not counted"
            for name, members in self.shared.items()
        ]
        found += [
            f"phase {name} failed: {why.strip().splitlines()[-1]}"
            for name, why in self.failed.items()
        ]
        return found

    def code(self, phase: Phase) -> str:
        return self.tree.short if phase.baseline and self.tree else "current"

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        say("  " + describe(row))

    async def run(self, phases: list[Phase]) -> None:
        if any(p.baseline for p in phases):
            self.tree = open_worktree(self.args.baseline)
            state = "reused" if self.tree.reused else "created"
            say(f"baseline {self.tree.short}: worktree {state} at {self.tree.path}")
            try:
                first = next(p for p in phases if p.baseline)
                self.imports = imports_from(self.tree, self.env(first))
                say(f"baseline imports: {self.imports}")
            except RuntimeError as failure:  # the current code's phases still run
                say(f"baseline FAILED: {failure}")
                self.failed.update({p.name: str(failure) for p in phases if p.baseline})
                phases = [p for p in phases if not p.baseline]
        say(
            f"broker pid: {self.broker_pid or self.broker_note}; CPU windows of "
            f"{self.seconds - 2 * self.margin:g}s per row, CLK_TCK {CLK_TCK}"
        )
        for phase in phases:
            label = tracing_label(phase.tracing, self.args.sample_ratio)
            what = (
                "bare aiokafka pair" if phase.name == "raw" else f"{self.code(phase)} code, {label}"
            )
            say(f"== phase {phase.name}: {what} ==")
            try:
                if phase.name == "raw":
                    await self.raw()
                else:
                    await self.through_gateway(phase, label)
            except Exception as failure:  # the other phases still run and are reported
                self.failed[phase.name] = f"{type(failure).__name__}: {failure}"
                say(f"phase {phase.name} FAILED: {self.failed[phase.name]}")

    async def raw(self) -> None:
        topic, reply = f"bench.raw.{self.uid}", f"bench.raw.{self.uid}.replies"
        await ensure_topics(Connection(self.settings.bootstrap), [topic, reply])
        responder = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.raw_responder",
            topic,
            reply,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "MBS_KAFKA_BOOTSTRAP": self.settings.bootstrap},
        )
        try:
            assert responder.stdout is not None
            ready = (await responder.stdout.readline()).decode().split()
            if ready != ["ready", str(responder.pid)]:
                raise RuntimeError(f"raw_responder said {ready}, expected ready {responder.pid}")
            check_python({"responder": responder.pid})
            pids = {"responder": responder.pid, "broker": self.broker_pid, "load": os.getpid()}
            async with RawClient(self.settings.bootstrap, topic, reply) as raw:
                await closed_loop(raw.call, 10, 1.0)  # warm-up
                for in_flight in IN_FLIGHT:
                    before, started = snapshot(pids), time.perf_counter()
                    rate, samples = await closed_loop(raw.call, in_flight, self.args.seconds)
                    after, window = snapshot(pids), time.perf_counter() - started
                    row = self._row("raw", "raw aiokafka round trip", in_flight, samples, rate)
                    row["cpu_ms"] = ms_per_item(before, after, len(samples))
                    row["cpu_window_s"] = round(window, 2)
                    self.add(row)
            await self.quiet("raw", {"responder": responder.pid, "broker": self.broker_pid})
        finally:
            if responder.returncode is None:
                responder.terminate()
            await responder.wait()

    async def quiet(self, phase: str, pids: Pids) -> None:
        """CPU ms per second the processes use with no load, once the last row's runs are
        done: what a low rate's CPU per journey carries (polling, timers, a broker's other
        clients)."""
        await asyncio.sleep(1.0)
        before, started = snapshot(pids), time.perf_counter()
        await asyncio.sleep(2.0)
        after, window = snapshot(pids), time.perf_counter() - started
        self.idle[phase] = ms_per_item(before, after, window)
        say("  idle CPU ms/s: " + ", ".join(f"{k} {v}" for k, v in self.idle[phase].items()))

    def _row(
        self, phase: str, what: str, in_flight: int, samples: list[Sample], rate: float
    ) -> dict[str, Any]:
        client = [s[0] for s in samples]
        return {
            "phase": phase,
            "code": "current",
            "tracing": "n/a",
            "journey": "raw",
            "what": what,
            "in_flight": in_flight,
            "per_s": round(rate, 1),
            "requests": len(samples),
            "p50_ms": round(percentile(client, 0.5), 2),
            "p99_ms": round(percentile(client, 0.99), 2),
            "step_p50_ms": round(percentile([s[1] for s in samples], 0.5), 2),
        }

    async def through_gateway(self, phase: Phase, label: str) -> None:
        cwd = self.tree.path if phase.baseline and self.tree else None
        log_dir = self.settings.home / "bench" / phase.name
        group = ProcessGroup(log_dir, env=self.env(phase), cwd=cwd)
        others = await asyncio.to_thread(unit_group_members, self.settings.bootstrap, UNITS)
        if others:
            self.shared[phase.name] = others
            say(f"WARNING: units of another ecosystem serve these capabilities: {others}")
        try:
            for unit in UNITS:
                group.start(unit, "run", "unit", unit)
            port = free_port()
            group.start("gateway", "run", "gateway", env={"MBS_GATEWAY_PORT": str(port)})
            base = f"http://127.0.0.1:{port}"
            await asyncio.to_thread(wait_http_ok, f"{base}/readyz", group, 90)
            pids = {child.name: child.popen.pid for child in group.children}
            check_python(pids)
            if self.tree is not None and cwd is not None:
                check_cwd(self.tree, pids)
            say(f"gateway and units up ({self.code(phase)} code, logs in {log_dir}): {pids}")
            await self._measure(phase, label, base, pids, group)
            await self.quiet(phase.name, {**pids, "broker": self.broker_pid})
        finally:
            group.stop()

    async def _measure(
        self, phase: Phase, label: str, base: str, pids: dict[str, int], group: ProcessGroup
    ) -> None:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        code = "" if self.code(phase) == "current" else f" @{self.code(phase)}"
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
            for name in JOURNEY_CHOICES[self.args.journeys]:
                await define(client, name)
                await closed_loop(journey_call(client, name), 10, 2.0)  # warm-up
                _, steps = await closed_loop(journey_call(client, name), 1, 2.0)
                step_p50 = round(percentile([s[1] for s in steps], 0.5), 2)
                for in_flight in IN_FLIGHT:
                    row = await self._wrk_row(base, name, in_flight, pids)
                    group.check_alive()
                    row.update(
                        phase=phase.name,
                        code=self.code(phase),
                        tracing=label.removeprefix("tracing "),
                        journey=name,
                        what=f"{name}{code} ({label})",
                        step_p50_ms=step_p50,
                    )
                    self.add(row)

    async def _wrk_row(
        self, base: str, name: str, in_flight: int, pids: dict[str, int]
    ) -> dict[str, Any]:
        """wrk for the row's seconds; CPU read over its middle (ramp-up and the runs left in
        flight at its end left out), divided by the journeys that window holds at wrk's
        rate."""
        wrk = Wrk(base, name, in_flight, self.seconds)
        measured: Pids = {
            **pids,
            "broker": self.broker_pid,
            "load": await wrk.start(),
            "sink": os.getpid(),  # the OTLP sink is a thread of this process
        }
        await asyncio.sleep(self.margin)
        before, started = snapshot(measured), time.perf_counter()
        await asyncio.sleep(self.seconds - 2 * self.margin)
        after, window = snapshot(measured), time.perf_counter() - started
        result = await wrk.result()
        return {
            "in_flight": in_flight,
            "per_s": result.per_s,
            "requests": result.requests,
            "p50_ms": result.p50_ms,
            "p99_ms": result.p99_ms,
            "cpu_ms": ms_per_item(before, after, result.per_s * window),
            "cpu_window_s": round(window, 2),
        }


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="Per row (whole seconds).")
    parser.add_argument("--baseline", metavar="COMMIT", help="Also run this commit's code.")
    parser.add_argument("--sample-ratio", type=float, default=0.1, help="For phase sampled.")
    parser.add_argument("--journeys", choices=JOURNEY_CHOICES, default="both")
    parser.add_argument(
        "--phases",
        help=f"Comma-separated, run in this order (default: {','.join(PHASES[:4])}; with "
        f"--baseline, {','.join(PHASES[4:])} first).",
    )
    parser.add_argument("--out", type=Path, default=None, help="Append the tables here.")
    parser.add_argument("--json", type=Path, default=None, help="Write every figure here.")
    parser.add_argument(
        "--shared-broker",
        action="store_true",
        help="Use the broker of the settings (MBS_KAFKA_BOOTSTRAP or the local one) instead of "
        "a private broker started for the run (the default: no other client shares it, and "
        "no record left by earlier runs or tests stops an old baseline commit).",
    )
    args = parser.parse_args()
    if not 0 < args.sample_ratio <= 1:
        parser.error("--sample-ratio must be in (0, 1]")
    # the baseline first: an older commit may not read what newer code left on the broker
    default = (*PHASES[4:], *PHASES[:4]) if args.baseline else PHASES[:4]
    try:
        args.phase_list = parse_phases(args.phases or ",".join(default))
    except ValueError as bad:
        parser.error(str(bad))
    if any(p.baseline for p in args.phase_list) and not args.baseline:
        parser.error("the baseline phases need --baseline COMMIT")
    if args.baseline:
        try:
            git("rev-parse", "--verify", f"{args.baseline}^{{commit}}")
        except RuntimeError as bad:
            parser.error(str(bad))
    return args


async def main() -> int:
    args = arguments()
    own = None if args.shared_broker else private_broker()
    bench = Bench(args, Settings() if own is None else own.settings)
    try:
        await bench.run(args.phase_list)
    finally:
        if own is not None:
            own.down()
            say(f"private broker on {own.address} stopped")
        bench.sink.close()
        if bench.tree is not None:
            remove_worktree(bench.tree)
            say(f"worktree {bench.tree.path} removed")
    summary = report(bench.rows, args.sample_ratio, args.out, bench.notes())
    if args.json is not None:
        document = {
            "commit": head_commit(),
            "uncommitted_changes": bool(git("status", "--porcelain", "--untracked-files=no")),
            "baseline": bench.tree.commit if bench.tree else None,
            "baseline_imports": bench.imports,
            "phases": [p.name for p in args.phase_list],
            "seconds": bench.seconds,
            "cpu_window_margin_s": bench.margin,
            "sample_ratio": args.sample_ratio,
            "broker_pid": bench.broker_pid,
            "broker_note": bench.broker_note,
            "clk_tck": CLK_TCK,
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
            "failed_phases": bench.failed,
            "idle_cpu_ms_per_s": bench.idle,
            "unit_groups_shared": bench.shared,
            "rows": bench.rows,
            **summary,
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        say(f"wrote {args.json}")
    return 1 if bench.failed else 0


def private_broker() -> LocalBroker:
    """A broker of the run's own: its state under a temp dir, on free ports."""
    home = Path(tempfile.mkdtemp(prefix="mbs-bench-broker-"))
    broker = LocalBroker(Settings(home=home, broker_port=free_port(2), kafka_bootstrap=""))
    say(f"starting a private broker on {broker.address} (state in {home})")
    broker.up()
    return broker


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
