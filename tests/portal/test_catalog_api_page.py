"""An API's page: versions with lifecycle badges and sunset dates, plans with their limits,
the way to subscribe, and the current tenant's own subscriptions."""

import re

import pytest
from django.urls import reverse

from portal.models import Application
from portal.services import subscriptions
from tests.portal.catalog_builders import make_api, make_plan

pytestmark = pytest.mark.django_db


@pytest.fixture
def weather(publisher, staff):
    """v1 deprecated, v2 published, v3 draft, v4 retired."""
    api = make_api(publisher, staff, "weather", tags=("geo",), states=("deprecated", "published", "draft", "retired"))
    make_plan(api, "Free", requests_per_minute=60, daily_quota=10000)
    make_plan(api, "Gold", requests_per_second=100, monthly_quota=5_000_000, requires_approval=True)
    make_plan(api, "Unlimited")
    make_plan(api, "Closed", requests_per_minute=1, is_active=False)
    return api


def page_of(client, slug="weather") -> str:
    response = client.get(reverse("api_detail", args=[slug]))
    assert response.status_code == 200
    return response.content.decode()


def version_rows(page: str) -> dict[str, str]:
    return dict(re.findall(r'<th scope="row">(v\d)</th>(.*?)</tr>', page, re.S))


def test_versions_show_their_lifecycle_badge_and_draft_or_retired_ones_are_absent(client, weather):
    rows = version_rows(page_of(client))
    assert sorted(rows) == ["v1", "v2"]
    assert '<span class="badge published">Published</span>' in rows["v2"]
    assert '<span class="badge deprecated">Deprecated</span>' in rows["v1"]


def test_a_deprecated_version_shows_its_sunset_date(client, weather):
    sunset = weather.versions.get(version="v1").sunset_at
    row = version_rows(page_of(client))["v1"]
    assert f'Sunset <time datetime="{sunset.isoformat()}">{sunset.day} {sunset:%B %Y}</time>' in row
    assert "Sunset" not in version_rows(page_of(client))["v2"]


def test_versions_link_to_their_reference_and_show_the_gateway_base_url(client, weather, settings):
    page = page_of(client)
    assert f"{settings.PORTICO_GATEWAY_URL}/weather/v2" in page
    assert reverse("api_docs", args=["weather", "v1"]) in page
    assert reverse("api_docs", args=["weather", "v3"]) not in page
    assert "Read the v2 reference" in page  # the main call to action is the newest published version


def test_plans_show_their_limits_and_whether_approval_is_needed(client, weather):
    page = page_of(client)
    cards = dict(re.findall(r"<h3>(\w+)</h3>(.*?)</article>", page, re.S))
    assert sorted(cards) == ["Free", "Gold", "Unlimited"]  # the inactive plan is not offered
    assert "60 requests / minute" in cards["Free"] and "10,000 requests / day" in cards["Free"]
    assert "Active at once" in cards["Free"]
    assert "100 requests / second" in cards["Gold"] and "5,000,000 requests / month" in cards["Gold"]
    assert "Needs an administrator" in cards["Gold"]
    assert "<dd>none</dd>" in cards["Unlimited"]


def test_subscribe_actions_lead_to_the_console_subscribe_page(client, weather):
    page = page_of(client)
    subscribe = reverse("subscribe", args=["weather"])
    gold = weather.plans.get(name="Gold")
    assert f'href="{subscribe}"' in page and f'href="{subscribe}?plan={gold.pk}"' in page


def test_the_page_shows_the_current_tenants_subscriptions_only(client, weather, acme, alice, globex, charlie):
    app = Application.objects.create(tenant=acme, name="Acme Mobile")
    subscriptions.request_subscription(app, weather, weather.plans.get(name="Gold"), actor=alice)
    client.force_login(alice)
    mine = page_of(client)
    assert "Your applications on Weather" in mine and "Acme Mobile" in mine and "Pending approval" in mine
    client.force_login(charlie)
    theirs = page_of(client)
    assert "Acme Mobile" not in theirs and "Your applications" not in theirs


@pytest.mark.parametrize("states", [("draft",), ("retired",), ("draft", "retired")])
def test_an_api_without_a_visible_version_is_404(client, publisher, staff, states):
    make_api(publisher, staff, "hidden", states=states)
    assert client.get(reverse("api_detail", args=["hidden"])).status_code == 404


def test_an_unknown_api_is_404(client, db):
    assert client.get(reverse("api_detail", args=["nope"])).status_code == 404
