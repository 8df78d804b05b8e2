"""A provider team runs its own API, in a real browser, through the real gateway:

the owner of Mapworks creates the Tiles API, a v1 version (an upstream target, policy and an
OpenAPI document) and a plan that needs approval, and publishes it -> a developer of
another team subscribes -> the Mapworks owner approves in the portal (no staff anywhere)
-> the developer's new key gets a 200 from the gateway.

Screenshots land in test-artifacts/screenshots/provider-*.png.
"""

import json
import re

import pytest
from playwright.sync_api import expect

from portal.models import Api, ApiKey, Membership, Role, Subscription, SubscriptionState, Tenant, VersionState
from tests.conftest import PASSWORD, make_user

pytestmark = [pytest.mark.browser, pytest.mark.gateway, pytest.mark.django_db(transaction=True)]

SECRET = re.compile(r"pt_[a-z0-9]{8}\.[A-Za-z0-9_-]{20,}")
TILES_DOCUMENT = {
    "openapi": "3.0.3",
    "info": {"title": "Tiles", "version": "1.0"},
    "paths": {"/echo": {"get": {"operationId": "echo", "responses": {"200": {"description": "The request"}}}}},
}


def log_in(page, base_url: str, username: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text(username, exact=True).first).to_be_visible()


def test_a_provider_team_publishes_an_api_and_approves_a_developer_whose_key_then_works(
    live_server, try_it_gateway, upstream_a, new_page, screenshot, settings, tmp_path
):
    # The upstream listens on loopback: an administrator allowed that network for teams.
    settings.PORTICO_UPSTREAM_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    mapworks = Tenant.objects.create(name="Mapworks", slug="mapworks")
    paula = make_user("paula")
    Membership.objects.create(user=paula, tenant=mapworks, role=Role.OWNER)
    studio = Tenant.objects.create(name="Dana Studio", slug="dana-studio")
    dana = make_user("dana")
    Membership.objects.create(user=dana, tenant=studio, role=Role.OWNER)
    document = tmp_path / "tiles.json"
    document.write_text(json.dumps(TILES_DOCUMENT))

    # The provider creates the API.
    provider = new_page()
    log_in(provider, live_server.url, "paula")
    provider.get_by_role("link", name="Your APIs").click()
    provider.fill("input[name=name]", "Tiles")
    provider.fill("input[name=slug]", "tiles")
    provider.fill("textarea[name=description]", "Map tiles for every zoom level.")
    screenshot(provider, "provider-01-new-api")
    provider.get_by_role("button", name="Create API").click()
    expect(provider.get_by_role("heading", name="Tiles", level=1)).to_be_visible()

    # A version: base path, a weighted upstream target, policy and the OpenAPI document.
    provider.fill("input[name=version]", "v1")
    provider.fill("input[name=base_path]", "/tiles/v1")
    provider.fill("textarea[name=targets]", f"{upstream_a} 100")
    provider.fill("input[name=retries]", "2")
    provider.fill("input[name=cache_ttl_seconds]", "0")
    provider.set_input_files("input[name=openapi]", str(document))
    screenshot(provider, "provider-02-new-version")
    provider.get_by_role("button", name="Create version").click()
    expect(provider.get_by_text("Version v1 created as a draft.")).to_be_visible()

    # A plan that needs the provider's approval.
    provider.fill("#new-plan input[name=name]", "Partner")
    provider.fill("#new-plan input[name=requests_per_minute]", "600")
    provider.check("#new-plan input[name=requires_approval]")
    provider.get_by_role("button", name="Create plan").click()
    expect(provider.get_by_text("Plan Partner created.")).to_be_visible()

    # Publish v1.
    provider.get_by_role("button", name="Publish v1").click()
    expect(provider.get_by_text("Version v1: publish done.")).to_be_visible()
    expect(provider.locator(".badge.published")).to_have_text("Published")
    screenshot(provider, "provider-03-published")
    api = Api.objects.get(slug="tiles")
    assert api.owner == mapworks
    assert api.versions.get().state == VersionState.PUBLISHED
    assert api.versions.get().openapi["paths"]["/echo"]

    # A developer of another team finds it, creates an application and subscribes.
    dev = new_page()
    log_in(dev, live_server.url, "dana")
    dev.goto(f"{live_server.url}/apps/")
    dev.fill("input[name=name]", "Hiking App")
    dev.get_by_role("button", name="Create application").click()
    expect(dev.get_by_text("Hiking App").first).to_be_visible()
    dev.goto(f"{live_server.url}/apis/tiles/")
    expect(dev.get_by_role("heading", name="Tiles", level=1)).to_be_visible()
    dev.get_by_role("link", name="Subscribe on Partner").click()
    dev.locator("select[name=application]").select_option(label="Hiking App")
    dev.locator(f"input[name=plan][value='{api.plans.get().pk}']").check()
    dev.get_by_role("button", name="Subscribe").click()
    expect(dev.get_by_text("Pending approval").first).to_be_visible()
    screenshot(dev, "provider-04-developer-pending")
    subscription = Subscription.objects.get(application__name="Hiking App")
    assert subscription.state == SubscriptionState.PENDING

    # The provider approves it in the portal.
    provider.get_by_role("link", name="Subscription requests").first.click()
    expect(provider.get_by_role("cell", name="Hiking App", exact=True)).to_be_visible()
    provider.get_by_role("textbox", name="Reason for approving Hiking App").fill("Welcome, hikers")
    screenshot(provider, "provider-05-requests")
    provider.get_by_role("button", name="Approve Hiking App").click()
    expect(provider.get_by_text("Hiking App on Tiles: approved.")).to_be_visible()
    screenshot(provider, "provider-06-approved")
    subscription.refresh_from_db()
    assert subscription.state == SubscriptionState.APPROVED and subscription.decided_by == paula

    # The developer creates a key and calls the API through the gateway.
    dev.goto(f"{live_server.url}/apps/")
    dev.get_by_role("link", name="Hiking App").click()
    expect(dev.get_by_text("Approved").first).to_be_visible()
    dev.get_by_role("button", name=re.compile("create key", re.I)).click()
    secret = SECRET.search(dev.content()).group(0)
    screenshot(dev, "provider-07-developer-key")
    assert secret.startswith(ApiKey.objects.get(application__name="Hiking App").prefix + ".")
    try_it_gateway.wait_for_config()
    answer = try_it_gateway.get("/tiles/v1/echo", key=secret)
    assert answer.status_code == 200, answer.text
    assert answer.json()["upstream"] == "a"
    assert try_it_gateway.get("/tiles/v1/echo").status_code == 401
