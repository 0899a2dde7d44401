"""What the journey engine needs from the world: send a request and await its reply, and
tell the time. Kafka implements it in production; the simulation tests use a fake world with
faults, so the engine's decisions are tested without a broker."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from mbs import wire as h
from mbs.contract import Contract
from mbs.kafka.rpc import Reply, Requester


@dataclass(frozen=True)
class Outgoing:
    """One request as the engine means it: what, to whom, under which id, until when."""

    payload: dict[str, Any]
    message_id: str
    deadline_ms: int
    run_id: str
    headers: dict[str, str] = field(default_factory=dict)


class Transport(Protocol):
    """Sends a request to a provider and awaits its reply (`TimeoutError` if none in time)."""

    async def request(self, contract: Contract, outgoing: Outgoing, timeout_s: float) -> Reply: ...


class Clock(Protocol):
    """Wall time in epoch milliseconds, and a way to wait."""

    def now_ms(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def now_ms(self) -> float:
        return time.time() * 1000

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass
class KafkaTransport:
    """Requests on the provider's request topic, replies accepted only from its reply topic."""

    requester: Requester

    async def request(self, contract: Contract, outgoing: Outgoing, timeout_s: float) -> Reply:
        extra = {
            **outgoing.headers,
            h.MESSAGE_ID: outgoing.message_id,
            h.DEADLINE: str(outgoing.deadline_ms),
        }
        return await self.requester.request(
            contract.request_topic,
            json.dumps(outgoing.payload, default=str).encode(),
            timeout_s=timeout_s,
            key=outgoing.run_id.encode(),
            extra_headers=extra,
            reply_from=contract.reply_topic,
        )
