"""The whole developer journey in a real browser, against the real portal and gateway:

sign up -> find an API in the catalog -> read its docs -> create an application -> subscribe
-> an administrator approves in Django admin -> create a key and see its secret exactly once
-> call the API from the docs' try-it console with that key, through the gateway.

Screenshots of each main page land in test-artifacts/screenshots/.
"""

import re

import pytest
from playwright.sync_api import expect

from portal.models import Api, ApiKey, ApiVersion, Plan, Subscription, SubscriptionState, Tag, Tenant, UpstreamTarget
from portal.services import lifecycle
from tests.conftest import PASSWORD, make_user

pytestmark = [pytest.mark.browser, pytest.mark.gateway, pytest.mark.django_db(transaction=True)]

SECRET = re.compile(r"pt_[a-z0-9]{8}\.[A-Za-z0-9_-]{20,}")
ECHO_DOCUMENT = {
    "openapi": "3.0.3",
    "info": {"title": "Weather", "version": "1.0"},
    "paths": {
        "/echo": {
            "get": {
                "operationId": "echo",
                "summary": "Echo what the service received",
                "responses": {"200": {"description": "The request as the service saw it"}},
            }
        }
    },
}


@pytest.fixture
def weather_catalog(upstream_a, staff):
    """Weather (published, plans Free and Partner) next to Payments, which search must hide."""
    publisher = Tenant.objects.create(name="Publisher", slug="publisher")
    weather = Api.objects.create(
        slug="weather", name="Weather", owner=publisher, description="Hourly forecasts for any place on Earth."
    )
    weather.tags.add(Tag.objects.create(name="forecast"), Tag.objects.create(name="geo"))
    version = ApiVersion.objects.create(api=weather, version="v1", base_path="/weather/v1", openapi=ECHO_DOCUMENT)
    UpstreamTarget.objects.create(version=version, url=upstream_a)
    lifecycle.publish_version(version, actor=staff)
    Plan.objects.create(api=weather, name="Free", requests_per_minute=60)
    Plan.objects.create(
        api=weather, name="Partner", requests_per_second=50, daily_quota=100_000, requires_approval=True
    )
    payments = Api.objects.create(slug="payments", name="Payments", owner=publisher, description="Card charges.")
    other = ApiVersion.objects.create(api=payments, version="v1", base_path="/payments/v1")
    UpstreamTarget.objects.create(version=other, url=upstream_a)
    lifecycle.publish_version(other, actor=staff)
    return weather


def submit_form_with(page, field_selector: str):
    """Click the submit button of the form holding ``field_selector``."""
    form = page.locator("form", has=page.locator(field_selector)).first
    form.locator("button[type=submit], input[type=submit], button:not([type])").last.click()


def test_developer_signs_up_subscribes_gets_approved_and_calls_the_api_from_the_docs(
    live_server, try_it_gateway, weather_catalog, new_page, screenshot, settings
):
    settings.PORTICO_GATEWAY_URL = try_it_gateway.url
    admin_user = make_user("root", staff=True)
    dev = new_page()

    # Sign up: a new account with its own team, logged in at once.
    dev.goto(f"{live_server.url}/accounts/signup/")
    dev.fill("input[name=username]", "dana")
    dev.fill("input[name=email]", "dana@example.com")
    dev.fill("input[name=password1]", PASSWORD)
    dev.fill("input[name=password2]", PASSWORD)
    screenshot(dev, "01-signup")
    submit_form_with(dev, "input[name=password2]")
    expect(dev.get_by_text("dana", exact=True).first).to_be_visible()

    # Find the API: search narrows the catalog, a tag filter keeps it.
    dev.goto(f"{live_server.url}/")
    expect(dev.get_by_role("heading", name="Payments")).to_be_visible()
    dev.get_by_role("searchbox", name="Search APIs").fill("forecasts")
    dev.keyboard.press("Enter")
    expect(dev.get_by_role("heading", name="Payments")).to_have_count(0)
    expect(dev.get_by_role("heading", name="Weather")).to_be_visible()
    expect(dev.get_by_text("1 API matching “forecasts”")).to_be_visible()
    screenshot(dev, "02-catalog-search")
    dev.set_viewport_size({"width": 390, "height": 844})  # a phone: the layout must still read
    screenshot(dev, "02b-catalog-phone")
    dev.set_viewport_size({"width": 1280, "height": 900})
    dev.get_by_role("link", name="Weather").click()

    # The API page: versions with their badge, plans with their limits.
    expect(dev.get_by_role("heading", name="Weather", level=1)).to_be_visible()
    expect(dev.locator(".badge.published")).to_have_text("Published")
    expect(dev.get_by_text("50 requests / second")).to_be_visible()
    expect(dev.get_by_text("Needs an administrator's approval")).to_be_visible()
    screenshot(dev, "03-api-page")

    # Read the docs: Swagger UI renders the version's operations, server = the gateway.
    dev.get_by_role("link", name="Read the v1 reference").click()
    expect(dev.locator(".opblock-summary-path", has_text="/echo")).to_be_visible()
    expect(dev.locator("div.servers")).to_contain_text(f"{try_it_gateway.url}/weather/v1")
    screenshot(dev, "04-docs")

    # Create an application.
    dev.goto(f"{live_server.url}/apps/")
    dev.fill("input[name=name]", "Forecast App")
    submit_form_with(dev, "input[name=name]")
    expect(dev.get_by_text("Forecast App").first).to_be_visible()
    screenshot(dev, "05-application")

    # Subscribe it on the plan that needs approval: it waits, shown as pending.
    dev.goto(f"{live_server.url}/apis/weather/")
    dev.get_by_role("link", name="Subscribe on Partner").click()
    partner = Plan.objects.get(api=weather_catalog, name="Partner")
    dev.locator("select[name=application]").select_option(label="Forecast App")
    dev.locator(f"input[name=plan][value='{partner.pk}']").check()
    screenshot(dev, "06-subscribe")
    submit_form_with(dev, "select[name=application]")
    expect(dev.get_by_text("Pending approval").first).to_be_visible()
    subscription = Subscription.objects.get(application__name="Forecast App")
    assert subscription.state == SubscriptionState.PENDING

    # An administrator approves it in Django admin, in a browser of their own.
    admin = new_page()
    admin.goto(f"{live_server.url}/admin/login/")
    admin.fill("input[name=username]", admin_user.username)
    admin.fill("input[name=password]", PASSWORD)
    admin.locator("input[type=submit]").click()
    admin.goto(f"{live_server.url}/admin/portal/subscription/?state__exact=pending")
    admin.locator(f"input[name=_selected_action][value='{subscription.pk}']").check()
    admin.locator("select[name=action]").select_option("approve")
    admin.locator("button[name=index]").click()
    admin.locator("[name=reason]").fill("Known forecasting partner")
    screenshot(admin, "07-admin-approve")
    admin.locator("input[name=apply]").click()
    expect(admin.get_by_text("Approve subscriptions: 1 done.")).to_be_visible()
    subscription.refresh_from_db()
    assert subscription.state == SubscriptionState.APPROVED

    # The developer sees the approval, creates a key and sees its secret exactly once.
    dev.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    dev.goto(f"{live_server.url}/apps/")
    dev.get_by_role("link", name="Forecast App").click()
    expect(dev.get_by_text("Approved").first).to_be_visible()
    app_page = dev.url
    dev.locator("form", has=dev.get_by_role("button", name=re.compile("create key", re.I))).locator(
        "input[name=name]"
    ).fill("laptop")
    dev.get_by_role("button", name=re.compile("create key", re.I)).click()
    expect(dev.get_by_text(re.compile("only time it is shown|shown once", re.I)).first).to_be_visible()
    secret = SECRET.search(dev.content()).group(0)
    dev.get_by_role("button", name=re.compile("^copy", re.I)).click()
    assert dev.evaluate("navigator.clipboard.readText()") == secret
    screenshot(dev, "08-key-secret-once")
    key = ApiKey.objects.get(application__name="Forecast App")
    assert secret.startswith(key.prefix + ".")
    dev.goto(app_page)
    expect(dev.get_by_text(key.prefix).first).to_be_visible()
    assert secret not in dev.content()
    screenshot(dev, "09-application-keys")

    # Try it: the docs offer the key by prefix; the pasted secret calls the real gateway.
    try_it_gateway.wait_for_config()
    dev.goto(f"{live_server.url}/apis/weather/v1/docs/")
    assert secret not in dev.content()
    expect(dev.locator("#try-it-key-choice")).to_have_value(key.prefix)
    dev.fill("#try-it-key", "pt_wrongkey.notit")
    dev.get_by_role("button", name="Use this key").click()
    expect(dev.locator("#try-it-status")).to_contain_text(f"belongs to pt_wrongkey…, not to {key.prefix}")
    dev.fill("#try-it-key", "my password")
    dev.get_by_role("button", name="Use this key").click()
    expect(dev.locator("#try-it-status")).to_contain_text("not a Portico key")
    dev.fill("#try-it-key", secret)
    dev.get_by_role("button", name="Use this key").click()
    expect(dev.locator("#try-it-status")).to_contain_text(f"Using key {key.prefix}")
    assert dev.input_value("#try-it-key") == ""  # the secret does not linger on screen
    dev.locator(".opblock-summary", has_text="/echo").click()
    with dev.expect_response(lambda r: r.url.startswith(try_it_gateway.url) and r.request.method == "GET") as call:
        dev.locator("button.execute").click()
    assert call.value.status == 200
    assert call.value.request.headers["x-api-key"] == secret
    answer = dev.locator(".live-responses-table tbody")
    expect(answer.locator(".response-col_status").first).to_have_text("200")
    expect(answer.locator(".response-col_description").first).to_contain_text('"upstream": "a"')
    screenshot(dev, "10-docs-try-it")
