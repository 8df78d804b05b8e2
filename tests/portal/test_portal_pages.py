"""The developer portal's pages with the Django test client: flows, roles and isolation."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from portal.models import ApiKey, Application, AuditEvent, Membership, Subscription, SubscriptionState, Tenant
from portal.services import keys, lifecycle
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)


def login(client, user):
    client.force_login(user)
    return client


def test_signup_creates_a_personal_team_and_logs_in(client):
    response = client.post(
        reverse("signup"),
        {"username": "dana", "email": "dana@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302
    dana = get_user_model().objects.get(username="dana")
    membership = Membership.objects.get(user=dana)
    assert membership.role == "owner" and membership.tenant.is_personal
    assert client.get(reverse("applications")).status_code == 200


def test_signup_awaiting_approval_cannot_log_in(client, settings):
    settings.PORTICO_SIGNUP_REQUIRES_APPROVAL = True
    response = client.post(
        reverse("signup"),
        {"username": "erin", "email": "erin@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert b"awaits approval" in response.content
    response = client.post(reverse("login"), {"username": "erin", "password": PASSWORD})
    assert response.status_code == 200 and "_auth_user_id" not in client.session


def test_catalog_lists_published_apis_and_searches_by_name_and_tag(client, api, draft_version, publisher):
    from portal.models import Api, ApiVersion, Tag, UpstreamTarget

    api.tags.add(Tag.objects.create(name="weather"))
    hidden = Api.objects.create(slug="secret", name="Secret Draft", owner=publisher)
    ApiVersion.objects.create(api=hidden, version="v1", base_path="/secret/v1")
    assert b"Weather" in client.get(reverse("catalog")).content
    assert b"Secret Draft" not in client.get(reverse("catalog")).content
    assert b"Weather" in client.get(reverse("catalog"), {"q": "forecast"}).content
    assert b"Weather" not in client.get(reverse("catalog"), {"q": "payments"}).content
    assert b"Weather" in client.get(reverse("catalog"), {"tag": "weather"}).content
    assert client.get(reverse("api_detail", args=["secret"])).status_code == 404
    UpstreamTarget.objects.create(version=hidden.versions.get(), url="http://127.0.0.1:9")


def test_api_page_shows_versions_with_badges_sunset_and_plans(client, api, staff):
    version = api.versions.get()
    lifecycle.deprecate_version(version, actor=staff)
    page = client.get(reverse("api_detail", args=[api.slug])).content.decode()
    assert "Deprecated" in page and "Sunset" in page
    assert "Free" in page and "60 requests / minute" in page and "Needs an administrator" in page


def test_retired_and_draft_versions_have_no_docs(client, api, staff):
    version = api.versions.get()
    assert client.get(reverse("api_docs", args=[api.slug, version.version])).status_code == 200
    lifecycle.retire_version(version, actor=staff)
    assert client.get(reverse("api_docs", args=[api.slug, version.version])).status_code == 404
    assert client.get(reverse("api_detail", args=[api.slug])).status_code == 404


def test_docs_are_served_locally_and_point_try_it_at_the_gateway(client, api, settings):
    version = api.versions.get()
    version.openapi = {"openapi": "3.0.3", "info": {"title": "W", "version": "1"}, "paths": {}}
    version.save()
    page = client.get(reverse("api_docs", args=[api.slug, version.version])).content.decode()
    assert "swagger-ui-bundle.js" in page and "cdn" not in page.lower()
    document = client.get(reverse("api_openapi", args=[api.slug, version.version])).json()
    assert document["servers"] == [{"url": settings.PORTICO_GATEWAY_URL + version.base_path}]
    assert document["components"]["securitySchemes"]["PorticoKey"]["name"] == "X-API-Key"


def test_create_application_then_subscribe_on_an_auto_plan(client, acme, alice, api, free_plan):
    login(client, alice)
    response = client.post(reverse("applications"), {"name": "Mobile", "description": ""})
    app = Application.objects.get(tenant=acme, name="Mobile")
    assert response.status_code == 302
    client.post(reverse("subscribe", args=[api.slug]), {"application": app.pk, "plan": free_plan.pk})
    assert Subscription.objects.get(application=app).state == SubscriptionState.APPROVED


def test_subscribing_twice_shows_the_pending_request(client, app, alice, api, gold_plan):
    login(client, alice)
    data = {"application": app.pk, "plan": gold_plan.pk}
    client.post(reverse("subscribe", args=[api.slug]), data)
    response = client.post(reverse("subscribe", args=[api.slug]), data, follow=True)
    assert b"already has a pending subscription" in response.content
    assert Subscription.objects.filter(application=app).count() == 1
    assert b"Pending approval" in client.get(reverse("application_detail", args=[app.pk])).content


def test_rejection_reason_is_shown_to_the_developer(client, app, alice, bob, api, gold_plan, staff):
    from portal.services import subscriptions

    sub, _ = subscriptions.request_subscription(app, api, gold_plan, actor=bob)
    subscriptions.reject_subscription(sub, actor=staff, reason="Gold is for partners only")
    login(client, alice)
    assert b"Gold is for partners only" in client.get(reverse("application_detail", args=[app.pk])).content


def test_key_secret_is_shown_once_and_never_again(client, app, bob):
    login(client, bob)
    response = client.post(reverse("key_create", args=[app.pk]), {"name": "ci"})
    secret = re.search(rb'id="secret">(pt_[^<]+)<', response.content).group(1).decode()
    assert response["Cache-Control"] == "no-store"
    key = ApiKey.objects.get(application=app)
    assert secret.startswith(key.prefix) and secret not in key.secret_hash
    page = client.get(reverse("application_detail", args=[app.pk])).content.decode()
    assert key.prefix in page and secret not in page


def test_rotate_and_revoke_from_the_console(client, app, bob):
    key, _secret = keys.create_api_key(app, actor=bob)
    login(client, bob)
    response = client.post(reverse("key_rotate", args=[app.pk, key.pk]))
    assert b"Key rotated" in response.content and ApiKey.objects.filter(application=app).count() == 2
    client.post(reverse("key_revoke", args=[app.pk, key.pk]))
    key.refresh_from_db()
    assert key.is_revoked


def test_viewer_sees_keys_but_cannot_create_them(client, app, vera):
    login(client, vera)
    page = client.get(reverse("application_detail", args=[app.pk]))
    assert page.status_code == 200 and b"New key" not in page.content
    response = client.post(reverse("key_create", args=[app.pk]), {"name": "x"}, follow=True)
    assert b"developer role" in response.content and not ApiKey.objects.exists()


@pytest.mark.parametrize(
    "name,method",
    [
        ("application_detail", "get"),
        ("application_edit", "post"),
        ("application_delete", "post"),
        ("key_create", "post"),
    ],
)
def test_other_tenants_applications_are_404(client, app, charlie, globex, name, method):
    login(client, charlie)
    response = getattr(client, method)(reverse(name, args=[app.pk]))
    assert response.status_code == 404
    assert Application.objects.filter(pk=app.pk).exists()


@pytest.mark.parametrize("name", ["key_rotate", "key_revoke"])
def test_other_tenants_keys_are_404(client, app, bob, charlie, globex, globex_app, name):
    key, _ = keys.create_api_key(app, actor=bob)
    login(client, charlie)
    assert client.post(reverse(name, args=[app.pk, key.pk])).status_code == 404
    assert client.post(reverse(name, args=[globex_app.pk, key.pk])).status_code == 404
    key.refresh_from_db()
    assert key.is_usable()


def test_application_list_shows_only_the_current_tenant(client, app, globex_app, charlie, alice):
    page = login(client, charlie).get(reverse("applications")).content
    assert b"Globex App" in page and b"Acme App" not in page


def test_switching_tenant_changes_what_is_shown_and_refuses_foreign_tenants(client, app, globex, alice, acme):
    Membership.objects.create(user=alice, tenant=globex, role="developer")
    login(client, alice)
    client.post(reverse("switch_tenant"), {"tenant": globex.pk})
    assert b"Acme App" not in client.get(reverse("applications")).content
    stranger = Tenant.objects.create(name="Stranger", slug="stranger")
    assert client.post(reverse("switch_tenant"), {"tenant": stranger.pk}).status_code == 404


def test_console_needs_login(client, app):
    response = client.get(reverse("applications"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_login_attempts_are_rate_limited(client, alice, redis_client):
    for counter in redis_client.scan_iter("portico:cache*"):  # django-ratelimit's counters
        redis_client.delete(counter)
    statuses = [
        client.post(reverse("login"), {"username": "alice", "password": "wrong"}).status_code for _ in range(12)
    ]
    assert statuses[:10] == [200] * 10 and statuses[-1] == 429
    assert (
        client.post(
            reverse("login"), {"username": "alice", "password": "wrong"}, HTTP_ACCEPT="application/json"
        ).json()["error"]["code"]
        == "rate_limited"
    )


def test_login_signup_and_key_creation_work_while_the_cache_is_down(client, app, bob, cache_down):
    # The abuse limits count in Redis; while it is away they let people through, never a 500.
    assert client.post(reverse("login"), {"username": "bob", "password": PASSWORD}).status_code == 302
    response = client.post(reverse("key_create", args=[app.pk]), {"name": "during the outage"})
    assert response.status_code == 200 and b'id="secret">pt_' in response.content
    client.logout()
    signup = client.post(
        reverse("signup"),
        {"username": "newcomer", "email": "new@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert signup.status_code == 302 and get_user_model().objects.filter(username="newcomer").exists()


def test_developer_edits_an_application_and_names_stay_unique_in_the_team(client, app, bob, acme):
    login(client, bob)
    Application.objects.create(tenant=acme, name="Taken", created_by=bob)
    client.post(reverse("application_edit", args=[app.pk]), {"name": "Renamed", "description": "Billing sync"})
    app.refresh_from_db()
    assert (app.name, app.description) == ("Renamed", "Billing sync")
    page = client.post(reverse("application_edit", args=[app.pk]), {"name": "Taken"}, follow=True)
    assert "already has an application named" in page.content.decode()
    app.refresh_from_db()
    assert app.name == "Renamed"


def test_only_team_admins_delete_applications_and_the_deletion_is_audited(client, app, bob, alice):
    login(client, bob)  # a developer
    page = client.get(reverse("application_detail", args=[app.pk])).content.decode()
    assert "Delete application" not in page
    refused = client.post(reverse("application_delete", args=[app.pk]), follow=True)
    assert "needs the admin role" in refused.content.decode() and Application.objects.filter(pk=app.pk).exists()
    login(client, alice)  # the owner
    assert "Delete application" in client.get(reverse("application_detail", args=[app.pk])).content.decode()
    client.post(reverse("application_delete", args=[app.pk]))
    assert not Application.objects.filter(pk=app.pk).exists()
    assert AuditEvent.objects.filter(action="application.deleted").exists()
