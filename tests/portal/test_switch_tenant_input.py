"""The tenant switcher takes hostile input calmly: a tenant id that is not a number is a
message, not a 500, and it only ever sends people back to a page of this site."""

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from portal.models import Membership
from portal.views.context import SESSION_KEY

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("tenant", ["abc", "", "1.5", "²", "-3", "9" * 30, "1\x00"])
def test_a_tenant_id_that_is_not_an_id_is_a_message_not_a_500(client, alice, acme, tenant):
    client.force_login(alice)
    response = client.post(reverse("switch_tenant"), {"tenant": tenant})
    assert response.status_code == 302 and response["Location"] == reverse("applications")
    assert [str(m) for m in get_messages(response.wsgi_request)] == ["Choose one of your teams to switch to."]
    assert SESSION_KEY not in client.session


@pytest.mark.parametrize(
    "next_url",
    [
        "https://evil.example/phish",
        "//evil.example/phish",
        "/\\evil.example/phish",
        "http://testserver.evil.example/",
        "javascript:alert(1)",
    ],
)
def test_switching_never_redirects_to_another_site(client, alice, acme, globex, next_url):
    Membership.objects.create(user=alice, tenant=globex, role="developer")
    client.force_login(alice)
    response = client.post(reverse("switch_tenant"), {"tenant": globex.pk, "next": next_url})
    assert response.status_code == 302 and response["Location"] == reverse("applications")
    assert client.session[SESSION_KEY] == globex.pk


def test_switching_goes_back_to_the_page_it_came_from_on_this_site(client, alice, acme, globex):
    Membership.objects.create(user=alice, tenant=globex, role="developer")
    client.force_login(alice)
    response = client.post(reverse("switch_tenant"), {"tenant": globex.pk, "next": "/apis/weather/?tab=plans"})
    assert response["Location"] == "/apis/weather/?tab=plans"
    absolute = client.post(reverse("switch_tenant"), {"tenant": acme.pk, "next": "http://testserver/apps/"})
    assert absolute["Location"] == "http://testserver/apps/"


def test_an_invalid_tenant_id_keeps_a_safe_next_and_drops_a_foreign_one(client, alice, acme):
    client.force_login(alice)
    kept = client.post(reverse("switch_tenant"), {"tenant": "x", "next": "/apps/"})
    assert kept["Location"] == "/apps/"
    dropped = client.post(reverse("switch_tenant"), {"tenant": "x", "next": "https://evil.example/"})
    assert dropped["Location"] == reverse("applications")
