"""The unit runtime: binds plain async handlers to their request topics on a FastStream broker.

A handler takes one pydantic model and returns one; everything else is the kit's (see
`mbs.unit.server`): validation and dead letters, replies with cost headers, typed business errors,
retries, deadlines, shadow requests, de-duplication by message id, metrics. A unit's state and
its memory of replies live in its `UnitStore` (see `mbs.unit.state`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker

from mbs import wire as h
from mbs.errors import ContractViolation, MbsError
from mbs.unit.binding import Binding, RetryPolicy
from mbs.unit.intake import guard, parse_leniently, the_message
from mbs.unit.server import Server
from mbs.unit.state import UnitStore


class Unit:
    """A Micro Business Unit: a name, the capabilities it serves, and how it serves them."""

    def __init__(
        self,
        name: str,
        bindings: Sequence[Binding],
        *,
        retry: RetryPolicy | None = None,
        concurrency: int = 1,
        store: UnitStore | None = None,
    ) -> None:
        wrong = [b.contract.capability for b in bindings if b.contract.unit != name]
        if wrong:
            raise ContractViolation("unit_mismatch", f"{wrong} are not contracts of unit {name}")
        self.name = name
        self.bindings = list(bindings)
        self.retry = retry or RetryPolicy()
        self.concurrency = concurrency
        self.instance_id: str | None = None  # MBS_INSTANCE_ID: static group membership
        self.store = store  # where the handlers keep their state, if they keep any

    @property
    def topics(self) -> list[str]:
        """Every topic this unit reads or writes."""
        out = [h.reply_topic(self.name)]
        for binding in self.bindings:
            out += [binding.contract.request_topic, binding.contract.dlq_topic]
        return out

    def attach(self, broker: KafkaBroker, store: UnitStore | None = None) -> None:
        """Subscribe each binding's handler to its request topic; requests are served in
        transactions of `store` (the unit's own store, else a temporary one)."""
        if store is not None and self.store is not None and store is not self.store:
            raise MbsError(
                f"unit {self.name} keeps its state in {self.store.path or 'memory'} but is "
                f"attached with the store {store.path or 'in memory'}; build it with that store"
            )
        self.store = store or self.store or UnitStore.temporary()
        for binding in self.bindings:
            server = Server(self.name, binding, self.retry, broker, self.store)
            # A static member needs a name of its own per consumer: FastStream gives the
            # consumers of one subscriber the same, so each gets a subscriber of its own.
            static = self.instance_id is not None
            for member in range(self.concurrency if static else 1):
                subscriber = broker.subscriber(
                    binding.contract.request_topic,
                    group_id=f"mbs.unit.{self.name}.{binding.contract.capability}",
                    group_instance_id=f"{self.instance_id}.{member}" if static else None,
                    auto_offset_reset="earliest",
                    ack_policy=AckPolicy.ACK,
                    max_workers=1 if static else self.concurrency,
                    fetch_max_wait_ms=50,
                    parser=parse_leniently,  # headers and body are judged by the server
                    decoder=the_message,
                )
                guard(subscriber, server.undecodable)
                subscriber(_serving(server))


def _serving(server: Server) -> Callable[[Any], Awaitable[None]]:
    """The handler FastStream calls with the message (decoded by `the_message`): one plain
    argument, no injected context."""

    async def serve(message: Any) -> None:
        await server.on_message(message)

    serve.__name__ = f"serve_{server.contract.capability.replace('.', '_')}"
    return serve
