"""Property-based requests from the schema against /api/v1/ on a live server: no 5xx, ever,
and every refusal in the API's one JSON error shape.

Bounded: a few generated cases per operation and a wall-clock budget, so it stays well under a minute.
"""

import time

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from portal.services import keys, subscriptions
from portal.services.tokens import create_access_token

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES_PER_OPERATION = 8
BUDGET_SECONDS = 45


@pytest.fixture
def acme_world(alice, bob, acme, app, api, free_plan, gold_plan, globex_app):
    """Something to find behind most ids: a key, an approved subscription, another tenant's app."""
    keys.create_api_key(app, bob, name="prod")
    subscriptions.request_subscription(app, api, free_plan, bob)


@pytest.mark.parametrize("who", ["alice", "staff"])
def test_generated_requests_never_get_a_server_error(request, who, live_server, acme_world):
    _token, secret = create_access_token(request.getfixturevalue(who), "schemathesis")
    headers = {"Authorization": f"Token {secret}"}
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/?format=json")
    failures, exercised, deadline = [], 0, time.monotonic() + BUDGET_SECONDS
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.startswith("/api/v1/") or time.monotonic() > deadline:
            continue
        exercised += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case):
            response = case.call(base_url=live_server.url, headers=headers, timeout=10)
            where = f"{case.method} {case.formatted_path} {case.query or ''} -> {response.status_code}"
            if response.status_code >= 500:
                failures.append(where)
            elif response.status_code >= 400:
                error = response.json().get("error", {})
                if not (error.get("code") and error.get("message")):
                    failures.append(f"{where} without the error shape: {response.text[:200]}")

        check()
    assert exercised >= 20
    assert failures == []
