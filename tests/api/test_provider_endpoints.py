"""/api/v1/provider/: a team's owners and admins run their APIs over REST.

Scoped to the APIs of the caller's teams where they are an owner or admin: another team's
API, version, plan or subscription is a 404, a developer's write a 403 or 404, bad input a
400 in the API's error shape.
"""

import pytest

from portal.models import Api, AuditEvent, Membership, Role, SubscriptionState, VersionState
from portal.services import provider, subscriptions
from portal.services.provider import TargetSpec
from tests.api.conftest import assert_error, client_for

pytestmark = pytest.mark.django_db

VERSION = {
    "version": "v1",
    "base_path": "/acme-maps/v1",
    "targets": [{"url": "http://127.0.0.1:9", "weight": 3}],
    "retries": 2,
    "cache_ttl_seconds": 30,
    "openapi": {"openapi": "3.0.3", "info": {"title": "Maps", "version": "1"}, "paths": {}},
}


@pytest.fixture
def loopback_allowed(settings):
    settings.PORTICO_UPSTREAM_ALLOWED_NETWORKS = ["127.0.0.0/8"]


@pytest.fixture
def acme_api(acme, alice):
    return provider.create_api(acme, actor=alice, slug="acme-maps", name="Acme Maps")


def test_an_owner_runs_an_api_end_to_end(alice, acme, globex_app, charlie, loopback_allowed):
    client = client_for(alice)
    created = client.post("/api/v1/provider/apis/", {"tenant": "acme", "slug": "acme-maps", "name": "Acme Maps"})
    assert created.status_code == 201, created.content
    assert created.json()["tenant"] == "acme"
    version = client.post("/api/v1/provider/apis/acme-maps/versions/", VERSION, format="json")
    assert version.status_code == 201, version.content
    body = version.json()
    assert body["state"] == "draft" and body["targets"] == [{"url": "http://127.0.0.1:9", "weight": 3, "enabled": True}]
    plan = client.post(
        "/api/v1/provider/apis/acme-maps/plans/", {"name": "Gold", "requires_approval": True}, format="json"
    )
    assert plan.status_code == 201, plan.content
    published = client.post(f"/api/v1/provider/versions/{body['id']}/transition/", {"state": "published"})
    assert published.status_code == 200 and published.json()["state"] == VersionState.PUBLISHED

    api = Api.objects.get(slug="acme-maps")
    sub, _ = subscriptions.request_subscription(globex_app, api, api.plans.get(), actor=charlie)
    listed = client.get("/api/v1/provider/subscriptions/?state=pending").json()
    assert [s["id"] for s in listed["results"]] == [sub.pk]
    assert_error(client.post(f"/api/v1/provider/subscriptions/{sub.pk}/reject/", {}), 400, "invalid_input")
    approved = client.post(f"/api/v1/provider/subscriptions/{sub.pk}/approve/", {"reason": "ok"})
    assert approved.status_code == 200 and approved.json()["state"] == SubscriptionState.APPROVED
    assert AuditEvent.objects.filter(action="subscription.approved", actor=alice).exists()

    patched = client.patch(f"/api/v1/provider/plans/{plan.json()['id']}/", {"requests_per_minute": 100}, format="json")
    assert patched.status_code == 200 and patched.json()["requests_per_minute"] == 100
    patched = client.patch(
        f"/api/v1/provider/versions/{body['id']}/", {"targets": [{"url": "http://127.0.0.1:10"}]}, format="json"
    )
    assert patched.status_code == 200 and patched.json()["targets"][0]["url"] == "http://127.0.0.1:10"


def test_another_team_sees_nothing(acme_api, charlie, globex, staff):
    version = provider.create_version(
        acme_api, actor=staff, version="v1", base_path="/acme-maps/v1", targets=[TargetSpec("http://127.0.0.1:9")]
    )
    plan = provider.create_plan(acme_api, actor=staff, name="Free")
    client = client_for(charlie)
    assert client.get("/api/v1/provider/apis/").json()["results"] == []
    assert_error(client.get("/api/v1/provider/apis/acme-maps/"), 404, "not_found")
    assert_error(client.post("/api/v1/provider/apis/acme-maps/versions/", VERSION, format="json"), 404, "not_found")
    assert_error(client.post("/api/v1/provider/apis/acme-maps/plans/", {"name": "X"}), 404, "not_found")
    assert_error(
        client.post(f"/api/v1/provider/versions/{version.pk}/transition/", {"state": "published"}), 404, "not_found"
    )
    assert_error(
        client.patch(f"/api/v1/provider/plans/{plan.pk}/", {"daily_quota": 1}, format="json"), 404, "not_found"
    )
    created = client.post("/api/v1/provider/apis/", {"tenant": "acme", "slug": "in-acme", "name": "Sneaky"})
    assert_error(created, 404, "not_found")
    assert not Api.objects.filter(slug="in-acme").exists()


@pytest.mark.parametrize("who", ["bob", "vera"])
def test_developers_and_viewers_cannot_manage(who, request, acme_api, acme):
    client = client_for(request.getfixturevalue(who))
    assert_error(
        client.post("/api/v1/provider/apis/", {"tenant": "acme", "slug": "x", "name": "X"}), 403, "permission_denied"
    )
    assert_error(client.get("/api/v1/provider/apis/acme-maps/"), 404, "not_found")


def test_an_admin_of_the_team_manages(acme, acme_api):
    from tests.conftest import make_user

    adam = make_user("adam")
    Membership.objects.create(user=adam, tenant=acme, role=Role.ADMIN)
    plan = client_for(adam).post("/api/v1/provider/apis/acme-maps/plans/", {"name": "Team"})
    assert plan.status_code == 201


@pytest.mark.parametrize(
    "change, code",
    [
        ({"targets": [{"url": "http://169.254.169.254/latest"}]}, "invalid_input"),
        ({"targets": [{"url": "http://[::1]:8000"}]}, "invalid_input"),
        ({"targets": [{"url": "gopher://example.com"}]}, "invalid_input"),
        ({"targets": [{"url": "http://example.com", "weight": 0}]}, "invalid_input"),
        ({"targets": [{"url": "http://93.184.215.14"}] * 17}, "invalid_input"),
        ({"openapi": {"swagger": "2.0", "paths": {}}}, "invalid_input"),
        ({"openapi": {"openapi": "3.0.0", "paths": {"/\u0000": {}}}}, "invalid_input"),
        ({"openapi": [1]}, "invalid_input"),
        ({"base_path": "/_portico/x"}, "invalid_input"),
        ({"read_timeout_ms": 10**12}, "invalid_input"),
        ({"version": "v1\u0000"}, "invalid_input"),
    ],
)
def test_hostile_version_input_is_a_400(change, code, alice, acme_api):
    body = {**VERSION, "targets": [{"url": "http://93.184.215.14"}], **change}
    assert_error(client_for(alice).post("/api/v1/provider/apis/acme-maps/versions/", body, format="json"), 400, code)
    assert not acme_api.versions.exists()


def test_a_huge_plan_limit_is_a_400(alice, acme_api):
    answer = client_for(alice).post("/api/v1/provider/apis/acme-maps/plans/", {"name": "Big", "daily_quota": 2**40})
    assert_error(answer, 400, "invalid_input")
