"""Card tokens (request fields a contract marks `writeOnly`) in memory: sealed in every record
of the journey log, opened only for the unit's request (also after a crash, by another
gateway), dropped once the run is finished, never shown; a wrong key fails clearly."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import jsonschema
import pytest
import yaml

import contracts
from gateway.definition import JOURNEYS_DIR, JourneyDefinition, load_file, parse
from gateway.engine import JourneyEngine
from gateway.models import REDACTED, JourneyRun
from gateway.secrets import SEALED, SecretsKeyError, SecretUnavailable, Vault, secret_inputs
from gateway.transport import Outgoing
from mbs.contract import Contract
from mbs.contract.compat import check_contract
from mbs.kafka import Reply
from mbs.settings import Settings
from tests.engine_world import RESTART_S, Answer, Crash, Effect, FakeUnit, World

TOKEN = "tok-visa-4242-do-not-log"
KEY = "c2VjcmV0cy10ZXN0LWtleS1udW1iZXItb25lLTMyYnk="  # 32 bytes, URL-safe base64
OTHER_KEY = "YW5vdGhlci10ZXN0LWtleS1ub3QtdGhlLWZpcnN0LSE="
ORDER = {
    "order_id": "o-1",
    "sku": "espresso-beans-1kg",
    "quantity": 1,
    "customer_id": "cust-1",
    "country": "DE",
    "postcode": "10115",
    "card_token": TOKEN,
}
_UNDO_OF = {  # an undo capability: the request field naming the side effect it undoes
    "payments.refund": "charge_id",
    "inventory.release": "reservation_id",
    "shipping.cancel": "shipment_id",
}


def _body(capability: str, p: dict[str, Any], ref: str) -> dict[str, Any]:
    """A reply that honours the capability's reply schema."""
    order = {"order_id": p.get("order_id")}
    bodies: dict[str, dict[str, Any]] = {
        "pricing.quote": {
            **{"sku": p.get("sku"), "quantity": p.get("quantity")},
            **{"unit_price": "12.50", "total": "12.50", "currency": "EUR"},
        },
        "inventory.reserve": {
            **{**order, "sku": p.get("sku"), "quantity": p.get("quantity")},
            **{"reservation_id": ref, "remaining": 9},
        },
        "fraud.score": {**order, "score": 5, "decision": "allow"},
        "payments.charge": {
            **{**order, "amount": p.get("amount"), "currency": p.get("currency")},
            **{"charge_id": ref, "provider": "test"},
        },
        "shipping.book": {
            **{**order, "shipment_id": ref, "carrier": "dhl"},
            **{"tracking_number": f"T-{ref}", "eta_days": 2},
        },
        "notifications.send": {"notification_id": ref, "channel": "email"},
        "payments.refund": {"refund_id": ref, "charge_id": p.get("charge_id"), "amount": "12.50"},
        "inventory.release": {
            "reservation_id": p.get("reservation_id"),
            **{"released": 1, "remaining": 10},
        },
        "shipping.cancel": {"shipment_id": p.get("shipment_id"), "cancelled": True},
    }
    return bodies[capability]


@dataclass
class ShopUnit(FakeUnit):
    """A unit of the real contracts: checks each request against its schema, as the kit does."""

    def serve(self, contract: Contract, outgoing: Outgoing, fault: str) -> Answer:
        world = self.world
        assert isinstance(world, Shop)
        jsonschema.validate(outgoing.payload, contract.request)
        world.received.append((contract.capability, dict(outgoing.payload)))
        mid = outgoing.message_id
        if mid in self.memory:
            return self.memory[mid]
        if world.now_ms > outgoing.deadline_ms:
            return self._final(mid, Answer({}, "deadline_exceeded", Decimal(0)))
        ref = f"{self.name}-{len(world.effects) + len(self.memory) + 1}"
        undone = _UNDO_OF.get(contract.capability)
        if undone is not None:
            world.effects[outgoing.payload[undone]].undone = 1
        elif contract.side_effects:
            world.effects[ref] = Effect(ref, self.name, mid)
        body = _body(contract.capability, outgoing.payload, ref)
        return self._final(mid, Answer(body, None, contract.pricing.price_per_call))


@dataclass
class Shop(World):
    """The engine world with the ecosystem's contracts; every record saved is kept."""

    keys: str = KEY
    crash_after: set[str] = field(default_factory=set)  # die right after this capability's call
    records: list[bytes] = field(default_factory=list)
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.units = {name: ShopUnit(name, self) for name in self.units}

    def engine(self) -> JourneyEngine:
        """A new gateway instance, sharing the key of the others (unless a test changes it)."""
        engine = super().engine()
        engine.vault = Vault(self.keys)
        return engine

    async def save(self, run: JourneyRun, gen: int) -> int:
        partition = await super().save(run, gen)
        assert self.saved is not None
        self.records.append(self.saved)
        return partition

    async def request(
        self, gen: int, contract: Contract, outgoing: Outgoing, timeout_s: float
    ) -> Reply:
        if contract.capability in self.crash_after and gen == self.life:
            self.crash_after.discard(contract.capability)
            self._faults = iter(["crash_after"])
        return await super().request(gen, contract, outgoing, timeout_s)

    def sent(self, capability: str) -> list[dict[str, Any]]:
        return [payload for cap, payload in self.received if cap == capability]


def _shop(**kwargs: Any) -> tuple[Shop, JourneyDefinition]:
    world = Shop(contracts.all_contracts(), **kwargs)
    return world, load_file(JOURNEYS_DIR / "order-to-delivery.yaml", world.catalog)


async def _live(world: Shop, definition: JourneyDefinition, lives: int = 6) -> JourneyRun:
    """Accept a run (saved first, as POST does), then restart the gateway after every crash."""
    run = world.engine().new_run(definition, dict(ORDER))
    world.saved = run.model_dump_json().encode()
    world.records.append(world.saved)
    for _ in range(lives):
        run = world.last_saved()
        if run.finished:
            break
        try:
            await world.engine().run(definition, run)
        except Crash:
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            world.now_ms += RESTART_S * 1000
    return world.last_saved()


def _assert_never_kept(world: Shop) -> None:
    assert world.records, "nothing was saved"
    leaked = [i for i, record in enumerate(world.records) if TOKEN.encode() in record]
    assert not leaked, f"records {leaked} of {len(world.records)} hold the card token in clear"


def test_the_token_flows_into_a_write_only_field_so_it_is_secret() -> None:
    world, definition = _shop()
    for contract in world.catalog.providers("payments.charge"):
        assert contract.request["properties"]["card_token"]["writeOnly"] is True, contract.unit
    assert secret_inputs(definition, world.catalog) == ["card_token"]


def test_marking_a_field_write_only_is_a_compatible_change() -> None:
    for new in contracts.all_contracts():
        if "card_token" not in new.request.get("properties", {}):
            continue
        old = new.model_copy(deep=True, update={"version": "2.0.0"})
        del old.request["properties"]["card_token"]["writeOnly"]
        assert check_contract(old, new) == [], new.unit


def test_the_log_never_holds_the_token_yet_the_unit_gets_it() -> None:
    world, definition = _shop()
    run = asyncio.run(_live(world, definition))
    assert run.status == "completed", run.error
    _assert_never_kept(world)
    assert SEALED.encode() in world.records[0], "the accepted run holds the token sealed"
    assert [p["card_token"] for p in world.sent("payments.charge")] == [TOKEN]
    assert run.input["card_token"] == REDACTED
    assert run.secrets == ["card_token"]


def test_a_finished_run_keeps_no_ciphertext_and_shows_no_secret() -> None:
    world, _ = _shop()
    document = yaml.safe_load((JOURNEYS_DIR / "order-to-delivery.yaml").read_text())
    document["output"]["card"] = "$input.card_token"  # a careless definition
    definition = parse(json.dumps(document), "careless", world.catalog)
    run = asyncio.run(_live(world, definition))
    assert run.status == "completed"
    assert SEALED.encode() not in world.records[-1], "the final record keeps ciphertext"
    assert run.output is not None
    assert run.output["card"] == REDACTED
    _assert_never_kept(world)


def test_what_is_shown_of_a_running_run_has_the_marker() -> None:
    world, definition = _shop()
    run = world.engine().new_run(definition, dict(ORDER))
    shown = run.public().model_dump_json()
    assert TOKEN not in shown
    assert SEALED not in shown
    assert run.public().input["card_token"] == REDACTED
    assert SEALED in run.input["card_token"], "public() leaves the run itself as it is"
    plain = world.engine().new_run(definition.model_copy(update={"steps": []}), {"x": 1})
    assert plain.public() is plain  # nothing secret, nothing copied


@pytest.mark.parametrize("crash_after", ["inventory.reserve", "payments.charge"])
def test_a_resumed_run_still_sends_the_real_token(crash_after: str) -> None:
    """The gateway dies before the charge is built, or right after it was sent; the next
    instance works from the saved record alone."""
    world, definition = _shop(crash_after={crash_after})
    run = asyncio.run(_live(world, definition))
    assert world.life > 3, "the gateway did crash"
    assert run.status == "completed", run.error
    charges = world.sent("payments.charge")
    assert charges
    assert all(p["card_token"] == TOKEN for p in charges)
    assert [e.step for e in world.effects.values()].count("pay") == 1, "charged once"
    _assert_never_kept(world)
    assert SEALED.encode() not in world.records[-1]


def test_a_gateway_with_another_key_fails_the_step_clearly() -> None:
    world, definition = _shop()
    run = world.engine().new_run(definition, dict(ORDER))  # accepted by one instance
    world.keys = OTHER_KEY  # executed by one that has another key
    asyncio.run(world.engine().run(definition, run))  # no exception: a clear outcome
    assert run.status == "failed"
    assert run.error is not None
    assert run.error.step == "pay"
    assert run.error.code == "secret_unavailable"
    assert "MBS_SECRETS_KEY" in run.error.detail
    assert world.sent("payments.charge") == [], "nothing half-built is sent"
    assert [cap for cap, _ in world.received].count("inventory.release") == 1, "undone"
    assert run.finished
    assert run.input["card_token"] == REDACTED
    _assert_never_kept(world)


def test_a_call_that_cannot_be_settled_parks_the_run_with_its_secret_sealed() -> None:
    """A crash right after the charge, then an instance with the wrong key: the charge cannot
    be re-asked, so it is parked, never assumed; fixed, the operator's reopening settles it."""
    world, definition = _shop(crash_after={"payments.charge"})
    run = world.engine().new_run(definition, dict(ORDER))
    world.saved = run.model_dump_json().encode()
    with pytest.raises(Crash):
        asyncio.run(world.engine().run(definition, run))
    world.now_ms += RESTART_S * 1000
    world.keys = OTHER_KEY
    parked = world.last_saved()
    asyncio.run(world.engine().run(definition, parked))
    assert parked.status == "compensation_failed"
    assert parked.parked == [f"{parked.run_id}:pay:payments:1"]
    assert SEALED.encode() in world.records[-1], "a parked run may still need its secret"
    world.keys = f"{OTHER_KEY},{KEY}"  # the operator adds the old key back, then reopens
    reopened = world.last_saved()
    JourneyEngine.reopen(reopened)
    asyncio.run(world.engine().run(definition, reopened))
    assert reopened.finished
    assert not reopened.parked
    assert reopened.status == "failed"
    assert reopened.compensated
    assert SEALED.encode() not in world.records[-1]
    assert all(p["card_token"] == TOKEN for p in world.sent("payments.charge"))
    _assert_never_kept(world)


def test_a_sealed_value_opens_only_in_its_own_run_and_field() -> None:
    world, definition = _shop()
    vault = Vault(KEY)
    one = world.engine().new_run(definition, dict(ORDER))
    two = world.engine().new_run(definition, dict(ORDER))
    assert vault.open(one, "card_token", one.input["card_token"]) == TOKEN
    with pytest.raises(SecretUnavailable, match="another key"):
        vault.open(two, "card_token", one.input["card_token"])
    with pytest.raises(SecretUnavailable, match="dropped"):
        vault.open(one, "card_token", REDACTED)
    with pytest.raises(SecretUnavailable, match="not sealed"):
        vault.open(one, "card_token", TOKEN)
    rotated = Vault(f"{OTHER_KEY},{KEY}")
    assert rotated.open(one, "card_token", one.input["card_token"]) == TOKEN


@pytest.mark.parametrize("key", ["", "short", "not base64 !!", f"{KEY},short"])
def test_an_unusable_key_stops_the_gateway_with_the_fix(key: str) -> None:
    with pytest.raises(SecretsKeyError, match="MBS_SECRETS_KEY"):
        Vault(key)


def test_the_key_comes_from_the_settings() -> None:
    assert Vault.from_settings(Settings()).development, "the default is the dev key"
    assert not Vault.from_settings(Settings(secrets_key=KEY)).development
