"""Tenant isolation on every REST endpoint that touches a tenant's objects.

Acme's owner (alice) may do everything, its developer (bob) everything but team-admin
moves, its viewer (vera) may only read, and Globex's owner (charlie) gets 404 for all of
it, exactly as for objects that do not exist.
"""

import pytest

from portal.models import ApiKey, Application, Subscription, SubscriptionState
from portal.services import keys, subscriptions
from tests.api.conftest import assert_error, client_for

pytestmark = pytest.mark.django_db

READS = [
    ("get", "/api/v1/applications/{app}/", None),
    ("get", "/api/v1/applications/{app}/keys/", None),
    ("get", "/api/v1/keys/{key}/", None),
    ("get", "/api/v1/subscriptions/{sub}/", None),
]
DEVELOPER_WRITES = [
    ("patch", "/api/v1/applications/{app}/", {"description": "changed"}),
    ("post", "/api/v1/applications/{app}/keys/", {"name": "new"}),
    ("post", "/api/v1/keys/{key}/rotate/", {}),
    ("post", "/api/v1/keys/{key}/revoke/", {}),
    ("post", "/api/v1/subscriptions/", {"application": "{app}", "api": "weather", "plan": "{gold}"}),
]
ADMIN_WRITES = [
    ("post", "/api/v1/subscriptions/{sub}/cancel/", {}),
    ("delete", "/api/v1/applications/{app}/", None),
]
ALL = READS + DEVELOPER_WRITES + ADMIN_WRITES


def label(case) -> str:
    return f"{case[0].upper()} {case[1]}"


@pytest.fixture
def acme_things(app, bob, api, free_plan, gold_plan):
    key, _secret = keys.create_api_key(app, actor=bob, name="prod")
    sub, _created = subscriptions.request_subscription(app, api, free_plan, actor=bob)
    return {"app": app.pk, "key": key.pk, "sub": sub.pk, "gold": gold_plan.pk}


def call(client, case, ids):
    method, path, body = case
    if isinstance(body, dict):
        body = {k: (int(v.format(**ids)) if isinstance(v, str) and v.startswith("{") else v) for k, v in body.items()}
    return getattr(client, method)(path.format(**ids), body, format="json")


def snapshot():
    """Everything a write could change, to prove a refused call changed nothing."""
    return (
        list(Application.objects.values_list("pk", "name", "description")),
        list(ApiKey.objects.values_list("pk", "revoked_at", "expires_at")),
        list(Subscription.objects.values_list("pk", "state")),
    )


@pytest.mark.parametrize("case", ALL, ids=label)
def test_an_outsider_gets_404_and_changes_nothing(case, acme_things, charlie, globex):
    before = snapshot()
    assert_error(call(client_for(charlie), case, acme_things), 404, "not_found")
    assert snapshot() == before


def test_an_outsiders_lists_show_none_of_another_tenants_things(acme_things, charlie, globex_app):
    client = client_for(charlie)
    assert [a["name"] for a in client.get("/api/v1/applications/").json()["results"]] == ["Globex App"]
    assert client.get("/api/v1/keys/").json()["results"] == []
    assert client.get("/api/v1/subscriptions/").json()["results"] == []
    assert client.get("/api/v1/keys/", {"application": acme_things["app"]}).json()["results"] == []
    assert client.get("/api/v1/applications/", {"tenant": "acme"}).json()["results"] == []


@pytest.mark.parametrize("who", ["alice", "bob", "vera"])
@pytest.mark.parametrize("case", READS, ids=label)
def test_every_member_reads_their_teams_things(request, who, case, acme_things):
    assert call(client_for(request.getfixturevalue(who)), case, acme_things).status_code == 200


@pytest.mark.parametrize("case", DEVELOPER_WRITES + ADMIN_WRITES, ids=label)
def test_a_viewer_cannot_write_and_changes_nothing(case, acme_things, vera):
    before = snapshot()
    assert_error(call(client_for(vera), case, acme_things), 403, "permission_denied")
    assert snapshot() == before


def test_a_viewer_cannot_create_an_application(vera, acme):
    assert_error(client_for(vera).post("/api/v1/applications/", {"name": "V"}, format="json"), 403, "permission_denied")
    assert not Application.objects.exists()


@pytest.mark.parametrize("case", DEVELOPER_WRITES, ids=label)
def test_a_developer_member_may_do_developer_writes(case, acme_things, bob):
    assert call(client_for(bob), case, acme_things).status_code in (200, 201)


@pytest.mark.parametrize("case", ADMIN_WRITES, ids=label)
def test_a_developer_member_cannot_do_team_admin_writes(case, acme_things, bob):
    before = snapshot()
    assert_error(call(client_for(bob), case, acme_things), 403, "permission_denied")
    assert snapshot() == before


def test_the_owner_may_do_team_admin_writes(acme_things, alice):
    client = client_for(alice)
    assert call(client, ADMIN_WRITES[0], acme_things).json()["state"] == SubscriptionState.REVOKED
    assert call(client, ADMIN_WRITES[1], acme_things).status_code == 204
    assert not Application.objects.filter(pk=acme_things["app"]).exists()
