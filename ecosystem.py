"""The ecosystem of this checkout, handed to the kit: `mbs` finds the units, contracts, ops
ports and the gateway through this module and never imports those packages itself."""

from __future__ import annotations

from mbs import Ecosystem

ECOSYSTEM = Ecosystem(
    units="services",
    contracts_from="contracts:all_contracts",
    ports_from="services:PORTS",
    gateway="gateway.app:create_app",
)
