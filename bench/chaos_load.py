"""The traffic of a chaos run: a steady open-loop stream of journeys over HTTP, spread across
the gateways, each followed by polling its run until it is decided and settled.

A run counts as accepted once a gateway answered 202 with its run id. A refused connection
is retried on the other gateway (nothing reached the first); any other failure is counted
and not retried, since the run may have started (the checker still finds it in the log)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from bench.chaos_orders import ORDER, OrderMaker

CALLER = {"X-API-Key": "dev-caller-key"}
TERMINAL = frozenset({"completed", "failed", "timed_out", "compensation_failed"})
POLL_EVERY_S = 0.5
POLLS_AT_ONCE = 16
POST_TIMEOUT_S = 10.0


@dataclass
class Submission:
    """One run the driver knows the id of, and what polling it has shown so far."""

    run_id: str
    journey: str
    variant: str
    order_id: str
    gateway: str
    submitted_at: float  # epoch seconds
    accepted: bool = True  # False: learnt from a 503's Location or the log, not a 202
    status: str = "running"
    unsettled: bool = True
    created_ms: int | None = None
    latency_ms: float | None = None
    error_code: str | None = None
    compensated: bool = False

    @property
    def location(self) -> str:
        return f"/journeys/{self.journey}/runs/{self.run_id}"

    @property
    def decided(self) -> bool:
        return self.status in TERMINAL

    @property
    def finished(self) -> bool:
        return self.decided and not self.unsettled

    def as_json(self) -> dict[str, Any]:
        return dict(vars(self).items())


class Traffic:
    """Submits journeys to the gateways and follows every run it learns of."""

    def __init__(self, urls: list[str], orders: OrderMaker, say: Callable[[str], None]) -> None:
        self.urls = urls
        self.clients = [
            httpx.AsyncClient(base_url=u, timeout=POST_TIMEOUT_S, headers=CALLER) for u in urls
        ]
        self.orders = orders
        self.say = say
        self.runs: dict[str, Submission] = {}
        self.refused: Counter[str] = Counter()
        self._sent = 0
        self._turn = 0
        self._polls = asyncio.Semaphore(POLLS_AT_ONCE)

    async def close(self) -> None:
        for client in self.clients:
            await client.aclose()

    @property
    def accepted(self) -> list[Submission]:
        return [s for s in self.runs.values() if s.accepted]

    async def submit(self, journey: str, variant: str, body: dict[str, Any]) -> str | None:
        """POST the journey (async) to the next gateway in turn; its run id, or None."""
        first = self._sent % len(self.clients)
        self._sent += 1
        for index in [*range(first, len(self.clients)), *range(first)]:
            client = self.clients[index]
            submitted = time.time()
            try:
                response = await client.post(
                    f"/journeys/{journey}", json=body, headers={"Prefer": "respond-async"}
                )
            except httpx.ConnectError:
                self.refused["connection refused (retried elsewhere)"] += 1
                continue  # nothing reached that gateway: the next may take it
            except httpx.HTTPError as exc:
                self.refused[f"{type(exc).__name__} (outcome unknown)"] += 1
                return None
            if response.status_code == 503 and "location" not in response.headers:
                self.refused["503, nothing started (retried elsewhere)"] += 1
                continue
            run_id = str(response.headers.get("location", "")).rsplit("/", 1)[-1]
            accepted = response.status_code == 202
            if not accepted:
                self.refused[f"HTTP {response.status_code}"] += 1
                if not run_id:
                    return None
            order_id = str(body.get("order_id", ""))
            self.runs[run_id] = Submission(
                run_id, journey, variant, order_id, self.urls[index], submitted, accepted
            )
            return run_id
        self.refused["no gateway took it"] += 1
        return None

    def follow(self, run_id: str, journey: str) -> None:
        """Poll a run the driver was never given (found in the log) until it finishes."""
        if run_id not in self.runs:
            self.runs[run_id] = Submission(
                run_id, journey, "unacknowledged", "", "", time.time(), accepted=False
            )

    async def drive(self, seconds: float, rate: float) -> None:
        """`rate` submissions a second for `seconds`, polling the open runs meanwhile."""
        poller = asyncio.create_task(self._keep_polling())
        sending: set[asyncio.Task[str | None]] = set()
        interval, next_at = 1.0 / rate, time.monotonic()
        stop_at = next_at + seconds
        while time.monotonic() < stop_at:
            task = asyncio.create_task(self.submit(*self.orders.next_input()))
            sending.add(task)
            task.add_done_callback(sending.discard)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*sending)
        poller.cancel()
        await asyncio.gather(poller, return_exceptions=True)

    async def warm_up(self, timeout_s: float = 60.0) -> None:
        """One order through each gateway to completion: consumer groups have settled and
        every gateway knows every provider before the clock starts."""
        deadline = time.monotonic() + timeout_s
        for _ in self.clients:
            while True:
                run_id = await self.submit(ORDER, "warm-up", self.orders.order())
                while run_id and not self.runs[run_id].decided and time.monotonic() < deadline:
                    await self.poll()
                    await asyncio.sleep(0.2)
                if run_id and self.runs[run_id].status == "completed":
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no warm-up order completed within {timeout_s:g}s")
                await asyncio.sleep(1)

    async def settle_all(self, timeout_s: float) -> list[Submission]:
        """Poll until every known run is decided and settled; what is still open after
        `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not [s for s in self.runs.values() if not s.finished]:
                return []
            await self.poll()
            await asyncio.sleep(POLL_EVERY_S)
        return [s for s in self.runs.values() if not s.finished]

    async def _keep_polling(self) -> None:
        while True:
            await self.poll(decided_only=True)
            await asyncio.sleep(POLL_EVERY_S)

    async def poll(self, *, decided_only: bool = False) -> None:
        """GET each open run once (undecided ones only, if `decided_only`)."""
        open_runs = [
            s for s in list(self.runs.values()) if not (s.decided if decided_only else s.finished)
        ]
        await asyncio.gather(*(self._poll(s) for s in open_runs))

    async def _poll(self, sub: Submission) -> None:
        async with self._polls:
            self._turn += 1
            client = self.clients[self._turn % len(self.clients)]
            try:
                response = await client.get(sub.location)
            except httpx.HTTPError:
                return  # that gateway is down: the other one answers next time
        if response.status_code != 200:
            return  # 404: that gateway has not read the run yet
        self._update(sub, response.json())

    def _update(self, sub: Submission, run: dict[str, Any]) -> None:
        was_decided = sub.decided
        sub.status = str(run.get("status"))
        sub.unsettled = bool(run.get("unsettled"))
        if not sub.decided:
            return
        sub.created_ms, sub.latency_ms = run.get("created_ms"), run.get("latency_ms")
        sub.error_code = (run.get("error") or {}).get("code")
        sub.compensated = bool(run.get("compensated"))
        sub.order_id = sub.order_id or str(run.get("input", {}).get("order_id", ""))
        if not was_decided and sub.journey == ORDER and sub.status == "completed":
            self.orders.completed(run)
