"""`mbs scorecard`, `make-or-buy` and `ledger` from a gateway's answers (issue 17): whole cells
when piped, `-o json`, every provider shown, and no partner margin passed off as ours."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from mbs.cli import app, reports

LONG_UNIT = "a-partner-with-a-name-much-longer-than-any-column-would-be-given-" + "x" * 40


def _offer(capability: str, price: str) -> dict[str, Any]:
    return {"capability": capability, "price_per_call": price, "p99_ms": 200, "version": "1.0.0"}


def _row(unit: str, capability: str, calls: int, **more: Any) -> dict[str, Any]:
    row = {
        "unit": unit,
        "capability": capability,
        "calls": calls,
        "error_rate": 0.0,
        "p50_ms": 10.0,
        "p95_ms": 20.0,
        "p99_ms": 30.0,
        "sla_p99_ms": 200,
        "latency_attainment": 1.0,
        "availability": 1.0,
        "sla_availability": 0.99,
        "sla_met": True,
        "price_per_call": "4.5000",
        "revenue": "45.0000",
        "cost": "20.0000",
        "margin": "25.0000",
        "shadow_agreement": None,
        "shadow_comparisons": 0,
    }
    return row | more


def gateway(measured: list[dict[str, Any]]) -> dict[str, Any]:
    """What /units, /scorecard and /ledger answer: shipping in-house, fastship and a partner
    with a long name offering shipping.book; only `measured` rows were called."""
    units = [
        {"unit": "fastship", "kind": "partner", "capabilities": [_offer("shipping.book", "3.9")]},
        {"unit": LONG_UNIT, "kind": "partner", "capabilities": [_offer("shipping.book", "9.9")]},
        {"unit": "shipping", "kind": "internal", "capabilities": [_offer("shipping.book", "4.5")]},
    ]
    scorecard = {
        "units": [{"unit": r["unit"], "calls": r["calls"], "capabilities": [r]} for r in measured],
        "capabilities": [{"capability": "shipping.book", "providers": measured}],
    }
    ledger = [
        {"period": "2026-01-01T10:00Z", "unit": "fastship", "kind": "partner", "calls": 3,
         "charged": "11.7000"},
    ]  # fmt: skip
    return {"/units": units, "/scorecard": scorecard, "/ledger": ledger}


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    found: dict[str, Any] = {}
    monkeypatch.setattr(
        reports, "fetch", lambda path, _gateway: json.loads(json.dumps(found[path]))
    )
    return found


def run(*args: str) -> str:
    shown = CliRunner().invoke(app, list(args))
    assert shown.exit_code == 0, shown.output
    return shown.output


def test_piped_scorecard_never_cuts_a_cell(answers: dict[str, Any]) -> None:
    answers |= gateway([_row("shipping", "shipping.book", 10), _row(LONG_UNIT, "shipping.book", 2)])
    shown = run("scorecard")
    assert LONG_UNIT in shown
    assert "…" not in shown
    assert max(len(line) for line in shown.splitlines()) > 160


def test_scorecard_shows_no_margin_for_a_partner_and_says_why(answers: dict[str, Any]) -> None:
    fastship = _row("fastship", "shipping.book", 5, revenue="19.5", cost="23.4", margin="-3.9")
    answers |= gateway([_row("shipping", "shipping.book", 10), fastship])
    shown = run("scorecard")
    [line] = [line for line in shown.splitlines() if "fastship" in line]
    assert "-3.9" not in line
    assert "19.5 (we pay)" in line
    assert "A partner's revenue is what we pay it" in " ".join(shown.split())


def test_scorecard_and_ledger_as_json(answers: dict[str, Any]) -> None:
    answers |= gateway([_row("shipping", "shipping.book", 10)])
    card = json.loads(run("scorecard", "-o", "json"))
    assert card["units"][0]["unit"] == "shipping"
    assert card["units"][0]["kind"] == "internal"
    ledger = json.loads(run("ledger", "--output", "json"))
    assert ledger[0]["settlement"] == "we pay"


def test_make_or_buy_shows_a_provider_with_no_calls_yet(answers: dict[str, Any]) -> None:
    answers |= gateway([_row("shipping", "shipping.book", 10)])
    shown = run("make-or-buy", "shipping.book")
    assert "fastship" in shown
    assert "nothing to compare" not in shown
    assert "not enough evidence yet (0 calls or shadow comparisons of fastship" in shown
    data = json.loads(run("make-or-buy", "shipping.book", "-o", "json"))
    by_unit = {p["unit"]: p for p in data["providers"]}
    assert by_unit["fastship"]["calls"] == 0
    assert by_unit["fastship"]["kind"] == "partner"
    assert by_unit["shipping"]["calls"] == 10


def test_make_or_buy_with_no_in_house_traffic_says_what_is_missing(
    answers: dict[str, Any],
) -> None:
    answers |= gateway([_row("fastship", "shipping.book", 30, price_per_call="3.9")])
    shown = run("make-or-buy", "shipping.book")
    assert "no calls of shipping (in-house)" in shown


def test_make_or_buy_verdict_buy_once_the_partner_proves_itself(answers: dict[str, Any]) -> None:
    measured = [
        _row("shipping", "shipping.book", 30),
        _row("fastship", "shipping.book", 30, price_per_call="3.9"),
    ]
    answers |= gateway(measured)
    assert "verdict: BUY from fastship" in run("make-or-buy", "shipping.book")


def test_make_or_buy_of_an_unknown_capability_fails(answers: dict[str, Any]) -> None:
    answers |= gateway([])
    shown = CliRunner().invoke(app, ["make-or-buy", "nothing.here"])
    assert shown.exit_code != 0
    assert "no provider offers 'nothing.here'" in str(shown.exception)
