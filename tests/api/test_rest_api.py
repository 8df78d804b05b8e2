"""The management REST API: token auth, developer and staff operations, tenant isolation."""

import pytest
from rest_framework.test import APIClient

from portal.models import ApiKey, Application, Subscription, SubscriptionState, VersionState
from portal.services import keys, subscriptions
from portal.services.tokens import create_access_token

pytestmark = pytest.mark.django_db(transaction=True)


def client_for(user) -> APIClient:
    _token, secret = create_access_token(user, "tests")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    return client


def assert_error(response, status, code):
    assert response.status_code == status, response.content
    assert response.json()["error"]["code"] == code


def test_no_token_or_a_bad_token_is_401_json():
    assert_error(APIClient().get("/api/v1/applications/"), 401, "not_authenticated")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token pat_abcdefgh.nope")
    assert_error(client.get("/api/v1/applications/"), 401, "not_authenticated")


def test_catalog_lists_visible_apis_with_plans(api, alice, acme):
    body = client_for(alice).get("/api/v1/apis/").json()
    assert [a["slug"] for a in body["results"]] == ["weather"]
    assert {p["name"] for p in body["results"][0]["plans"]} == {"Free", "Gold"}


def test_developer_creates_an_application_and_a_key_shown_once(bob, acme):
    client = client_for(bob)
    app = client.post("/api/v1/applications/", {"name": "CLI"}, format="json").json()
    created = client.post(f"/api/v1/applications/{app['id']}/keys/", {"name": "laptop"}, format="json")
    assert created.status_code == 201 and created.json()["secret"].startswith(created.json()["prefix"] + ".")
    listed = client.get(f"/api/v1/applications/{app['id']}/keys/").json()
    assert "secret" not in listed[0] and listed[0]["prefix"] == created.json()["prefix"]


def test_subscribe_rotate_revoke_and_cancel(app, bob, alice, api, free_plan):
    client = client_for(bob)
    sub = client.post(
        "/api/v1/subscriptions/", {"application": app.pk, "api": "weather", "plan": free_plan.pk}, format="json"
    )
    assert sub.status_code == 201 and sub.json()["state"] == "approved"
    again = client.post(
        "/api/v1/subscriptions/", {"application": app.pk, "api": "weather", "plan": free_plan.pk}, format="json"
    )
    assert again.status_code == 200 and again.json()["id"] == sub.json()["id"]
    key, _ = keys.create_api_key(app, bob)
    rotated = client.post(f"/api/v1/keys/{key.pk}/rotate/")
    assert rotated.status_code == 201 and rotated.json()["secret"]
    assert client.post(f"/api/v1/keys/{key.pk}/revoke/").json()["revoked_at"]
    assert_error(client.post(f"/api/v1/keys/{key.pk}/revoke/"), 409, "illegal_transition")
    assert_error(client.post(f"/api/v1/subscriptions/{sub.json()['id']}/cancel/"), 403, "permission_denied")
    assert client_for(alice).post(f"/api/v1/subscriptions/{sub.json()['id']}/cancel/").json()["state"] == "revoked"


def test_viewer_cannot_write(app, vera, api, free_plan):
    client = client_for(vera)
    assert client.get(f"/api/v1/applications/{app.pk}/").status_code == 200
    assert_error(client.post(f"/api/v1/applications/{app.pk}/keys/", {}, format="json"), 403, "permission_denied")
    assert_error(
        client.post("/api/v1/subscriptions/", {"application": app.pk, "api": "weather", "plan": free_plan.pk}),
        403,
        "permission_denied",
    )
    assert not ApiKey.objects.exists()


def test_outsider_gets_404_for_every_object_of_another_tenant(app, bob, charlie, globex, api, free_plan):
    key, _ = keys.create_api_key(app, bob)
    sub, _ = subscriptions.request_subscription(app, api, free_plan, bob)
    client = client_for(charlie)
    for method, url in [
        ("get", f"/api/v1/applications/{app.pk}/"),
        ("patch", f"/api/v1/applications/{app.pk}/"),
        ("delete", f"/api/v1/applications/{app.pk}/"),
        ("get", f"/api/v1/applications/{app.pk}/keys/"),
        ("post", f"/api/v1/applications/{app.pk}/keys/"),
        ("get", f"/api/v1/keys/{key.pk}/"),
        ("post", f"/api/v1/keys/{key.pk}/rotate/"),
        ("post", f"/api/v1/keys/{key.pk}/revoke/"),
        ("get", f"/api/v1/subscriptions/{sub.pk}/"),
        ("post", f"/api/v1/subscriptions/{sub.pk}/cancel/"),
    ]:
        assert_error(getattr(client, method)(url, {}, format="json"), 404, "not_found")
    assert client.get("/api/v1/applications/").json()["results"] == []
    assert client.get("/api/v1/keys/").json()["results"] == []
    assert client.get("/api/v1/subscriptions/").json()["results"] == []
    assert_error(
        client.post("/api/v1/subscriptions/", {"application": app.pk, "api": "weather", "plan": free_plan.pk}),
        404,
        "not_found",
    )
    assert Application.objects.filter(pk=app.pk).exists() and ApiKey.objects.get(pk=key.pk).is_usable()


def test_staff_approve_and_reject_with_a_reason(app, bob, staff, api, gold_plan):
    pending, _ = subscriptions.request_subscription(app, api, gold_plan, bob)
    admin = client_for(staff)
    assert_error(admin.post(f"/api/v1/subscriptions/{pending.pk}/reject/", {"reason": ""}), 400, "invalid_input")
    approved = admin.post(f"/api/v1/subscriptions/{pending.pk}/approve/", {"reason": "ok"}, format="json")
    assert approved.json()["state"] == "approved" and approved.json()["reason"] == "ok"
    assert_error(admin.post(f"/api/v1/subscriptions/{pending.pk}/reject/", {"reason": "no"}), 409, "illegal_transition")
    assert Subscription.objects.get(pk=pending.pk).state == SubscriptionState.APPROVED


def test_developers_cannot_approve_or_run_the_lifecycle(app, bob, api, gold_plan):
    pending, _ = subscriptions.request_subscription(app, api, gold_plan, bob)
    client = client_for(bob)
    assert_error(client.post(f"/api/v1/subscriptions/{pending.pk}/approve/", {}), 403, "permission_denied")
    version = api.versions.get()
    assert_error(
        client.post(f"/api/v1/versions/{version.pk}/transition/", {"state": "retired"}), 403, "permission_denied"
    )


def test_staff_runs_lifecycle_transitions_with_clear_errors(api, staff):
    version = api.versions.get()
    admin = client_for(staff)
    assert_error(admin.post(f"/api/v1/versions/{version.pk}/transition/", {"state": "archived"}), 400, "invalid_input")
    moved = admin.post(f"/api/v1/versions/{version.pk}/transition/", {"state": "deprecated"}, format="json")
    assert moved.json()["state"] == VersionState.DEPRECATED and moved.json()["sunset_at"]
    admin.post(f"/api/v1/versions/{version.pk}/transition/", {"state": "retired"}, format="json")
    assert_error(
        admin.post(f"/api/v1/versions/{version.pk}/transition/", {"state": "published"}), 409, "illegal_transition"
    )
    assert_error(admin.post("/api/v1/versions/999999/transition/", {"state": "retired"}), 404, "not_found")


def test_validation_errors_are_400_json_with_fields(bob, acme):
    response = client_for(bob).post("/api/v1/applications/", {"name": ""}, format="json")
    assert_error(response, 400, "invalid_request")
    assert "name" in response.json()["error"]["fields"]


def test_schema_is_served_without_auth():
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200 and response.json()["openapi"].startswith("3.")
    assert "/api/v1/applications/" in response.json()["paths"]
