"""Property-based run of schemathesis against /api/v1/ on a live server: no 5xx, ever.

Bounded: a few generated cases per operation, so the whole run stays well under a minute.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from portal.services.tokens import create_access_token

pytestmark = pytest.mark.django_db(transaction=True)

EXAMPLES_PER_OPERATION = 6


def test_generated_requests_never_get_a_server_error(live_server, alice, acme, app, api):
    _token, secret = create_access_token(alice, "schemathesis")
    headers = {"Authorization": f"Token {secret}"}
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/?format=json")
    failures, exercised = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if not operation.path.startswith("/api/v1/"):
            continue
        exercised += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case):
            response = case.call(base_url=live_server.url, headers=headers)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}")

        check()
    assert exercised >= 10
    assert failures == []
