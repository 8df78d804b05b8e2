"""Property-based requests from the schema against /api/v1/ on a live server.

Every answer must be documented: no 5xx, only documented status codes and content types,
bodies that match the documented schemas (the error shape included). Business refusals of
schema-valid input (an expiry in the past, say) are expected, so that check is left out.

Bounded: a few generated cases per operation and a wall-clock budget, well under a minute.
"""

import time

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup

from portal.services import keys, subscriptions
from portal.services.tokens import create_access_token

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES_PER_OPERATION = 8
BUDGET_SECONDS = 40
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def acme_world(alice, bob, acme, app, api, free_plan, gold_plan, globex_app):
    """Something to find behind most ids: a key, an approved subscription, another tenant's app."""
    keys.create_api_key(app, actor=bob, name="prod")
    subscriptions.request_subscription(app, api, free_plan, actor=bob)


def exercise(operation, base_url: str, headers: dict, failures: list) -> None:
    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def check(case):
        response = case.call(base_url=base_url, headers=headers, timeout=10)
        try:
            case.validate_response(response, checks=CHECKS)
        except (FailureGroup, AssertionError) as failure:
            failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {failure}"[:800])

    check()


@pytest.mark.parametrize("who", ["alice", "staff"])
def test_generated_requests_get_only_documented_answers(request, who, live_server, acme_world):
    person = request.getfixturevalue(who)
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/?format=json")
    failures, exercised, deadline = [], 0, time.monotonic() + BUDGET_SECONDS
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.startswith("/api/v1/") or time.monotonic() > deadline:
            continue
        exercised += 1
        # A fresh token per operation: the token endpoints may well revoke the one in use.
        headers = {"Authorization": f"Token {create_access_token(actor=person, name='schemathesis')[1]}"}
        exercise(operation, live_server.url, headers, failures)
    assert exercised >= 20
    assert not failures, "\n\n".join(failures)
