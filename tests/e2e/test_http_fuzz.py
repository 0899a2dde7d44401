"""The gateway's HTTP API fuzzed from its own OpenAPI document (schemathesis), against a live
gateway with every unit on the real broker, with every check: no 5xx other than the documented
ones (a unit failed: 502, a timeout: 504), no status, header or body the document does not
declare, and every schema-valid request accepted.

Every request carries the admin key, which passes every door, so the fuzzer reaches the
handlers; the doors themselves are walked by tests/unit/test_http_doors.py.

Two operations take documents whose validity no JSON Schema can state, so a schema-valid body
may also get 422 there (the OpenAPI says so; schemathesis is told through its per-operation
`expected-statuses`, the way its documentation gives for rules a schema cannot express):
- `PUT /journeys/{name}`: a journey is a graph checked against the catalog: capabilities it
  has, fields their producers reply with, `$steps`/`$input` references and `when` conditions
  that resolve, `after` naming steps that exist without a cycle, a name equal to its path;
- `POST /contracts`: its request and reply must themselves be valid JSON Schemas (the document
  says `type: object`; the 2020-12 meta-schema is no schema a fuzzer generates from). Every
  other field's format is in the document, so a 422 here must name that rule and no other."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig

from tests.e2e.ecosystem import ADMIN, UNITS, Ecosystem, order

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]
EXAMPLES = 25
RUNS: list[str] = []  # run ids the fuzzer made, for the routes that read a run
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]  # schemathesis's default
# The operations that may answer 422 to a schema-valid body, and the fields that 422 may name
# (None: any).
BEYOND_THE_SCHEMA: dict[str, frozenset[str] | None] = {
    "PUT /journeys/{name}": None,  # the rules are too many to list
    "POST /contracts": frozenset({"request", "reply"}),
}
CONFIG = SchemathesisConfig.from_dict(
    {
        "operations": [
            {
                "include-name": label,
                "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "422"]}},
            }
            for label in BEYOND_THE_SCHEMA
        ]
    }
)


@pytest.fixture(scope="module")
def gateway_url(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    ecosystem = Ecosystem(kafka_bootstrap, tmp_path_factory.mktemp("fuzz"))
    try:
        ecosystem.start_units(*UNITS)
        yield ecosystem.start_gateway()
    finally:
        ecosystem.stop()


def test_the_gateway_answers_as_its_openapi_says(gateway_url: str) -> None:
    api = schemathesis.openapi.from_url(f"{gateway_url}/openapi.json", config=CONFIG)
    operations = [result.ok() for result in api.get_all_operations()]
    operations.sort(key=lambda op: op.label != "POST /journeys/{name}")  # runs first
    assert len(operations) >= 13, [op.label for op in operations]
    seen: Counter[tuple[str, int]] = Counter()
    for operation in operations:
        _fuzz(operation, seen)
    print(sorted(seen.items()))
    assert sum(seen.values()) >= len(operations) * 5, seen
    taken = seen[("POST /contracts", 201)] + seen[("POST /contracts", 409)]
    assert taken, f"no fuzzed contract got past validation: the schema says too little {seen}"


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
        response = case.call_and_validate(headers=ADMIN, timeout=60)
        seen[(operation.label, response.status_code)] += 1
        allowed = BEYOND_THE_SCHEMA.get(operation.label)
        if response.status_code == 422 and allowed is not None:
            detail = response.json()["detail"]
            named = set(re.findall(r"^  ([\w.\[\]]+): ", detail, re.MULTILINE))
            assert named, detail
            assert named <= allowed, f"a rule the schema could state: {detail}"
        location = "".join(response.headers.get("location", []))  # header values are lists
        if "/runs/" in location:
            RUNS.append(location.rsplit("/", 1)[1])

    call()
