"""The demo's output and the secure provisioning it relies on (issue 17): partners' money
shown honestly, why a partner is not certified, and a provisioned broker that still
provisions a unit added since."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from contracts import all_contracts
from mbs.broker import LocalBroker, provision
from mbs.broker.security import Credentials, Grant
from mbs.cli import demo
from mbs.contract.model import Contract
from mbs.settings import Settings


def _run(unit: str, price: str, cost: str) -> dict[str, Any]:
    line = {"unit": unit, "calls": 1, "price": price, "cost": cost}
    return {
        "journey": "order-to-delivery",
        "input": {"order_id": "A-1"},
        "story": "s",
        "http_status": 200,
        "status": "completed",
        "output": {},
        "steps": [],
        "bill": {"total_price": price, "total_cost": cost, "by_unit": [line]},
    }


def test_the_bill_shows_no_margin_for_a_partner_and_says_why(
    capsys: pytest.CaptureFixture[str],
) -> None:
    refused = _run("fastship", "0", "3.90")  # a refused booking: billed nothing, its cost
    demo._print([refused, _run("pricing", "0.05", "0.01")], {"fastship": "partner"})
    shown = capsys.readouterr().out
    [fastship] = [line for line in shown.splitlines() if "fastship" in line]
    assert "-3.9" not in fastship
    assert "(we pay)" in fastship
    [pricing] = [line for line in shown.splitlines() if line.lstrip("│ ").startswith("pricing")]
    assert "0.0400 EUR" in pricing, "an internal unit's margin is price minus its cost"
    text = " ".join(shown.split())
    assert "A partner's price is what we pay it" in text
    assert "A refused call (a business error) is billed nothing" in text


def test_why_a_partner_is_not_certified_comes_from_the_kits_report() -> None:
    violations = [
        {"capability": "shipping.book", "case": f"edge {i}", "expected": "a reply", "got": "none"}
        for i in range(7)
    ]
    found = demo._why_not_certified(json.dumps({"violations": violations}), "")
    assert found[0] == "shipping.book edge 0: expected a reply, got none"
    assert found[-1] == "... and 2 more"
    crashed = demo._why_not_certified("", "Traceback\nerror: cannot reach Kafka at x\n")
    assert crashed[-1] == "error: cannot reach Kafka at x"


@dataclass
class Asked:
    """What provisioning asked of the broker."""

    topics: list[str] = field(default_factory=list)
    grants: dict[str, list[Grant]] = field(default_factory=dict)
    principals: list[str] = field(default_factory=list)


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch) -> Asked:
    asked = Asked()

    class FakeAdmin:
        def __init__(self, bootstrap: str, password: str) -> None:
            return None

        def topics(self, names: list[str], *_: Any) -> None:
            asked.topics.extend(names)

        def grant(self, principal: str, grants: list[Grant]) -> None:
            asked.grants.setdefault(principal, []).extend(grants)

        def principal(self, name: str) -> Credentials:
            asked.principals.append(name)
            return Credentials(name, f"secret-{name}")

    monkeypatch.setattr(provision, "SecurityAdmin", FakeAdmin)
    monkeypatch.setattr(provision, "register_as_admin", lambda *args: None)
    return asked


def test_a_provisioned_broker_provisions_a_unit_added_since(tmp_path: Path, admin: Asked) -> None:
    settings = Settings(home=tmp_path)
    broker = LocalBroker(settings, secure=True)
    broker.run_dir.mkdir(parents=True)
    broker.admin_file.write_text("admin-secret")
    before = [c for c in all_contracts() if c.unit != "fastship"]
    first = provision.provision_ecosystem(broker, settings, before, lambda _: None)
    assert "gateway" in first
    assert "fastship" not in first
    assert "mbs.certifications" in admin.topics, "the gateway may read it, not create it"
    gateway_env = (broker.run_dir / "credentials" / "gateway.env").read_text()

    said: list[str] = []
    added = provision.provision_ecosystem(broker, settings, all_contracts(), said.append)
    assert added == ["fastship"], "only the new unit gets a principal"
    assert (broker.run_dir / "credentials" / "fastship.env").is_file()
    assert (broker.run_dir / "credentials" / "gateway.env").read_text() == gateway_env
    fastship: list[Contract] = [c for c in all_contracts() if c.unit == "fastship"]
    gateway_topics = {name for _, name, _, _ in admin.grants["gateway"]}
    assert {c.request_topic for c in fastship} <= gateway_topics, "the gateway may call it"
    assert "fastship" in said[-1]
