"""Scaffolds a new unit: its contract, handler, wiring and tests, ready for `mbs run unit NAME`."""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from mbs.errors import ScaffoldRefused

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_CAPABILITY = re.compile(r"^([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)$")
_OWNER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")
# Short enough that every generated line fits ruff's 100 columns without re-wrapping.
MAX_NAME = 20
MAX_OWNER = 40
LINE_LENGTH = 100
RESERVED = frozenset({"partners"})


CONTRACT = Template('''\
"""The $name unit's contract: example fields and limit, to replace with its own."""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field

from mbs import DeclaredError, Pricing, Sla, declare


class ${model}Request(BaseModel):
    """Ask for `quantity` of `reference`."""

    model_config = ConfigDict(extra="forbid")

    reference: str = Field(min_length=1, max_length=64)
    quantity: int = Field(ge=1)


class ${model}Reply(BaseModel):
    """The accepted quantity and how far it stays below the unit's limit."""

    model_config = ConfigDict(extra="forbid")

    reference: str
    quantity: int
    headroom: int


$constant = declare(
    unit="$name",
    owner="$owner",
    capability="$capability",
    version="1.0.0",
    description="Accept a quantity of a reference, up to a limit (example: say what it does).",
    request=${model}Request,
    reply=${model}Reply,
    errors=[DeclaredError(code="over_limit", description="More than the unit accepts at once.")],
    sla=Sla(p99_ms=100, availability=0.999),
    pricing=Pricing(
        price_per_call=Decimal("0.0010"),
        cost_per_call=Decimal("0.0002"),
        cost_per_cpu_second=Decimal("0.0100"),
    ),
)
''')

PACKAGE = Template('''\
"""The $name unit, owned by $owner."""
''')

HANDLERS = Template('''\
"""The $name unit's rules: plain async functions, one model in, one model out."""

from __future__ import annotations

$import_models
from mbs import BusinessError

MAX_QUANTITY = 100


async def $action(request: ${model}Request) -> ${model}Reply:
    """Accept up to MAX_QUANTITY; more is the declared `over_limit` (example rule)."""
    if request.quantity > MAX_QUANTITY:
        raise BusinessError("over_limit", f"{request.quantity} is above {MAX_QUANTITY}")
    return ${model}Reply(
        reference=request.reference,
        quantity=request.quantity,
        headroom=MAX_QUANTITY - request.quantity,
    )
''')

APP = Template('''\
"""Wires the $name unit: its contract bound to its handler."""

from __future__ import annotations

from contracts.$name import $constant
from mbs import Binding, Unit
from services.$name import handlers


def build() -> Unit:
    binding = Binding($constant, handlers.$action)
    return Unit("$name", [binding])
''')

TEST = Template('''\
"""The $name unit: its rule, then a request over FastStream's in-memory Kafka."""

from __future__ import annotations

import pytest

$import_contract
from mbs import BusinessError
from mbs import wire as h
from mbs.testing import ask
from services.$name import handlers
from services.$name.app import build


async def test_${action}_accepts_up_to_the_limit() -> None:
    request = ${model}Request(reference="r-1", quantity=handlers.MAX_QUANTITY)
    reply = await handlers.$action(request)
    assert reply.headroom == 0


async def test_${action}_refuses_more_than_the_limit() -> None:
    request = ${model}Request(reference="r-1", quantity=handlers.MAX_QUANTITY + 1)
    with pytest.raises(BusinessError) as err:
        await handlers.$action(request)
    assert err.value.code == "over_limit"


async def call(request: ${model}Request) -> tuple[bytes, dict[str, str]]:
    """Send one request to the unit on an in-memory broker and wait for its reply."""
    return await ask(build(), $constant, request)


async def test_unit_replies_over_the_wire() -> None:
    body, headers = await call(${model}Request(reference="r-1", quantity=3))
    assert h.ERROR not in headers
    assert ${model}Reply.model_validate_json(body).headroom == handlers.MAX_QUANTITY - 3


async def test_unit_replies_with_the_declared_error_over_the_wire() -> None:
    _, headers = await call(${model}Request(reference="r-1", quantity=1_000))
    assert headers[h.ERROR] == "over_limit"
''')


@dataclass(frozen=True)
class UnitPlan:
    """What to generate: the unit's name, the capability it serves, the team that owns it."""

    name: str
    capability: str
    owner: str

    @property
    def action(self) -> str:
        """The capability's action: the handler's name (`charge` for `payments.charge`)."""
        return self.capability.split(".", 1)[1]

    @property
    def model(self) -> str:
        """The stem of the model class names (`ReserveStock` for `reserve_stock`)."""
        return "".join(part.capitalize() for part in self.action.split("_"))

    @property
    def constant(self) -> str:
        """The contract's module-level name (`CHARGE` for `payments.charge`)."""
        return self.action.upper()

    def files(self) -> dict[Path, str]:
        """Every generated file, by its path relative to the repository root."""
        values = {
            "name": self.name,
            "capability": self.capability,
            "owner": self.owner,
            "action": self.action,
            "model": self.model,
            "constant": self.constant,
            "import_models": _from_import(
                f"contracts.{self.name}", [f"{self.model}Reply", f"{self.model}Request"]
            ),
            "import_contract": _from_import(
                f"contracts.{self.name}",
                [self.constant, f"{self.model}Reply", f"{self.model}Request"],
            ),
        }
        unit = Path("services", self.name)
        templates = {
            Path("contracts", f"{self.name}.py"): CONTRACT,
            unit / "__init__.py": PACKAGE,
            unit / "handlers.py": HANDLERS,
            unit / "app.py": APP,
            Path("tests", "unit", f"test_{self.name}.py"): TEST,
        }
        return {path: template.substitute(values) for path, template in templates.items()}


def _from_import(module: str, names: list[str]) -> str:
    """One `from` import, wrapped the way ruff's isort wraps it when it is too long."""
    line = f"from {module} import {', '.join(names)}"
    if len(line) <= LINE_LENGTH:
        return line
    wrapped = "".join(f"    {name},\n" for name in names)
    return f"from {module} import (\n{wrapped})"


def plan_unit(name: str, capability: str | None = None, owner: str | None = None) -> UnitPlan:
    """Validate the names a user gave; defaults: capability `NAME.run`, owner `team-NAME`."""
    if not _NAME.match(name) or len(name) > MAX_NAME or keyword.iskeyword(name):
        raise ScaffoldRefused(
            f"unit name {name!r} is not usable: expected a Python identifier of lower-case "
            f"letters, digits and '_', starting with a letter, at most {MAX_NAME} characters "
            "(e.g. loyalty or gift_cards)"
        )
    if name in RESERVED:
        raise ScaffoldRefused(
            f"unit name {name!r} is reserved (services/{name}/ holds partner units); pick another"
        )
    capability = capability or f"{name}.run"
    parts = _CAPABILITY.match(capability)
    if (
        parts is None
        or any(len(part) > MAX_NAME for part in parts.groups())
        or keyword.iskeyword(parts[2])
    ):
        raise ScaffoldRefused(
            f"capability {capability!r} is not usable: expected DOMAIN.ACTION, each lower-case "
            f"letters, digits and '_', at most {MAX_NAME} characters, the action a Python "
            "identifier (e.g. loyalty.award_points)"
        )
    owner = owner or f"team-{name}"
    if not _OWNER.match(owner) or len(owner) > MAX_OWNER:
        raise ScaffoldRefused(
            f"owner {owner!r} is not usable: expected a team name of letters, digits, spaces, "
            f"'.', '_' or '-', at most {MAX_OWNER} characters (e.g. team-loyalty)"
        )
    return UnitPlan(name, capability, owner)


def check_root(root: Path) -> None:
    """Refuse a directory that is not a checkout of the ecosystem (no contracts/ or services/)."""
    missing = [
        pkg for pkg in ("contracts", "services") if not (root / pkg / "__init__.py").is_file()
    ]
    if missing:
        packages = " and ".join(f"{pkg}/" for pkg in missing)
        raise ScaffoldRefused(
            f"{root} has no {packages} package: run `mbs new unit` from the repository root "
            "or pass --root DIR"
        )


def _taken(root: Path, name: str) -> Path | None:
    """The first existing file or package that the new unit's name would clash with."""
    candidates = [
        Path("services", name),
        Path("services", f"{name}.py"),
        Path("services", "partners", name),
        Path("contracts", f"{name}.py"),
        Path("contracts", name),
        Path("contracts", "partners", f"{name}.json"),
        Path("tests", "unit", f"test_{name}.py"),
    ]
    return next((path for path in candidates if (root / path).exists()), None)


def scaffold_unit(root: Path, plan: UnitPlan) -> list[Path]:
    """Write the unit's files under `root`, none if any would clash; return their paths."""
    check_root(root)
    clash = _taken(root, plan.name)
    if clash is not None:
        raise ScaffoldRefused(
            f"a unit named {plan.name!r} exists already ({clash} is there); pick another name"
        )
    files = plan.files()
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    return list(files)
