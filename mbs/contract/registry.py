"""The contract registry: the compacted topic `mbs.contracts` is the only store.

Any process builds its view by reading the topic from the start; a record that is not a
contract filed under its own key is skipped and copied to `mbs.contracts.dlq` (see
`mbs.kafka.quarantine`). A registration is checked against the provider's latest version of
the same major (see `mbs.contract.compat`) and refused with every reason when it breaks. Keys
are `capability@version` (plus `/unit` for a second provider of a capability), values the
contract as JSON.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from pydantic import ValidationError

from mbs import wire as h
from mbs.contract.compat import Incompatibility, check_contract
from mbs.contract.model import Contract
from mbs.errors import ContractRefused, MbsError
from mbs.kafka.compacted import CompactedTopic
from mbs.kafka.connection import Connection
from mbs.kafka.quarantine import BadRecord


def _semver(version: str) -> tuple[int, int, int]:
    major, minor, patch = version.split("-", 1)[0].split(".")
    return int(major), int(minor), int(patch)


@dataclass
class RegistryView:
    """Contracts as read from the topic, newest registration of each key winning."""

    by_key: dict[str, Contract] = field(default_factory=dict)

    def apply(self, key: str, value: bytes | None) -> None:
        """One record of the topic; a value that is not a contract filed under its own key
        raises (the reader quarantines it and goes on)."""
        if value is None:
            self.by_key.pop(key, None)  # a tombstone retires a version
            return
        contract = Contract.model_validate_json(value)
        if contract.key != key:
            raise BadRecord(
                "refused", f"filed under {key!r}, but the contract inside is {contract.key!r}"
            )
        self.by_key[key] = contract

    def history(self, capability: str, unit: str | None = None) -> list[Contract]:
        """Every version of a capability (of one provider, if named), oldest first."""
        found = [
            c
            for c in self.by_key.values()
            if c.capability == capability and (unit is None or c.unit == unit)
        ]
        return sorted(found, key=lambda c: (c.unit, _semver(c.version)))

    def latest(self, capability: str) -> list[Contract]:
        """The newest version of a capability per provider."""
        newest: dict[str, Contract] = {}
        for contract in self.history(capability):
            newest[contract.unit] = contract
        return list(newest.values())

    def current(self) -> list[Contract]:
        """The newest version of every capability of every provider."""
        capabilities = sorted({c.capability for c in self.by_key.values()})
        return [c for capability in capabilities for c in self.latest(capability)]

    def check(self, contract: Contract) -> list[Incompatibility]:
        """Why `contract` may not be registered (empty: it may)."""
        same = self.by_key.get(contract.key)
        if same is not None:
            if same.model_dump() == contract.model_dump():
                return []
            return [
                Incompatibility(
                    "$.version",
                    f"{contract.key} is registered with other "
                    "content; a changed contract needs a new version",
                )
            ]
        previous = [
            c for c in self.history(contract.capability, contract.unit) if c.major == contract.major
        ]
        return check_contract(previous[-1], contract) if previous else []


class Registry:
    """Reads and writes `mbs.contracts` on a Kafka cluster."""

    def __init__(
        self, connection: Connection, *, client: str = "mbs", topic: str = h.CONTRACTS_TOPIC
    ) -> None:
        self.connection = connection
        self.client = client
        self.topic = topic
        self.view = RegistryView()
        self._table = CompactedTopic(connection, topic, self.view.apply)

    async def sync(self) -> RegistryView:
        """Read every record up to the topic's current end; later calls read only what is new."""
        await self._table.catch_up()
        return self.view

    async def register(self, contracts: Iterable[Contract]) -> list[Contract]:
        """Register each contract that is new; refuse all if any breaks. Returns those written."""
        await self.sync()
        todo = []
        for contract in contracts:
            reasons = self.view.check(contract)
            if reasons:
                raise ContractRefused(contract, reasons)
            if contract.key not in self.view.by_key:
                todo.append(contract)
        if todo:
            await self._write(todo)
            await self.sync()
        return todo

    async def _write(self, contracts: list[Contract]) -> None:
        producer = AIOKafkaProducer(**self.connection.options(), acks="all")
        await producer.start()
        try:
            for contract in contracts:
                await producer.send_and_wait(
                    self.topic,
                    contract.model_dump_json().encode(),
                    key=contract.key.encode(),
                    headers=[
                        ("mbs-registered-by", self.client.encode()),
                        ("mbs-registered-at", str(int(time.time() * 1000)).encode()),
                    ],
                )
        finally:
            await producer.stop()


def load_contract_file(text: str, source: str) -> list[Contract]:
    """Parse a contract document (one object or a list); errors name the field and the fix."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MbsError(
            f"{source}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for index, item in enumerate(items):
        try:
            out.append(Contract.model_validate(item))
        except ValidationError as exc:
            where = f"{source}" + (f"[{index}]" if isinstance(raw, list) else "")
            problems = "\n".join(
                f"  {'.'.join(str(p) for p in e['loc']) or '<document>'}: {e['msg']}"
                for e in exc.errors()
            )
            raise MbsError(f"{where}: not a valid contract:\n{problems}") from None
    return out
