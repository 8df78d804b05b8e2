"""The analytics pages in a real browser: the staff platform dashboard, a tenant's usage page
with data and the log explorer, each screenshotted into test-artifacts/. The charts must
really be drawn (every canvas has a size and Chart.js made a chart of it) with no console
error; the time zone defaults to the browser's."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.test import Client
from django.utils import timezone
from playwright.sync_api import expect

from analytics.rollups import roll_up_all
from tests.analytics.factories import call, store

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CANVASES = """() => [...document.querySelectorAll('canvas')].map(c => ({
  id: c.id, width: c.width, height: c.height,
  chart: !!(window.Chart && window.Chart.getChart(c)),
  points: window.Chart && window.Chart.getChart(c) ? window.Chart.getChart(c).data.labels.length : 0,
}))"""


@pytest.fixture
def traffic(acme, globex, app, globex_app, api):
    """Two hours of Acme traffic (some errors, some AI calls) and a little of Globex's."""
    now = timezone.now().replace(second=0, microsecond=0)
    rows = []
    for minute in range(120):
        at = now - timedelta(minutes=minute, seconds=-10)
        for i in range(5):
            status = 503 if (minute % 17 == 0 and i < 2) else 429 if i == 4 and minute % 5 == 0 else 200
            ai = {"model": "mock-small", "tokens_in": 40 + i, "tokens_out": 90, "cost": "0.0004"} if i == 3 else {}
            rows.append(
                call(
                    at,
                    latency_ms=8.0 + (minute % 13) * 4 + i * 6,
                    status=status,
                    api_id=api.pk,
                    tenant_id=acme.pk,
                    application_id=app.pk,
                    key_prefix="pk_live1",
                    error_code="upstream_unavailable" if status == 503 else "",
                    prompt_capture="Summarise the forecast." if ai else None,
                    response_capture="Mild and dry." if ai else None,
                    **ai,
                )
            )
        if minute % 10 == 0:
            rows.append(call(at, latency_ms=30.0, tenant_id=globex.pk, application_id=globex_app.pk))
    store(rows)
    roll_up_all(now=timezone.now() + timedelta(minutes=1))
    return rows


def is_error(message) -> bool:
    """A console error, other than the browser's own request for a favicon we do not serve."""
    return message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico")


def signed_in(new_page, live_server, user, **options):
    client = Client()
    client.force_login(user)
    page = new_page(**options)
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if is_error(message) else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page, errors


def assert_charts_drawn(page) -> None:
    canvases = page.evaluate(CANVASES)
    assert len(canvases) == 5
    for canvas in canvases:
        assert canvas["width"] > 0 and canvas["height"] > 0, canvas
        assert canvas["chart"], canvas
    assert next(c for c in canvases if c["id"] == "chart-requests")["points"] > 50


def test_a_tenant_owner_sees_their_usage_charts_in_their_own_time_zone(
    live_server, traffic, alice, new_page, screenshot
):
    page, errors = signed_in(new_page, live_server, alice, timezone_id="Australia/Adelaide")
    page.goto(f"{live_server.url}/usage/?range=day")
    page.wait_for_url("**tz=Australia%2FAdelaide**")  # the browser's zone, chosen by the page's script
    expect(page.get_by_role("heading", name="Usage of Acme")).to_be_visible()
    expect(page.locator("#window-text")).to_contain_text("(Australia/Adelaide), per minute")
    expect(page.locator("#total-requests")).to_have_text("600")
    expect(page.get_by_role("link", name="Acme App", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Weather", exact=True)).to_be_visible()  # top APIs, by name
    expect(page.get_by_text("Globex")).to_have_count(0)
    assert_charts_drawn(page)
    labels = page.evaluate("() => Chart.getChart(document.getElementById('chart-requests')).data.labels")
    local_now = timezone.now().astimezone(ZoneInfo("Australia/Adelaide"))
    assert any(label.startswith(f"{local_now:%Y-%m-%d %H}") for label in labels[-3:])
    screenshot(page, "analytics-tenant-usage")

    page.get_by_role("link", name="mock-small", exact=True).click()  # drill down to one model
    expect(page.locator("#drill")).to_contain_text("mock-small")
    expect(page.locator("#total-requests")).to_have_text("120")
    expect(page.locator("#tz")).to_have_value("Australia/Adelaide")
    assert_charts_drawn(page)
    assert errors == []


def test_staff_see_the_platform_dashboard_with_every_tenants_traffic(live_server, traffic, staff, new_page, screenshot):
    page, errors = signed_in(new_page, live_server, staff, timezone_id="UTC")
    page.goto(f"{live_server.url}/staff/analytics/?range=day&tz=UTC")
    expect(page.get_by_role("heading", name="Platform analytics")).to_be_visible()
    expect(page.locator("#total-requests")).to_have_text("612")
    expect(page.get_by_role("link", name="Globex App", exact=True)).to_be_visible()
    assert_charts_drawn(page)
    screenshot(page, "analytics-staff-dashboard")
    assert errors == []


def test_a_developer_filters_the_log_and_opens_an_ai_call(live_server, traffic, bob, new_page, screenshot):
    page, errors = signed_in(new_page, live_server, bob, timezone_id="Europe/Paris")
    page.goto(f"{live_server.url}/usage/calls/")
    page.wait_for_url("**tz=Europe%2FParis**")
    page.get_by_label("Status").fill("5xx")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.calls tbody tr")
    expect(rows.first).to_contain_text("503")
    assert all("503" in text for text in rows.all_inner_texts())
    screenshot(page, "analytics-log-explorer")

    page.get_by_label("Status").fill("")
    page.get_by_label("Model").fill("mock-small")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#next-page")).to_be_visible()  # 120 AI calls: more than a page
    page.locator("table.calls tbody tr").first.get_by_role("link").click()
    expect(page.locator("#prompt-capture")).to_have_text("Summarise the forecast.")
    expect(page.locator("#response-capture")).to_have_text("Mild and dry.")
    expect(page.locator("#call-time")).to_contain_text("(Europe/Paris)")
    screenshot(page, "analytics-call-detail")
    assert errors == []


def test_another_tenant_cannot_open_acmes_call_in_the_browser(live_server, traffic, charlie, new_page):
    page, _errors = signed_in(new_page, live_server, charlie)
    response = page.goto(f"{live_server.url}/usage/calls/{traffic[0].request_id}/")
    assert response is not None and response.status == 404
