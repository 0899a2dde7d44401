"""The contract registry on the real broker: shared by processes, rebuilt from the topic."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import contracts
from contracts.pricing import QUOTE
from mbs import Contract, ContractRefused
from mbs.contract import Registry
from mbs.kafka import Connection

pytestmark = pytest.mark.kafka


@pytest.fixture
def topic(uid: str) -> str:
    return f"test.contracts.{uid}"


def quote_v(version: str, **changes: object) -> Contract:
    contract = QUOTE.as_contract().model_copy(update={"version": version, **changes})
    return Contract.model_validate(contract.model_dump())


def with_required_field(contract: Contract, name: str) -> dict[str, object]:
    request = copy.deepcopy(contract.request)
    request["properties"][name] = {"type": "string"}
    request["required"] = [*request.get("required", []), name]
    return request


async def test_second_process_and_restart_see_the_same_contracts(
    kafka_bootstrap: str, topic: str
) -> None:
    writer = Registry(Connection(kafka_bootstrap), topic=topic)
    written = await writer.register(contracts.all_contracts())
    assert len(written) == len(contracts.all_contracts())

    reader = Registry(Connection(kafka_bootstrap), topic=topic)  # a process that starts later
    view = await reader.sync()
    assert {c.key for c in view.current()} == {c.key for c in contracts.all_contracts()}
    providers = {c.unit for c in view.latest("shipping.book")}
    assert providers == {"shipping", "fastship"}

    again = await writer.register(contracts.all_contracts())
    assert again == [], "registering the same contracts twice writes nothing"


async def test_compatible_minor_version_is_added_to_history(
    kafka_bootstrap: str, topic: str
) -> None:
    registry = Registry(Connection(kafka_bootstrap), topic=topic)
    await registry.register([quote_v("1.0.0")])
    request = copy.deepcopy(QUOTE.request)
    request["properties"]["coupon"] = {"type": "string", "default": ""}
    await registry.register([quote_v("1.1.0", request=request)])
    view = await Registry(Connection(kafka_bootstrap), topic=topic).sync()
    assert [c.version for c in view.history("pricing.quote")] == ["1.0.0", "1.1.0"]
    assert [c.version for c in view.latest("pricing.quote")] == ["1.1.0"]


async def test_breaking_change_is_refused_and_registry_unchanged(
    kafka_bootstrap: str, topic: str
) -> None:
    registry = Registry(Connection(kafka_bootstrap), topic=topic)
    await registry.register([quote_v("1.0.0")])
    breaking = quote_v("1.1.0", request=with_required_field(QUOTE.as_contract(), "postcode"))
    with pytest.raises(ContractRefused) as refused:
        await registry.register([breaking])
    assert any(
        "postcode" in r.reason and r.path.startswith("$.request") for r in refused.value.reasons
    )
    view = await Registry(Connection(kafka_bootstrap), topic=topic).sync()
    assert [c.version for c in view.history("pricing.quote")] == ["1.0.0"]


async def test_new_major_needs_no_compatibility(kafka_bootstrap: str, topic: str) -> None:
    registry = Registry(Connection(kafka_bootstrap), topic=topic)
    await registry.register([quote_v("1.0.0")])
    v2 = quote_v("2.0.0", request=with_required_field(QUOTE.as_contract(), "postcode"))
    assert [c.key for c in await registry.register([v2])] == ["pricing.quote@2.0.0"]
    assert v2.request_topic == "pricing.quote.v2"


def mbs(topic: str, kafka: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MBS_KAFKA_BOOTSTRAP": kafka, "MBS_CONTRACTS_TOPIC": topic}
    return subprocess.run(
        [sys.executable, "-m", "mbs", "contracts", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_register_list_show_check(kafka_bootstrap: str, topic: str, tmp_path: Path) -> None:
    empty = mbs(topic, kafka_bootstrap, "list")
    assert empty.returncode == 1
    assert "registry is empty" in empty.stderr

    assert mbs(topic, kafka_bootstrap, "register", "--ecosystem").returncode == 0
    listed = mbs(topic, kafka_bootstrap, "list")
    assert listed.returncode == 0
    for contract in contracts.all_contracts():
        assert contract.request_topic in listed.stdout

    shown = mbs(topic, kafka_bootstrap, "show", "shipping.book")
    assert "fastship" in shown.stdout
    assert "shipping.book.v1.fastship" in shown.stdout or "FastShip" in shown.stdout

    minor = f"{QUOTE.major}.1.0"  # a minor of the registered major: the gate applies
    breaking = quote_v(minor, request=with_required_field(QUOTE.as_contract(), "postcode"))
    path = tmp_path / f"quote-{minor}.json"
    path.write_text(breaking.model_dump_json())
    checked = mbs(topic, kafka_bootstrap, "check", str(path))
    assert checked.returncode == 1
    assert "postcode" in checked.stderr
    refused = mbs(topic, kafka_bootstrap, "register", str(path))
    assert refused.returncode == 1
    assert "refused" in refused.stderr


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("{not json", "not JSON"),
        (json.dumps({"unit": "x"}), "capability: Field required"),
        ("BAD_SEMVER", "is not semver"),
        ("BAD_CAPABILITY", "must look like 'domain.action'"),
        ("BAD_SCHEMA", "not a valid JSON Schema"),
    ],
)
def test_cli_bad_documents_name_the_field(
    kafka_bootstrap: str, topic: str, tmp_path: Path, document: str, expected: str
) -> None:
    good = json.loads(QUOTE.as_contract().model_dump_json())
    broken = {
        "BAD_SEMVER": {**good, "version": "1.0"},
        "BAD_CAPABILITY": {**good, "capability": "quote"},
        "BAD_SCHEMA": {**good, "request": {"type": "object", "properties": {"a": {"type": 5}}}},
    }
    text = json.dumps(broken[document]) if document in broken else document
    path = tmp_path / "contract.json"
    path.write_text(text)
    result = mbs(topic, kafka_bootstrap, "register", str(path))
    assert result.returncode == 2
    assert expected in result.stderr
    assert mbs(topic, kafka_bootstrap, "list").returncode == 1, "registry must stay empty"
