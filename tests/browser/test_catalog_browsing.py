"""Browsing the catalog in a real browser as an anonymous visitor: tag filters, lifecycle
badges, a deprecated version's docs, try-it without a key, and labelled controls."""

import pytest
from playwright.sync_api import expect

from portal.models import Tenant
from tests.portal.catalog_builders import make_api, make_plan

pytestmark = [pytest.mark.browser, pytest.mark.gateway, pytest.mark.django_db(transaction=True)]

ECHO = {
    "openapi": "3.0.3",
    "info": {"title": "Tides", "version": "1"},
    "paths": {"/echo": {"get": {"summary": "Echo", "responses": {"200": {"description": "ok"}}}}},
}

# Form controls in the page's own content (Swagger UI's widgets are its own business) that
# have no accessible name: no <label for>, no wrapping <label>, no aria-label.
UNLABELLED_CONTROLS = """() => [...document.querySelectorAll('main input, main select, main textarea')]
  .filter(el => el.type !== 'hidden' && !el.closest('#swagger-ui'))
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
  .map(el => el.outerHTML)"""


@pytest.fixture
def tides(upstream_a, staff):
    publisher = Tenant.objects.create(name="Sea Co", slug="sea")
    tides = make_api(
        publisher, staff, "tides", description="Tide tables.", tags=("ocean",), states=("deprecated", "published")
    )
    for version in tides.versions.all():
        version.openapi = ECHO
        version.save()
        version.targets.update(url=upstream_a)
    make_plan(tides, "Free", requests_per_minute=30)
    make_api(publisher, staff, "winds", description="Wind speeds.", tags=("air",))
    return tides


def test_a_visitor_filters_by_tag_reads_a_deprecated_versions_docs_and_is_refused_without_a_key(
    live_server, try_it_gateway, tides, new_page, screenshot, settings
):
    settings.PORTICO_GATEWAY_URL = try_it_gateway.url
    page = new_page()
    page.goto(f"{live_server.url}/")
    assert page.evaluate(UNLABELLED_CONTROLS) == []
    page.get_by_role("navigation", name="Filter by tag").get_by_role("link", name="ocean").click()
    expect(page.get_by_role("heading", name="Winds")).to_have_count(0)
    expect(page.get_by_role("link", name="ocean")).to_have_attribute("aria-current", "true")
    page.get_by_role("link", name="Tides").click()

    sunset = tides.versions.get(version="v1").sunset_at
    expect(page.locator("tr", has_text="v1").locator(".badge")).to_have_text("Deprecated")
    expect(page.locator("tr", has_text="v1")).to_contain_text(f"Sunset {sunset.day} {sunset:%B %Y}")
    expect(page.locator("tr", has_text="v2").locator(".badge")).to_have_text("Published")
    page.get_by_role("link", name="Reference for v1").click()

    expect(page.get_by_role("note")).to_contain_text("deprecated and stops working on")
    expect(page.get_by_text("Log in to see which of your keys work here")).to_be_visible()
    assert page.evaluate(UNLABELLED_CONTROLS) == []
    try_it_gateway.wait_for_config()
    page.locator(".opblock-summary", has_text="/echo").click()
    with page.expect_response(lambda r: r.url.startswith(try_it_gateway.url)) as call:
        page.locator("button.execute").click()
    assert call.value.status == 401 and "x-api-key" not in call.value.request.headers
    expect(page.locator(".live-responses-table tbody .response-col_description").first).to_contain_text(
        "missing_api_key"
    )
    screenshot(page, "11-docs-deprecated-no-key")
    page.get_by_role("link", name="v2 · published").click()
    expect(page.get_by_role("heading", name="Tides v2")).to_be_visible()
    expect(page.get_by_role("note")).to_have_count(0)
