"""A unit's store (mbs.unit.state) and the rule built on it, in memory: the answer to a message id
is final once given, undos are idempotent, a dry run changes nothing, state survives restarts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka import KafkaBroker, KafkaMessage, TestKafkaBroker
from pydantic import BaseModel

from contracts import inventory, payments
from mbs import MbsError, ModelContract, Unit
from mbs import wire as h
from mbs.errors import StateError
from mbs.settings import Settings
from mbs.unit import StoredReply, Table, UnitStore
from services.inventory import app as inventory_app
from services.payments import app as payments_app


class Parcel(BaseModel):
    weight_g: int


def order(i: int = 0, card: str = "tok-4242") -> dict[str, str]:
    return {"order_id": f"o-{i}", "customer_id": "cust-1", "amount": "19.90", "card_token": card}


# --- the store ---------------------------------------------------------------------------


async def test_a_transaction_commits_its_writes_and_its_reply_together(tmp_path: Path) -> None:
    store = UnitStore.open(tmp_path / "u.sqlite3")
    parcels = store.table("parcels", Parcel)
    async with store.transaction() as tx:
        parcels.put("p-1", Parcel(weight_g=500))
        tx.remember("m-1", StoredReply(b"{}", {h.UNIT: "u"}))
    with pytest.raises(ConnectionError):
        await write_then_fail(store, parcels)
    assert parcels.items() == [("p-1", Parcel(weight_g=500))]
    async with store.transaction() as tx:
        assert tx.reply("m-1") == StoredReply(b"{}", {h.UNIT: "u"})
        assert tx.reply("m-2") is None, "rolled back with the failed work"


async def write_then_fail(store: UnitStore, parcels: Table[Parcel]) -> None:
    async with store.transaction() as tx:
        parcels.put("p-2", Parcel(weight_g=1))
        tx.remember("m-2", StoredReply(b"{}", {}))
        raise ConnectionError("card network unreachable")


async def test_a_rollback_only_transaction_changes_nothing() -> None:
    store = UnitStore.temporary()
    counters = store.table("counters", int)
    async with store.transaction(rollback_only=True):
        counters.put("next", 7)
        assert counters.get("next") == 7, "the handler sees its own writes"
    assert counters.get("next") is None


async def test_table_get_put_delete_values_keep_insertion_order() -> None:
    parcels = UnitStore.temporary().table("parcels", Parcel)
    for key, weight in (("b", 2), ("a", 1), ("c", 3)):
        parcels.put(key, Parcel(weight_g=weight))
    parcels.put("b", Parcel(weight_g=20))
    parcels.delete("c")
    assert parcels.get("missing") is None
    assert parcels.values() == [Parcel(weight_g=20), Parcel(weight_g=1)]
    assert parcels.keys() == ["b", "a"]


async def test_a_table_refuses_another_stores_transaction() -> None:
    mine, other = UnitStore.temporary(), UnitStore.temporary()
    parcels = mine.table("parcels", Parcel)
    async with other.transaction():
        with pytest.raises(StateError, match="another store"):
            parcels.get("p-1")


async def test_two_instances_on_one_file_take_turns(tmp_path: Path) -> None:
    """Two stores on one file stand for two unit processes: the second writer waits until the
    first commits, then sees its write (no lost update of a counter)."""
    path = tmp_path / "u.sqlite3"
    first, second = UnitStore.open(path), UnitStore.open(path)
    a, b = first.table("counters", int), second.table("counters", int)
    first_holds, order_seen = asyncio.Event(), []

    async def slow_increment() -> None:
        async with first.transaction():
            a.put("n", (a.get("n") or 0) + 1)
            first_holds.set()
            await asyncio.sleep(0.3)  # holds the file while the second writer tries to begin
            order_seen.append("first committed")

    async def quick_increment() -> None:
        await first_holds.wait()
        async with second.transaction():
            order_seen.append("second began")
            b.put("n", (b.get("n") or 0) + 1)

    await asyncio.gather(slow_increment(), quick_increment())
    assert order_seen == ["first committed", "second began"]
    assert a.get("n") == b.get("n") == 2


async def test_old_replies_are_pruned(tmp_path: Path) -> None:
    store = UnitStore.open(tmp_path / "u.sqlite3", retention_hours=1)
    two_hours_ago = int(time.time() * 1000) - 2 * 3_600_000
    store.connection.execute(
        "INSERT INTO replies VALUES ('old', x'7b7d', '{}', ?)", (two_hours_ago,)
    )
    async with store.transaction() as tx:
        tx.remember("new", StoredReply(b"{}", {}))
    async with store.transaction() as tx:
        assert tx.reply("old") is None
        assert tx.reply("new") is not None


def test_settings_put_unit_state_under_mbs_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MBS_UNIT_STATE_DIR", raising=False)
    monkeypatch.delenv("MBS_REPLY_RETENTION_HOURS", raising=False)
    settings = Settings(home=Path("/srv/mbs"))
    assert settings.unit_state_dir == Path("/srv/mbs/units")
    assert settings.reply_retention_hours == 168
    monkeypatch.setenv("MBS_UNIT_STATE_DIR", "/var/lib/mbs")
    assert Settings().unit_state_dir == Path("/var/lib/mbs")


# --- units on their store, in memory -----------------------------------------------------


@dataclass
class Desk:
    """A unit on an in-memory broker, and every reply it sent, in order."""

    broker: KafkaBroker
    unit: Unit
    replies: asyncio.Queue[tuple[dict[str, Any], dict[str, str]]] = field(
        default_factory=asyncio.Queue
    )

    async def call(
        self,
        contract: ModelContract[Any, Any],
        body: dict[str, Any],
        *,
        message_id: str | None = None,
        **headers: str,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        hdrs = {
            h.MESSAGE_ID: message_id or uuid.uuid4().hex,
            h.CORRELATION_ID: uuid.uuid4().hex,
            **headers,
        }
        await self.broker.publish(json.dumps(body).encode(), contract.request_topic, headers=hdrs)
        reply, reply_headers = await asyncio.wait_for(self.replies.get(), 10)
        assert reply_headers[h.CORRELATION_ID] == hdrs[h.CORRELATION_ID]
        return reply, reply_headers

    @property
    def store(self) -> UnitStore:
        assert self.unit.store is not None
        return self.unit.store


@contextlib.asynccontextmanager
async def serving(build: Callable[[UnitStore], Unit], store: UnitStore) -> AsyncIterator[Desk]:
    """The unit built on `store`, attached to an in-memory broker, its replies captured."""
    broker = KafkaBroker()
    unit = build(store)
    unit.attach(broker)
    desk = Desk(broker, unit)

    @broker.subscriber(h.reply_topic(unit.name), group_id=f"test-{uuid.uuid4().hex}")
    async def capture(msg: KafkaMessage) -> None:
        await desk.replies.put((json.loads(msg.body), dict(msg.headers)))

    async with TestKafkaBroker(broker):
        yield desk


def charges_of(store: UnitStore) -> list[payments.Charge]:
    return store.table("charges", payments.Charge).values()


async def test_same_message_id_twice_charges_once_with_the_same_reply() -> None:
    async with serving(payments_app.build, UnitStore.temporary()) as desk:
        message_id = uuid.uuid4().hex
        first, first_hdrs = await desk.call(payments.CHARGE, order(1), message_id=message_id)
        again, again_hdrs = await desk.call(payments.CHARGE, order(1), message_id=message_id)
        other, _ = await desk.call(payments.CHARGE, order(1))
    assert again == first
    assert again_hdrs[h.MESSAGE_ID] == first_hdrs[h.MESSAGE_ID], "the very same reply"
    assert again_hdrs[h.REQUEST_ID] == message_id
    assert other["charge_id"] != first["charge_id"], "another message id is another charge"
    assert [c.charge_id for c in charges_of(desk.store)] == [
        first["charge_id"],
        other["charge_id"],
    ]


async def test_passed_deadline_is_final_and_nothing_is_charged() -> None:
    past, future = str(int(time.time() * 1000) - 1), str(int(time.time() * 1000) + 60_000)
    async with serving(payments_app.build, UnitStore.temporary()) as desk:
        message_id = uuid.uuid4().hex
        _, late = await desk.call(
            payments.CHARGE, order(2), message_id=message_id, **{h.DEADLINE: past}
        )
        _, again = await desk.call(
            payments.CHARGE, order(2), message_id=message_id, **{h.DEADLINE: future}
        )
    assert late[h.ERROR] == again[h.ERROR] == "deadline_exceeded"
    assert again[h.MESSAGE_ID] == late[h.MESSAGE_ID]
    assert float(late[h.PRICE]) == 0
    assert charges_of(desk.store) == [], "a request whose deadline passed is never done"


async def test_declined_card_is_remembered_as_the_answer() -> None:
    async with serving(payments_app.build, UnitStore.temporary()) as desk:
        message_id = uuid.uuid4().hex
        declined = order(3, card="tok-0000")
        _, first = await desk.call(payments.CHARGE, declined, message_id=message_id)
        _, again = await desk.call(payments.CHARGE, declined, message_id=message_id)
    assert first[h.ERROR] == again[h.ERROR] == "card_declined"
    assert again[h.MESSAGE_ID] == first[h.MESSAGE_ID]
    async with desk.store.transaction() as tx:
        assert tx.reply(message_id) is not None


async def test_shadow_charge_changes_nothing_and_is_not_remembered() -> None:
    async with serving(payments_app.build, UnitStore.temporary()) as desk:
        message_id = uuid.uuid4().hex
        shadow, shadow_hdrs = await desk.call(
            payments.CHARGE, order(4), message_id=message_id, **{h.SHADOW: "1"}
        )
        assert charges_of(desk.store) == []
        real, _ = await desk.call(payments.CHARGE, order(4), message_id=message_id)
    assert shadow["charge_id"].startswith("dry-")
    assert float(shadow_hdrs[h.PRICE]) == 0
    assert h.REQUEST_ID not in shadow_hdrs
    assert real["charge_id"].startswith("ch-"), "the dry run was not remembered"
    assert [c.charge_id for c in charges_of(desk.store)] == [real["charge_id"]]


async def test_refund_twice_refunds_once_and_both_are_ok() -> None:
    async with serving(payments_app.build, UnitStore.temporary()) as desk:
        charge, _ = await desk.call(payments.CHARGE, order(5))
        undo = {"charge_id": charge["charge_id"]}
        first, first_hdrs = await desk.call(payments.REFUND, undo)
        again, again_hdrs = await desk.call(payments.REFUND, undo)
        _, unknown = await desk.call(payments.REFUND, {"charge_id": "ch-never"})
    assert h.ERROR not in first_hdrs
    assert h.ERROR not in again_hdrs, "undoing twice is not an error"
    assert again == first
    assert len(desk.store.table("refunds", payments.Refund).values()) == 1
    assert unknown[h.ERROR] == "unknown_charge", "undoing something unknown still is"


async def test_release_twice_gives_stock_back_once_and_both_are_ok() -> None:
    reserve = {"order_id": "o-6", "sku": "grinder-c40", "quantity": 3}
    async with serving(inventory_app.build, UnitStore.temporary()) as desk:
        reservation, _ = await desk.call(inventory.RESERVE, reserve)
        undo = {"reservation_id": reservation["reservation_id"]}
        first, first_hdrs = await desk.call(inventory.RELEASE, undo)
        again, again_hdrs = await desk.call(inventory.RELEASE, undo)
        _, unknown = await desk.call(inventory.RELEASE, {"reservation_id": "res-never"})
        check, _ = await desk.call(inventory.RESERVE, {**reserve, "quantity": 1})
    assert reservation["remaining"] == 17
    assert h.ERROR not in first_hdrs
    assert h.ERROR not in again_hdrs
    assert again == first == {**undo, "released": 3, "remaining": 20}
    assert unknown[h.ERROR] == "unknown_reservation"
    assert check["remaining"] == 19, "the stock came back once"


async def test_state_and_memory_survive_a_restart(tmp_path: Path) -> None:
    path, message_id = tmp_path / "payments.sqlite3", uuid.uuid4().hex
    async with serving(payments_app.build, UnitStore.open(path)) as before:
        charge, charge_hdrs = await before.call(payments.CHARGE, order(7), message_id=message_id)
    before.store.close()  # the process ends
    async with serving(payments_app.build, UnitStore.open(path)) as after:
        again, again_hdrs = await after.call(payments.CHARGE, order(7), message_id=message_id)
        refund, refund_hdrs = await after.call(payments.REFUND, {"charge_id": charge["charge_id"]})
    assert (again, again_hdrs[h.MESSAGE_ID]) == (charge, charge_hdrs[h.MESSAGE_ID])
    assert h.ERROR not in refund_hdrs, "the charge is known after the restart"
    assert refund["charge_id"] == charge["charge_id"]
    assert len(charges_of(after.store)) == 1


async def test_stock_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "inventory.sqlite3"
    reserve = {"order_id": "o-8", "sku": "milk-jug-350ml", "quantity": 4}
    async with serving(inventory_app.build, UnitStore.open(path)) as before:
        first, _ = await before.call(inventory.RESERVE, reserve)
    before.store.close()
    async with serving(inventory_app.build, UnitStore.open(path)) as after:
        second, _ = await after.call(inventory.RESERVE, reserve)
    assert (first["remaining"], second["remaining"]) == (96, 92), "no restock on restart"


def test_a_unit_attached_with_another_store_than_its_own_is_refused() -> None:
    unit = payments_app.build(UnitStore.temporary())
    with pytest.raises(MbsError, match="build it with that store"):
        unit.attach(KafkaBroker(), UnitStore.temporary())
