"""The interactive API docs in a real browser: Swagger UI from local files, and a call made
from it with a personal access token gets a real answer."""

from urllib.parse import urlsplit

import pytest

from portal.services.tokens import create_access_token

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_swagger_ui_loads_locally_and_calls_the_api_with_a_token(live_server, new_page, screenshot, alice, acme, api):
    _token, secret = create_access_token(actor=alice, name="docs")
    page = new_page()
    hosts = set()
    page.on("request", lambda request: hosts.add(urlsplit(request.url).hostname))
    page.goto(f"{live_server.url}/api/docs/")
    page.get_by_text("Portico management API").first.wait_for()
    assert page.locator("#operations-apis-apis_list").count() == 1

    page.locator("button.authorize").first.click()
    page.locator(".modal-ux input[type=text]").first.fill(secret)
    page.locator(".modal-ux button.authorize").first.click()
    page.locator(".modal-ux button.close-modal").first.click()

    operation = page.locator("#operations-apis-apis_list")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()
    answer = operation.locator(".live-responses-table tbody td.response-col_status").first
    answer.wait_for()
    assert answer.inner_text().strip().startswith("200")
    assert "weather" in operation.locator(".live-responses-table .microlight").first.inner_text()
    screenshot(page, "api-docs")
    assert hosts <= {"localhost", "127.0.0.1"}, hosts
