"""The gateway's doors, in memory (no Kafka): every route against every kind of key, limits
checked before the body is read, malformed bodies refused with 4xx, and who sees what.

Requests are chosen so that an allowed key gets an answer without reaching Kafka (an unknown
journey, an invalid body), so the status says only what the door decided."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.bootstrap import Gateway
from gateway.definition import load_all
from gateway.models import Call
from mbs.settings import Settings

KEYS = {
    "none": None,
    "unknown": "not-a-key",
    "caller": "dev-caller-key",
    "partner": "dev-fastship-key",
    "admin": "dev-admin-key",
    "metrics": "dev-metrics-key",
}
MAY = {  # route -> roles that get past the door; every other key gets 401 or 403
    ("POST", "/journeys/no-such-journey"): {"caller", "admin"},
    ("PUT", "/journeys/x"): {"admin"},
    ("GET", "/journeys/order-to-delivery/runs/no-such-run"): {"caller", "admin"},
    ("POST", "/journeys/order-to-delivery/runs/no-such-run/compensate"): {"admin"},
    ("GET", "/runs/parked"): {"admin"},
    ("GET", "/journeys"): {"caller", "admin", "partner"},
    ("GET", "/units"): {"caller", "admin", "partner"},
    ("GET", "/units/pricing/scorecard"): {"caller", "admin"},  # a partner: only its own
    ("GET", "/units/fastship/scorecard"): {"caller", "admin", "partner"},
    ("GET", "/scorecard"): {"caller", "admin", "partner"},
    ("GET", "/ledger"): {"caller", "admin", "partner"},
    ("POST", "/contracts"): {"partner", "admin"},
    ("GET", "/metrics/"): {"metrics", "admin"},
    ("GET", "/healthz"): set(KEYS),
    ("GET", "/readyz"): set(KEYS),
}
OPEN = {("GET", "/healthz"), ("GET", "/readyz")}


def _unstarted(settings: Settings) -> TestClient:
    """The app with its gateway built but not started (no lifespan): nothing touches Kafka."""
    app = create_app(settings)
    gateway = Gateway(settings)
    for definition in load_all(gateway.catalog).values():
        gateway.definition_store.versions[(definition.name, definition.version)] = definition
    app.state.gateway = gateway
    return TestClient(app)


@pytest.fixture
def client() -> TestClient:
    return _unstarted(Settings(max_body_bytes=4096))


def _headers(key: str | None) -> dict[str, str]:
    return {} if key is None else {"X-API-Key": key}


@pytest.mark.parametrize(("method", "path"), sorted(MAY))
@pytest.mark.parametrize("who", sorted(KEYS))
def test_role_matrix(client: TestClient, method: str, path: str, who: str) -> None:
    body = b"{" if method in ("POST", "PUT") else None  # malformed: refused after the door
    answer = client.request(method, path, headers=_headers(KEYS[who]), content=body)
    if (method, path) in OPEN:
        assert answer.status_code in (200, 503), answer.text
    elif who in ("none", "unknown"):
        assert answer.status_code == 401, answer.text
        assert answer.headers["WWW-Authenticate"] == "ApiKey"
    elif who in MAY[(method, path)]:
        assert answer.status_code not in (401, 403), answer.text
        assert answer.status_code < 500, answer.text
    else:
        assert answer.status_code == 403, answer.text


def test_metrics_accept_a_bearer_token_as_prometheus_sends_it(client: TestClient) -> None:
    ok = client.get("/metrics/", headers={"Authorization": "Bearer dev-metrics-key"})
    assert ok.status_code == 200
    assert "python_info" in ok.text
    refused = client.get("/metrics/", headers={"Authorization": "Bearer dev-caller-key"})
    assert refused.status_code == 403


def test_an_unauthenticated_upload_is_refused_before_its_body_is_read(client: TestClient) -> None:
    read = []

    def body() -> Iterator[bytes]:
        for _ in range(1000):
            read.append(1)
            yield b"x" * 65536

    answer = client.post("/journeys/order-to-delivery", content=body())
    assert answer.status_code == 401
    assert len(read) <= 2, f"{len(read)} chunks of an unauthenticated body were read"


def test_a_body_over_the_limit_gets_413_from_its_length_alone(client: TestClient) -> None:
    headers = {"X-API-Key": "dev-caller-key", "Content-Length": "50000000"}
    answer = client.post("/journeys/order-to-delivery", content=b"{}", headers=headers)
    assert answer.status_code == 413
    assert "MBS_MAX_BODY_BYTES" in answer.json()["detail"]


def test_a_streamed_body_over_the_limit_gets_413(client: TestClient) -> None:
    def body() -> Iterator[bytes]:
        yield b'{"a": "' + b"x" * 8000 + b'"}'

    answer = client.post(
        "/journeys/order-to-delivery", content=body(), headers=_headers("dev-caller-key")
    )
    assert answer.status_code == 413


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"\xff\xfe", 400, "UTF-8"),
        (b"{not json", 400, "not JSON"),
        (b"[1, 2, 3]", 422, "an array"),
        (b'"text"', 422, "a string"),
    ],
)
def test_a_journey_input_that_is_not_an_object_is_refused(
    client: TestClient, body: bytes, status: int, says: str
) -> None:
    answer = client.post(
        "/journeys/order-to-delivery", content=body, headers=_headers("dev-caller-key")
    )
    assert answer.status_code == status
    assert says in answer.json()["detail"]


def test_an_input_too_large_for_the_journey_log_gets_413_before_anything_runs() -> None:
    client = _unstarted(Settings(max_body_bytes=2_000_000, max_record_bytes=100_000))
    big = '{"order_id": "' + "x" * 30_000 + '"}'
    answer = client.post(
        "/journeys/order-to-delivery", content=big, headers=_headers("dev-caller-key")
    )
    assert answer.status_code == 413
    assert "journey log" in answer.json()["detail"]


def test_a_yaml_alias_bomb_gets_400_at_once(client: TestClient) -> None:
    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{n}: &{n} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
    answer = client.put("/journeys/x", content=bomb, headers=_headers("dev-admin-key"))
    assert answer.status_code == 400
    assert "anchors and aliases" in answer.json()["detail"]


def _calls(client: TestClient) -> None:
    card = client.app.state.gateway.engine.scorecard  # type: ignore[attr-defined]
    for unit, capability, price in (
        ("fastship", "shipping.book", "3.10"),
        ("shipping", "shipping.book", "2.50"),
        ("paylater", "payments.charge", "0.90"),
    ):
        card.record(
            Call(
                unit=unit,
                capability=capability,
                message_id="m",
                outcome="ok",
                price=Decimal(price),
                latency_ms=5.0,
            )
        )


def test_a_partner_reads_only_its_own_numbers(client: TestClient) -> None:
    _calls(client)
    partner = _headers("dev-fastship-key")
    ledger = client.get("/ledger", headers=partner).json()
    assert {line["unit"] for line in ledger} == {"fastship"}
    card = client.get("/scorecard", headers=partner).json()
    assert [u["unit"] for u in card["units"]] == ["fastship"]
    assert [p["unit"] for c in card["capabilities"] for p in c["providers"]] == ["fastship"]
    assert client.get("/units/paylater/scorecard", headers=partner).status_code == 403
    admin = client.get("/ledger", headers=_headers("dev-admin-key")).json()
    assert {line["unit"] for line in admin} == {"fastship", "shipping", "paylater"}


def test_readiness_is_false_until_started(client: TestClient) -> None:
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["started"] is False


ORDER = {
    "order_id": "o-1",
    "sku": "espresso-beans-1kg",
    "quantity": 1,
    "customer_id": "c-1",
    "country": "DE",
    "postcode": "10115",
    "card_token": "tok-4242",
}


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"quantity": "lots"}, "quantity: 'lots' is not of type 'integer'"),
        ({"quantity": 0}, "quantity: 0 is less than the minimum of 1"),
        ({"country": 5}, "country: 5 is not of type 'string'"),
    ],
)
def test_an_input_field_a_contract_refuses_is_422_naming_it(
    client: TestClient, change: dict[str, object], says: str
) -> None:
    answer = client.post(
        "/journeys/order-to-delivery", json={**ORDER, **change}, headers=_headers("dev-caller-key")
    )
    assert answer.status_code == 422
    assert says in answer.json()["detail"]


def test_a_valid_input_passes_every_check_and_waits_for_kafka(client: TestClient) -> None:
    """The unstarted gateway has no broker: the only refusal left is 503 with Retry-After."""
    answer = client.post(
        "/journeys/order-to-delivery", json=ORDER, headers=_headers("dev-caller-key")
    )
    assert answer.status_code == 503
    assert answer.headers["Retry-After"]
