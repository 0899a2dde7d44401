"""What a partner reads (contracts/published: PARTNERS.md, AsyncAPI, JSON Schemas, the contract
schema) says what the code does (issue 15): every header, error code, dead-letter reason and
limit; a contract built from the published files is the registered one; the CLI tells a
partner its consumer-group prefix and the operator which principal certifies."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from aiokafka.errors import TopicAuthorizationFailedError
from jsonschema import Draft202012Validator
from typer.testing import CliRunner

import contracts
from gateway.calls import TECHNICAL
from mbs import Contract
from mbs import wire as h
from mbs.broker import provision
from mbs.broker.security import GROUP, Credentials, unit_grants
from mbs.cli import commands
from mbs.cli.contracts import certify
from mbs.contract import partner_wire as pw
from mbs.errors import BrokerError
from mbs.kafka import Connection
from mbs.unit import server

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT / "contracts" / "published"
GUIDE = (PUBLISHED / "PARTNERS.md").read_text()
CONTRACTS = contracts.all_contracts()
UNITS = sorted({c.unit for c in CONTRACTS})
HEADERS = sorted(
    value
    for name, value in vars(h).items()
    if name.isupper()
    and isinstance(value, str)
    and (value.startswith("mbs-") or value == h.TRACEPARENT)
)


def asyncapi(unit: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((PUBLISHED / "asyncapi" / f"{unit}.yaml").read_text())
    return loaded


@pytest.mark.parametrize("header", HEADERS)
def test_the_guide_names_every_header(header: str) -> None:
    assert f"`{header}`" in GUIDE


def test_the_guide_lists_the_closed_list_of_platform_errors() -> None:
    assert {code for code, _, _ in pw.PLATFORM_ERROR_TABLE} == set(h.PLATFORM_ERRORS)
    assert {code for code, retry, _ in pw.PLATFORM_ERROR_TABLE if retry} == set(TECHNICAL)
    for code, retryable, _ in pw.PLATFORM_ERROR_TABLE:
        assert f"| `{code}` | {'yes' if retryable else 'no'}" in GUIDE


def _reasons_in(path: Path) -> set[str]:
    """The reasons the unit kit dead-letters with: ContractViolation(...) and _dead_letter(...)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
        args = [a.value for a in node.args if isinstance(a, ast.Constant)]
        if name in ("ContractViolation", "_dead_letter") and args and isinstance(args[0], str):
            found.add(args[0])
    return found


def test_the_guide_lists_every_dead_letter_reason_and_the_size_limit() -> None:
    reasons = {reason for reason, _ in pw.DEAD_LETTER_REASONS}
    assert reasons == _reasons_in(ROOT / "mbs" / "unit" / "server.py")
    for reason in reasons:
        assert f"| `{reason}` |" in GUIDE
    assert pw.MAX_REQUEST_BYTES == server.MAX_MESSAGE_BYTES
    assert f"{pw.MAX_REQUEST_BYTES:,} bytes" in GUIDE


def test_the_documented_pass_through_headers_are_the_kits() -> None:
    assert vars(server)["_PASSTHROUGH"] == pw.PASSTHROUGH


def test_the_group_prefix_is_the_one_the_acls_grant() -> None:
    groups = [name for kind, name, _, _ in unit_grants("fastship", []) if kind == GROUP]
    assert groups == [pw.UNIT_GROUP_PREFIX.format(unit="fastship")] == ["mbs.unit.fastship."]
    assert "`mbs.unit.<unit>.`" in GUIDE


@pytest.mark.parametrize("unit", UNITS)
def test_the_asyncapi_documents_headers_servers_and_errors(unit: str) -> None:
    document = asyncapi(unit)
    schemas = document["components"]["schemas"]
    reply = schemas["ReplyHeaders"]["properties"]
    assert {h.REQUEST_ID, *pw.PASSTHROUGH} <= reply.keys()
    assert {name for name, _, _ in pw.REQUEST_HEADERS} <= schemas["RequestHeaders"][
        "properties"
    ].keys()
    secure = document["servers"]["kafka-secure"]
    assert secure["security"] == [{"$ref": "#/components/securitySchemes/scram"}]
    assert document["components"]["securitySchemes"]["scram"]["type"] == "scramSha256"
    assert document["servers"]["kafka"]["protocol"] == "kafka"
    assert [e["code"] for e in document["info"]["x-platform-errors"]] == list(h.PLATFORM_ERRORS)
    for message in document["components"]["messages"].values():
        assert message["traits"][0]["$ref"].startswith("#/components/messageTraits/")


def _schema(unit: str, name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((PUBLISHED / "schemas" / unit / name).read_text())
    return loaded


def _built(unit: str) -> list[Contract]:
    """What a partner builds from the published files (as tests/partner_node/contract.js)."""
    document, found = asyncapi(unit), []
    for op in document["operations"].values():
        if op["action"] != "receive":
            continue
        ident = f"{op['x-capability']}.v{op['x-version'].split('.')[0]}"
        request, reply = (_schema(unit, f"{ident}.{part}.json") for part in ("request", "reply"))
        sla = {k: v for k, v in op["x-sla"].items() if k != "measured"}
        found.append(
            Contract(
                unit=unit,
                owner=op["x-owner"],
                kind=document["info"]["x-kind"],
                capability=op["x-capability"],
                version=op["x-version"],
                description=op["summary"],
                request=request,
                reply=reply,
                errors=op["x-errors"],
                side_effects=op["x-side-effects"],
                compensation=op["x-compensation"],
                supports_dry_run=op["x-supports-dry-run"],
                compatibility=op["x-compatibility"],
                sla=sla,
                pricing=op["x-pricing"],
            )
        )
    return found


@pytest.mark.parametrize("unit", UNITS)
def test_a_contract_built_from_the_published_files_is_the_registered_one(unit: str) -> None:
    """Item 14: the published schemas carry no `$schema`, so the contract a partner builds
    from them is equal to the registered one (not "registered with other content")."""
    latest = {c.capability: c for c in CONTRACTS if c.unit == unit}
    built = {c.capability: c for c in _built(unit)}
    for capability, contract in built.items():
        if contract.description.startswith("Serve "):
            continue  # a contract without a description: nothing to compare it with
        assert contract.model_dump() == latest[capability].model_dump()
    for path in (PUBLISHED / "schemas" / unit).glob("*.json"):
        assert "$schema" not in json.loads(path.read_text())


def test_the_contract_schema_takes_one_contract_or_a_list() -> None:
    schema = json.loads((PUBLISHED / "contract.schema.json").read_text())
    validator = Draft202012Validator(schema)
    for path in (ROOT / "contracts" / "partners").glob("*.json"):
        document = json.loads(path.read_text())
        assert validator.is_valid(document), path
        assert validator.is_valid(document[0]), path
    assert not validator.is_valid({"unit": "x"})
    assert not validator.is_valid([{"unit": "x"}])


def test_recording_without_the_right_is_one_line_naming_the_principal() -> None:
    async def refused(*args: object, **kwargs: object) -> list[str]:
        raise TopicAuthorizationFailedError()

    kit: Any = SimpleNamespace(record_certification=refused)
    connection = Connection("127.0.0.1:1").as_principal("fastship", "secret")
    with pytest.raises(BrokerError) as caught:
        certify(kit, object(), [], connection, "mbs.certifications")
    message = str(caught.value)
    assert "'fastship' may not write mbs.certifications" in message
    assert "MBS_KAFKA_USERNAME=admin" in message
    assert "--no-record" in message
    assert "\n" not in message


def test_partners_add_prints_the_consumer_group_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = SimpleNamespace(status=lambda: SimpleNamespace(running=True))
    monkeypatch.setattr(commands, "local_broker", lambda port, secure: broker)
    monkeypatch.setattr(provision, "add_partner", lambda *a: Credentials("fastship", "pw"))
    monkeypatch.chdir(ROOT)
    done = CliRunner().invoke(commands.app, ["partners", "add", "fastship"])
    assert done.exit_code == 0, done.output
    assert "mbs.unit.fastship." in done.output
    assert "MBS_KAFKA_USERNAME=fastship" in done.output
