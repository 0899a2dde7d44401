"""The steady load of a memory soak: journeys started at a fixed rate over HTTP.

Open-ish: a journey is started every 1/rate seconds on an absolute schedule, whether or not
the earlier ones have been answered, up to `max_in_flight` at once. A tick that finds that
many in flight sends nothing and is counted as skipped (so the system under test never
faces an unbounded queue, and a shortfall shows in the achieved rate instead of hiding).
The requests go over bench.soak_http's keep-alive connections, which cost the 2 shared cores
little; wrk at a fixed number of connections cannot hold a rate (it is a closed loop).

The journey, its input, the keys and the OTLP sink are bench.journeys' (`bench.load`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.load import ADMIN, BODY, CALLER, JOURNEYS
from bench.soak_http import ERRORS, HttpPool

JOURNEY = "bench-three-step"
DEFINITION = {"name": JOURNEY, "version": 1, **JOURNEYS[JOURNEY]}


@dataclass
class Tally:
    """What the load did so far; `window()` gives the figures since the last call."""

    sent: int = 0
    completed: int = 0
    skipped: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    # (monotonic time, completed, len(latencies_ms)) when the current window began
    _window_start: tuple[float, int, int] = field(default=(0.0, 0, 0), init=False, repr=False)

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def in_flight(self) -> int:
        return self.sent - self.completed - self.failed

    def window(self) -> tuple[float, float]:
        """Journeys completed per second and p50 latency (ms) since the last call."""
        now = time.monotonic()
        started, completed, seen = self._window_start
        self._window_start = (now, self.completed, len(self.latencies_ms))
        recent = sorted(self.latencies_ms[seen:])
        p50 = recent[len(recent) // 2] if recent else float("nan")
        return (self.completed - completed) / max(now - started, 1e-9), p50


def journey_body(uid: str) -> Callable[[int], bytes]:
    """The bench's three-step input with an order id of its own per journey (what keys any
    per-order memory a unit or the gateway keeps; a leak there shows only with new ids)."""
    return lambda n: json.dumps({**BODY, "order_id": f"soak-{uid}-{n}"}).encode()


async def drive(
    client: HttpPool,
    path: str,
    body: Callable[[int], bytes],
    rate: float,
    seconds: float,
    max_in_flight: int,
    tally: Tally,
) -> None:
    """Start journeys at `rate` per second for `seconds`, then wait for those in flight."""
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    start = loop.time()
    tally.window()  # the first progress window starts with the load
    try:
        for n in range(int(rate * seconds)):
            delay = start + n / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if tally.in_flight >= max_in_flight:
                tally.skipped += 1
                continue
            tally.sent += 1
            task = asyncio.create_task(_one(client, path, body(n), tally))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks)
    finally:  # cancelled (a process died): leave nothing running against a closing client
        for task in tasks:
            task.cancel()


async def _one(client: HttpPool, path: str, body: bytes, tally: Tally) -> None:
    started = time.perf_counter()
    try:
        status, _ = await client.request("POST", path, body, CALLER)
    except ERRORS as exc:
        tally.failures[type(exc).__name__] += 1
        return
    if status == 200:
        tally.completed += 1
        tally.latencies_ms.append((time.perf_counter() - started) * 1000)
    else:
        tally.failures[f"HTTP {status}"] += 1


async def define(client: HttpPool) -> None:
    """PUT the journey (201, or 409 when it is there already)."""
    status, answer = await client.request(
        "PUT", f"/journeys/{JOURNEY}", json.dumps(DEFINITION).encode(), ADMIN
    )
    if status not in (201, 409):
        raise RuntimeError(f"PUT /journeys/{JOURNEY}: HTTP {status}: {answer.decode()}")


async def until_served(client: HttpPool, path: str, body: bytes) -> None:
    """Consumer groups settle after start-up: wait for a first journey to complete."""
    answer = b""
    for _ in range(30):
        status, answer = await client.request("POST", path, body, CALLER)
        if status == 200:
            return
        await asyncio.sleep(1)
    raise RuntimeError(f"{path} never completed: {answer.decode()}")
