"""Journey throughput and latency through the gateway, beside a raw aiokafka round trip on
the same broker in the same run.

    .venv/bin/python -m bench.journeys --seconds 8

Closed loop: N clients each send the next request as soon as their last one is answered
(N = 1, 10, 100 in flight). The raw baseline is a bare aiokafka producer/consumer pair on one
side and a bare aiokafka responder process on the other. The journeys run over HTTP through
the gateway to unit processes; their `step` latency is the gateway's own request-to-reply
time, comparable to the raw round trip.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from mbs.kafka import Connection, ensure_topics
from mbs.settings import Settings
from mbs.testing import ProcessGroup, free_port, wait_http_ok

ADMIN = {"X-API-Key": "dev-admin-key"}
CALLER = {"X-API-Key": "dev-caller-key"}
JOURNEYS = {
    "bench-one-step": {
        "steps": [
            {
                "id": "quote",
                "capability": "pricing.quote",
                "input": {"sku": "$input.sku", "quantity": "$input.quantity"},
            }
        ]
    },
    "bench-three-step": {
        "steps": [
            {
                "id": "quote",
                "capability": "pricing.quote",
                "input": {"sku": "$input.sku", "quantity": "$input.quantity"},
            },
            {
                "id": "fraud",
                "capability": "fraud.score",
                "after": ["quote"],
                "input": {
                    "order_id": "$input.order_id",
                    "customer_id": "$input.customer_id",
                    "amount": "$steps.quote.total",
                },
            },
            {
                "id": "notify",
                "capability": "notifications.send",
                "after": ["fraud"],
                "input": {
                    "customer_id": "$input.customer_id",
                    "template": "order_confirmed",
                    "order_id": "$input.order_id",
                },
            },
        ]
    },
}
BODY = {"sku": "grinder-c40", "quantity": 1, "order_id": "bench", "customer_id": "cust-1"}
Sample = tuple[float, float]  # (client latency ms, server-side step latency ms or nan)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def closed_loop(
    call: Callable[[], Awaitable[Sample]], in_flight: int, seconds: float
) -> tuple[float, list[Sample]]:
    samples: list[Sample] = []
    stop_at = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < stop_at:
            samples.append(await call())

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(in_flight)))
    return len(samples) / (time.perf_counter() - started), samples


class RawClient:
    """Request/reply with nothing but aiokafka: the floor any platform adds to."""

    def __init__(self, bootstrap: str, topic: str, reply_topic: str) -> None:
        self.bootstrap, self.topic, self.reply_topic = bootstrap, topic, reply_topic
        self.pending: dict[bytes, asyncio.Future[None]] = {}

    async def __aenter__(self) -> RawClient:
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=0)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, fetch_max_wait_ms=20
        )
        await self.producer.start()
        await self.consumer.start()
        parts = [TopicPartition(self.reply_topic, p) for p in range(3)]
        self.consumer.assign(parts)
        await self.consumer.seek_to_end(*parts)
        for tp in parts:
            await self.consumer.position(tp)
        self.reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.reader
        await self.consumer.stop()
        await self.producer.stop()

    async def _read(self) -> None:
        async for record in self.consumer:
            correlation = dict(record.headers or ()).get("mbs-correlation-id", b"")
            future = self.pending.pop(correlation, None)
            if future is not None and not future.done():
                future.set_result(None)

    async def call(self) -> Sample:
        correlation = uuid.uuid4().hex.encode()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending[correlation] = future
        started = time.perf_counter()
        await self.producer.send(
            self.topic,
            json.dumps(BODY).encode(),
            key=correlation,
            headers=[("mbs-correlation-id", correlation)],
        )
        await asyncio.wait_for(future, 30)
        elapsed = (time.perf_counter() - started) * 1000
        return elapsed, elapsed


def journey_call(client: httpx.AsyncClient, name: str) -> Callable[[], Awaitable[Sample]]:
    async def call() -> Sample:
        started = time.perf_counter()
        response = await client.post(f"/journeys/{name}", json=BODY, headers=CALLER)
        elapsed = (time.perf_counter() - started) * 1000
        run = response.json()
        if response.status_code != 200:
            raise RuntimeError(f"{name}: HTTP {response.status_code}: {run}")
        steps = [s["latency_ms"] for s in run["steps"]]
        return elapsed, statistics.fmean(steps)

    return call


def row(label: str, in_flight: int, rate: float, samples: list[Sample]) -> dict[str, Any]:
    client = [s[0] for s in samples]
    step = [s[1] for s in samples]
    return {
        "what": label,
        "in_flight": in_flight,
        "per_s": round(rate, 1),
        "p50_ms": round(percentile(client, 0.5), 2),
        "p99_ms": round(percentile(client, 0.99), 2),
        "step_p50_ms": round(percentile(step, 0.5), 2),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--out", type=Path, default=None, help="Append a table here.")
    args = parser.parse_args()
    settings = Settings()
    uid = uuid.uuid4().hex[:8]
    group = ProcessGroup(
        settings.home / "bench",
        env={
            "MBS_KAFKA_BOOTSTRAP": settings.bootstrap,
            "MBS_UNIT_PORT": "0",
            "MBS_JOURNEYS_TOPIC": f"bench.state.{uid}",
            "MBS_DEFINITIONS_TOPIC": f"bench.defs.{uid}",
            "MBS_GATEWAY_GROUP": f"bench.gateway.{uid}",
            "MBS_LOG_LEVEL": "WARNING",
        },
    )
    rows: list[dict[str, Any]] = []
    sink = OtlpSink()
    try:
        rows += await raw_baseline(settings.bootstrap, uid, args.seconds)
        group.env = {**group.env, "OTEL_SDK_DISABLED": "true"}
        rows += await through_gateway(group, args.seconds, " (tracing off)")
        group.env = {
            **group.env,
            "OTEL_SDK_DISABLED": "",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{sink.port}",
        }
        rows += await through_gateway(group, args.seconds, " (tracing on)")
    finally:
        group.stop()
        sink.server.shutdown()
    report(rows, args.out)


class OtlpSink:
    """Accepts OTLP/HTTP exports and drops them: tracing on, at the cost of exporting."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


async def raw_baseline(bootstrap: str, uid: str, seconds: float) -> list[dict[str, Any]]:
    topic, reply = f"bench.raw.{uid}", f"bench.raw.{uid}.replies"
    await ensure_topics(Connection(bootstrap), [topic, reply])
    responder = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.raw_responder", topic, reply, stdout=asyncio.subprocess.PIPE
    )
    assert responder.stdout is not None
    await responder.stdout.readline()
    await asyncio.sleep(3)  # group join
    rows = []
    try:
        async with RawClient(bootstrap, topic, reply) as raw:
            await closed_loop(raw.call, 10, 1.0)  # warm-up
            for in_flight in (1, 10, 100):
                rate, samples = await closed_loop(raw.call, in_flight, seconds)
                rows.append(row("raw aiokafka round trip", in_flight, rate, samples))
                print(rows[-1], flush=True)
    finally:
        if responder.returncode is None:
            responder.terminate()
        await responder.wait()
    return rows


async def through_gateway(
    group: ProcessGroup, seconds: float, label: str = ""
) -> list[dict[str, Any]]:
    for unit in ("pricing", "fraud", "notifications"):
        group.start(unit, "run", "unit", unit)
    port = free_port()
    group.env = {**group.env, "MBS_GATEWAY_PORT": str(port)}
    group.start("gateway", "run", "gateway")
    base = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{base}/readyz", group, timeout_s=90)
    try:
        return await _measure_gateway(base, seconds, label)
    finally:
        group.stop()


async def _measure_gateway(base: str, seconds: float, label: str) -> list[dict[str, Any]]:
    rows = []
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        for name, spec in JOURNEYS.items():
            body = json.dumps({"name": name, "version": 1, **spec})
            put = await client.put(f"/journeys/{name}", content=body, headers=ADMIN)
            assert put.status_code in (201, 409), put.text
            await _until_served(client, name)
            await closed_loop(journey_call(client, name), 10, 2.0)  # warm-up
            _, steps = await closed_loop(journey_call(client, name), 1, 2.0)
            step_p50 = percentile([s[1] for s in steps], 0.5)
            for in_flight in (1, 10, 100):
                rate, p50, p99 = await wrk(base, name, in_flight, seconds)
                rows.append(
                    {
                        "what": f"{name}{label}",
                        "in_flight": in_flight,
                        "per_s": round(rate, 1),
                        "p50_ms": p50,
                        "p99_ms": p99,
                        "step_p50_ms": round(step_p50, 2),
                    }
                )
                print(rows[-1], flush=True)
    return rows


async def _until_served(client: httpx.AsyncClient, name: str) -> None:
    """Consumer groups settle after start-up: wait for the first journey to complete."""
    for _ in range(30):
        response = await client.post(f"/journeys/{name}", json=BODY, headers=CALLER)
        if response.status_code == 200:
            return
        await asyncio.sleep(1)
    raise RuntimeError(f"{name} never completed: {response.text}")


async def wrk(
    base: str, journey: str, connections: int, seconds: float
) -> tuple[float, float, float]:
    """Closed-loop HTTP load from wrk (a Python client saturates a core before the gateway)."""
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{json.dumps(BODY)}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["X-API-Key"] = "{CALLER["X-API-Key"]}"\n'
    )
    proc = await asyncio.create_subprocess_exec(
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{int(seconds)}s",
        "--latency",
        "-s",
        str(script),
        f"{base}/journeys/{journey}",
        stdout=asyncio.subprocess.PIPE,
    )
    out = (await proc.communicate())[0].decode()
    script.unlink()
    if "Non-2xx" in out:
        raise RuntimeError(f"{journey}: some journeys failed:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return rate, _ms(out, "50%"), _ms(out, "99%")


def _ms(out: str, label: str) -> float:
    value, unit = re.search(rf"{label}\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return round(float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 2)


def report(rows: list[dict[str, Any]], out: Path | None) -> None:
    header = (
        "| what | in flight | per s | p50 ms | p99 ms | step p50 ms |\n|---|---|---|---|---|---|"
    )
    lines = [
        f"| {r['what']} | {r['in_flight']} | {r['per_s']} | {r['p50_ms']} | {r['p99_ms']} "
        f"| {r['step_p50_ms']} |"
        for r in rows
    ]
    table = "\n".join([header, *lines])
    print(table)
    if out is not None:
        with out.open("a") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    asyncio.run(main())
