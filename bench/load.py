"""The load of the journey benchmark: journeys defined for it, closed-loop clients (a bare
aiokafka request/reply pair, HTTP through the gateway), wrk, and an OTLP sink."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

ADMIN = {"X-API-Key": "dev-admin-key"}
CALLER = {"X-API-Key": "dev-caller-key"}
_QUOTE = {
    "id": "quote",
    "capability": "pricing.quote",
    "input": {"sku": "$input.sku", "quantity": "$input.quantity"},
}
JOURNEYS = {
    "bench-one-step": {"steps": [_QUOTE]},
    "bench-three-step": {
        "steps": [
            _QUOTE,
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
    """N clients, each sending its next request as soon as its last one is answered. Every
    request sent is answered before this returns (nothing is left in flight)."""
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


async def define(client: httpx.AsyncClient, name: str) -> None:
    """Register the journey `name` and wait until one run of it completes (consumer groups
    settle after start-up)."""
    body = json.dumps({"name": name, "version": 1, **JOURNEYS[name]})
    put = await client.put(f"/journeys/{name}", content=body, headers=ADMIN)
    assert put.status_code in (201, 409), put.text
    for _ in range(30):
        response = await client.post(f"/journeys/{name}", json=BODY, headers=CALLER)
        if response.status_code == 200:
            return
        await asyncio.sleep(1)
    raise RuntimeError(f"{name} never completed: {response.text}")


@dataclass(frozen=True)
class WrkResult:
    per_s: float
    requests: int
    p50_ms: float
    p99_ms: float


class Wrk:
    """Closed-loop HTTP load from wrk (a Python client saturates a core before the gateway):
    `connections` in flight for whole `seconds`. Started, then waited for, so its CPU can be
    read from /proc while it runs (`pid`)."""

    def __init__(self, base: str, journey: str, connections: int, seconds: int) -> None:
        self.url, self.journey = f"{base}/journeys/{journey}", journey
        self.connections, self.seconds = connections, seconds

    async def start(self) -> int:
        self.script = Path(tempfile.mkstemp(suffix=".lua")[1])
        self.script.write_text(
            'wrk.method = "POST"\n'
            f"wrk.body = '{json.dumps(BODY)}'\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            f'wrk.headers["X-API-Key"] = "{CALLER["X-API-Key"]}"\n'
        )
        self.proc = await asyncio.create_subprocess_exec(
            "wrk",
            "-t1",
            f"-c{self.connections}",
            f"-d{self.seconds}s",
            "--latency",
            "-s",
            str(self.script),
            self.url,
            stdout=asyncio.subprocess.PIPE,
        )
        return self.proc.pid

    async def result(self) -> WrkResult:
        out = (await self.proc.communicate())[0].decode()
        self.script.unlink()
        if "Non-2xx" in out:
            raise RuntimeError(f"{self.journey}: some journeys failed:\n{out}")
        return parse_wrk(out)


def parse_wrk(out: str) -> WrkResult:
    """Rate, request count and p50/p99 latency from wrk's --latency report."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    if rate is None or count is None:
        raise RuntimeError(f"wrk said nothing about requests:\n{out}")
    return WrkResult(float(rate.group(1)), int(count.group(1)), _ms(out, "50%"), _ms(out, "99%"))


def _ms(out: str, label: str) -> float:
    found = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out)
    if found is None:
        raise RuntimeError(f"no {label} latency in wrk's report:\n{out}")
    value, unit = found.groups()
    return round(float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], 2)


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

    def close(self) -> None:
        self.server.shutdown()
