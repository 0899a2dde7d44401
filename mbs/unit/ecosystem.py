"""The ecosystem a kit serves, handed in from above: which package holds the units, where
their contracts and ops ports are, and the gateway's app factory. The kit never imports those
packages by name; the top-level `ecosystem` module of a checkout names them, as
"module:attribute" references resolved when first needed (so `mbs --help` loads none)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from mbs.contract.model import Contract
from mbs.errors import MbsError
from mbs.unit.api import Unit
from mbs.unit.state import UnitStore

ECOSYSTEM_MODULE = "ecosystem"
PARTNERS = "partners"


@dataclass(frozen=True)
class Ecosystem:
    """The packages of one checkout, as the kit needs them."""

    units: str  # the package of unit packages: `<units>.<name>.app`, partners' under `.partners`
    contracts_from: str  # "module:function" returning every contract of the ecosystem
    ports_from: str = ""  # "module:mapping" of each unit's ops port
    gateway: str = ""  # "module:factory" building the gateway's ASGI app from settings

    def contracts(self) -> list[Contract]:
        """Every contract of the ecosystem, in-house first, then partners'."""
        return cast(list[Contract], _resolve(self.contracts_from)())

    @property
    def ports(self) -> Mapping[str, int]:
        """Each unit's ops port (none named: every unit picks a free one)."""
        return cast(Mapping[str, int], _resolve(self.ports_from)) if self.ports_from else {}

    def unit_names(self) -> list[str]:
        """Every unit package (partners' included)."""
        package = importlib.import_module(self.units)
        names = [m.name for m in pkgutil.iter_modules(package.__path__) if m.name != PARTNERS]
        try:
            partners = importlib.import_module(f"{self.units}.{PARTNERS}")
        except ModuleNotFoundError:
            return sorted(names)
        return sorted(names + [m.name for m in pkgutil.iter_modules(partners.__path__)])

    def load_unit(self, name: str, store: UnitStore | None = None) -> Unit:
        """Import `<units>.<name>.app` (or a partner's) and build its unit; a unit that keeps
        state is built with `store` (a temporary one when none is given)."""
        for module in (f"{self.units}.{name}.app", f"{self.units}.{PARTNERS}.{name}.app"):
            try:
                app = importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name is not None and module.startswith(exc.name):
                    continue
                raise
            keeps_state = "store" in inspect.signature(app.build).parameters
            unit: Unit = app.build(store=store) if keeps_state and store else app.build()
            return unit
        known = ", ".join(self.unit_names())
        raise MbsError(f"no unit named {name!r}; known units: {known}")

    def gateway_app(self, *args: Any, **kwargs: Any) -> Any:
        """The gateway's app, built by the factory this ecosystem names."""
        if not self.gateway:
            raise MbsError("this ecosystem names no gateway (Ecosystem.gateway='module:factory')")
        return _resolve(self.gateway)(*args, **kwargs)


def _resolve(reference: str) -> Any:
    """`package.module:name` -> that object."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


def load_ecosystem(module: str = ECOSYSTEM_MODULE) -> Ecosystem:
    """The `ECOSYSTEM` of the checkout's top-level `ecosystem` module."""
    try:
        found = importlib.import_module(module).ECOSYSTEM
    except (ModuleNotFoundError, AttributeError) as exc:
        raise MbsError(
            f"no ecosystem: a top-level module {module!r} with ECOSYSTEM = mbs.Ecosystem(...) "
            "names the units, contracts and gateway; run from the checkout's root"
        ) from exc
    if not isinstance(found, Ecosystem):
        raise MbsError(f"{module}.ECOSYSTEM is not an mbs.Ecosystem")
    return found
