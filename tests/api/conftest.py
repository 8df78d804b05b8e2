"""REST API test helpers: a client per person, authenticated by a real personal access token."""

import pytest
from rest_framework.test import APIClient

from portal.services.tokens import create_access_token

# The browser harness (Debian's chromium via Playwright), shared with tests/browser.
from tests.browser.conftest import browser, new_page, screenshot  # noqa: F401


def client_for(user) -> APIClient:
    _token, secret = create_access_token(actor=user, name="tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    return client


def assert_error(response, status: int, code: str) -> dict:
    """The response is the API's one error shape with this status and code; returns the error."""
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code and error["message"], error
    return error


@pytest.fixture(autouse=True)
def fresh_request_counters(redis_client):
    """Throttle and abuse-limit counters live in the session's Redis; each test starts at zero."""
    for pattern in ("*throttle_*", "*:rl:*"):
        for key in redis_client.scan_iter(match=pattern, count=1000):
            redis_client.delete(key)
