"""Provisioning a secure broker: topics, principals and ACLs for the ecosystem, and partner
onboarding (`mbs partners add`)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import contracts as ecosystem
from mbs import headers as h
from mbs.broker import LocalBroker
from mbs.contract import Contract
from mbs.errors import MbsError
from mbs.registry import Registry
from mbs.security import GATEWAY, Credentials, SecurityAdmin, gateway_grants, unit_grants
from mbs.settings import Settings, get_settings

COMPACT = {"cleanup.policy": "compact"}


@contextmanager
def acting_as(credentials: Credentials) -> Iterator[None]:
    """Run platform clients of this process as another principal (the admin, while
    provisioning); settings are read once per process, so they are re-read around it."""
    before = {k: os.environ.get(k) for k in credentials.env()}
    os.environ.update(credentials.env())
    get_settings.cache_clear()
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


def platform_topics(admin: SecurityAdmin, settings: Settings) -> None:
    admin.topics([settings.contracts_topic, settings.definitions_topic], 1, COMPACT)
    admin.topics([settings.journeys_topic], 6, COMPACT)


def unit_topics(admin: SecurityAdmin, unit: str, contracts: list[Contract]) -> None:
    admin.topics(
        [h.reply_topic(unit)] + [t for c in contracts for t in (c.request_topic, c.dlq_topic)]
    )


def provision_ecosystem(
    broker: LocalBroker, settings: Settings, say: Callable[[str], None]
) -> None:
    """Topics, one principal per unit and the gateway, ACLs, and the registered contracts."""
    folder = broker.run_dir / "credentials"
    if (folder / f"{GATEWAY}.env").is_file():
        say(f"secure broker already provisioned; credentials in {folder}")
        return
    admin = SecurityAdmin(broker.address, broker.admin_password())
    platform_topics(admin, settings)
    everything = ecosystem.all_contracts()
    by_unit: dict[str, list[Contract]] = {}
    for contract in everything:
        by_unit.setdefault(contract.unit, []).append(contract)
    for unit, offered in sorted(by_unit.items()):
        unit_topics(admin, unit, offered)
        admin.grant(unit, unit_grants(unit, offered))
        admin.principal(unit).save(folder)
    admin.grant(
        GATEWAY, gateway_grants(everything, settings.gateway_group, settings.contracts_topic)
    )
    admin.principal(GATEWAY).save(folder)
    register_as_admin(broker, settings, everything)
    say(f"provisioned {len(by_unit)} unit principals and the gateway; credentials in {folder}")


def register_as_admin(broker: LocalBroker, settings: Settings, found: list[Contract]) -> None:
    with acting_as(Credentials("admin", broker.admin_password())):
        registry = Registry(broker.address, client="provisioning", topic=settings.contracts_topic)
        asyncio.run(registry.register(found))


def add_partner(broker: LocalBroker, settings: Settings, offered: list[Contract]) -> Credentials:
    """Register a partner's contracts, create its topics, principal and ACLs."""
    units = {c.unit for c in offered}
    if len(units) != 1 or any(c.kind != "partner" for c in offered):
        raise MbsError("a partner file must hold contracts of one partner unit, kind 'partner'")
    [unit] = units
    register_as_admin(broker, settings, offered)
    admin = SecurityAdmin(broker.address, broker.admin_password())
    unit_topics(admin, unit, offered)
    admin.grant(unit, unit_grants(unit, offered))
    # the gateway may now send it requests and read its replies
    admin.grant(GATEWAY, gateway_grants(offered, settings.gateway_group, settings.contracts_topic))
    credentials = admin.principal(unit)
    credentials.save(broker.run_dir / "credentials")
    return credentials
