"""Provisioning a secure broker: topics, principals and ACLs for the ecosystem, and partner
onboarding (`mbs partners add`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from mbs import wire as h
from mbs.broker.local import LocalBroker
from mbs.broker.security import (
    GATEWAY,
    Credentials,
    SecurityAdmin,
    gateway_grants,
    platform_grants,
    unit_grants,
)
from mbs.contract.model import Contract
from mbs.contract.registry import Registry
from mbs.errors import MbsError
from mbs.kafka.connection import Connection
from mbs.kafka.quarantine import dlq_topic
from mbs.settings import Settings

COMPACT = {"cleanup.policy": "compact"}


def platform_topics(admin: SecurityAdmin, settings: Settings) -> None:
    """The compacted platform topics, certifications included: the gateway may read them but
    not create them, and a topic it may not see is "not authorized" on every poll."""
    single = [settings.contracts_topic, settings.definitions_topic, settings.certifications_topic]
    admin.topics([*single, *(dlq_topic(t) for t in single)], 1, COMPACT)
    admin.topics([settings.journeys_topic], 6, COMPACT)
    admin.topics([dlq_topic(settings.journeys_topic)], 1, COMPACT)


def unit_topics(admin: SecurityAdmin, unit: str, contracts: list[Contract]) -> None:
    admin.topics(
        [h.reply_topic(unit)] + [t for c in contracts for t in (c.request_topic, c.dlq_topic)]
    )


def provision_ecosystem(
    broker: LocalBroker,
    settings: Settings,
    everything: Sequence[Contract],
    say: Callable[[str], None],
) -> list[str]:
    """Topics, one principal per unit and the gateway, ACLs, and the registered contracts.
    Run again, it adds what is new (a unit added to the checkout since) and keeps every
    existing principal's password; returns the principals it created."""
    folder = broker.run_dir / "credentials"
    admin = SecurityAdmin(broker.address, broker.admin_password())
    platform_topics(admin, settings)
    by_unit: dict[str, list[Contract]] = {}
    for contract in everything:
        by_unit.setdefault(contract.unit, []).append(contract)
    created = []
    for unit, offered in sorted(by_unit.items()):
        unit_topics(admin, unit, offered)
        admin.grant(unit, unit_grants(unit, offered))
        if not (folder / f"{unit}.env").is_file():
            admin.principal(unit).save(folder)
            created.append(unit)
    grants = gateway_grants(everything, settings.gateway_group, settings.contracts_topic)
    admin.grant(GATEWAY, grants + platform_grants(settings))
    if not (folder / f"{GATEWAY}.env").is_file():
        admin.principal(GATEWAY).save(folder)
        created.append(GATEWAY)
    register_as_admin(broker, settings, list(everything))
    if created:
        say(f"provisioned principals {', '.join(created)}; credentials in {folder}")
    else:
        say(f"secure broker already provisioned for all {len(by_unit)} units; {folder}")
    return created


def register_as_admin(broker: LocalBroker, settings: Settings, found: list[Contract]) -> None:
    """Register contracts under the broker's admin principal (units may not write them)."""
    admin = Connection(broker.address).as_principal("admin", broker.admin_password())
    registry = Registry(admin, client="provisioning", topic=settings.contracts_topic)
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
