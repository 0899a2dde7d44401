"""The unit runtime: binds plain async handlers to their request topics on a FastStream broker.

A handler takes one pydantic model and returns one; everything else is the kit's (see
`mbs._serve`): validation and dead letters, replies with cost headers, typed business errors,
retries, deadlines, shadow requests, de-duplication by message id, metrics. A unit's state and
its memory of replies live in its `UnitStore` (see `mbs.state`).
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from pydantic import BaseModel

from mbs import headers as h
from mbs.contract import ModelContract
from mbs.errors import ContractViolation, MbsError
from mbs.state import UnitStore

Handler = Callable[[Any], Awaitable[BaseModel]]
_DRY_RUN: contextvars.ContextVar[bool] = contextvars.ContextVar("mbs_dry_run", default=False)


def dry_run() -> bool:
    """True while a handler serves a shadow (`mbs-shadow: 1`) request: change nothing."""
    return _DRY_RUN.get()


@dataclass(frozen=True)
class Binding:
    """One capability of a unit: its contract and the handler that serves it."""

    contract: ModelContract[Any, Any]
    handler: Handler


@dataclass(frozen=True)
class RetryPolicy:
    """How often a technical failure is retried before the request is dead-lettered."""

    attempts: int = 3
    first_backoff_s: float = 0.05


class Unit:
    """A Micro Business Unit: a name, the capabilities it serves, and how it serves them."""

    def __init__(
        self,
        name: str,
        bindings: Sequence[Binding],
        *,
        retry: RetryPolicy | None = None,
        concurrency: int = 1,
        port: int = 0,
        store: UnitStore | None = None,
    ) -> None:
        wrong = [b.contract.capability for b in bindings if b.contract.unit != name]
        if wrong:
            raise ContractViolation("unit_mismatch", f"{wrong} are not contracts of unit {name}")
        self.name = name
        self.bindings = list(bindings)
        self.retry = retry or RetryPolicy()
        self.concurrency = concurrency
        self.port = port
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
        from mbs._serve import Server

        if store is not None and self.store is not None and store is not self.store:
            raise MbsError(
                f"unit {self.name} keeps its state in {self.store.path or 'memory'} but is "
                f"attached with the store {store.path or 'in memory'}; build it with that store"
            )
        self.store = store or self.store or UnitStore.temporary()
        for binding in self.bindings:
            server = Server(self, binding, broker, self.store)
            broker.subscriber(
                binding.contract.request_topic,
                group_id=f"mbs.unit.{self.name}.{binding.contract.capability}",
                auto_offset_reset="earliest",
                ack_policy=AckPolicy.ACK,
                max_workers=self.concurrency,
                fetch_max_wait_ms=50,
            )(server.on_message)
