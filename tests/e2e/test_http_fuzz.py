"""The gateway's HTTP API fuzzed from its own OpenAPI document (schemathesis), against a live
gateway with every unit on the real broker: no 5xx other than the documented ones (a unit
failed: 502, a timeout: 504), no status, header or body the document does not declare.

Every request carries the admin key, which passes every door, so the fuzzer reaches the
handlers; the doors themselves are walked by tests/unit/test_http_doors.py. Left out: the
check that every schema-valid body is accepted, since a journey must also name capabilities
the catalog has and a contract must be compatible with its predecessor, which no schema
can say (those get 422 or 409 with the reason)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.ecosystem import ADMIN, UNITS, Ecosystem, order

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]
EXAMPLES = 25
RUNS: list[str] = []  # run ids the fuzzer made, for the routes that read a run


@pytest.fixture(scope="module")
def gateway_url(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    ecosystem = Ecosystem(kafka_bootstrap, tmp_path_factory.mktemp("fuzz"))
    try:
        ecosystem.start_units(*UNITS)
        yield ecosystem.start_gateway()
    finally:
        ecosystem.stop()


def test_the_gateway_answers_as_its_openapi_says(gateway_url: str) -> None:
    api = schemathesis.openapi.from_url(f"{gateway_url}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    operations.sort(key=lambda op: op.label != "POST /journeys/{name}")  # runs first
    assert len(operations) >= 13, [op.label for op in operations]
    seen: Counter[tuple[str, int]] = Counter()
    for operation in operations:
        _fuzz(operation, seen)
    print(sorted(seen.items()))
    assert sum(seen.values()) >= len(operations) * 5, seen


def _fuzz(operation: schemathesis.APIOperation, seen: Counter[tuple[str, int]]) -> None:
    """Half the cases are steered to what exists (a shipped journey, a run made earlier, an
    order that can complete) so the fuzzer reaches past the 404s into the engine."""

    @given(case=operation.as_strategy(), steer=st.booleans(), extra=st.booleans())
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    def call(case: schemathesis.Case, steer: bool, extra: bool) -> None:
        params = case.path_parameters or {}
        if steer and "name" in params:
            params["name"] = "order-to-delivery"
            if "run_id" in params and RUNS:
                params["run_id"] = RUNS[len(seen) % len(RUNS)]
            if operation.label == "POST /journeys/{name}" and isinstance(case.body, dict):
                case.body = {**(case.body if extra else {}), **order(len(seen))}
        response = case.call_and_validate(
            headers=ADMIN,
            timeout=60,
            excluded_checks=[schemathesis.checks.positive_data_acceptance],
        )
        seen[(operation.label, response.status_code)] += 1
        location = "".join(response.headers.get("location", []))  # header values are lists
        if "/runs/" in location:
            RUNS.append(location.rsplit("/", 1)[1])

    call()
