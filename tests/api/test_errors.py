"""Every error of the management API reads {"error": {"code", "message"}} with the right status."""

import pytest
from rest_framework.test import APIClient

from portal.models import ApiKey
from portal.rest.exceptions import handle
from tests.api.conftest import assert_error, client_for

pytestmark = pytest.mark.django_db


def test_a_malformed_json_body_is_400(bob, acme):
    response = client_for(bob).post("/api/v1/applications/", "{not json", content_type="application/json")
    assert_error(response, 400, "invalid_request")


def test_field_errors_name_each_field(bob, app):
    response = client_for(bob).post("/api/v1/subscriptions/", {"application": "x", "plan": -1}, format="json")
    error = assert_error(response, 400, "invalid_input")
    assert set(error["fields"]) == {"application", "api", "plan"}
    assert "api:" in error["message"]


def test_an_unknown_object_or_path_is_a_json_404(bob, acme):
    client = client_for(bob)
    assert_error(client.get("/api/v1/applications/999999/"), 404, "not_found")
    assert_error(client.get("/api/v1/applications/abc/"), 404, "not_found")
    assert_error(client.get("/api/v1/nothing-here/"), 404, "not_found")
    assert_error(APIClient().get("/api/v2/"), 404, "not_found")


def test_a_wrong_method_is_405(bob, app):
    assert_error(client_for(bob).delete("/api/v1/keys/"), 405, "method_not_allowed")


def test_key_creation_is_limited_per_user_with_a_json_429(bob, app):
    client = client_for(bob)
    url = f"/api/v1/applications/{app.pk}/keys/"
    for _ in range(30):
        assert client.post(url, {}, format="json").status_code == 201
    error = assert_error(client.post(url, {}, format="json"), 429, "rate_limited")
    assert "per user" in error["message"]
    assert ApiKey.objects.count() == 30


def test_key_creation_is_limited_per_ip_across_people(alice, bob, charlie, app, globex_app):
    for person in (alice, bob):
        client = client_for(person)
        for _ in range(30):
            assert client.post(f"/api/v1/applications/{app.pk}/keys/", {}, format="json").status_code == 201
    response = client_for(charlie).post(f"/api/v1/applications/{globex_app.pk}/keys/", {}, format="json")
    assert "per ip" in assert_error(response, 429, "rate_limited")["message"]
    assert not ApiKey.objects.filter(application=globex_app).exists()


def test_drf_throttling_answers_in_the_same_shape():
    # DRF reads its throttle rates once at import, so this one case goes through the handler
    # with the real exception rather than 600 requests.
    from rest_framework.exceptions import Throttled

    response = handle(Throttled(wait=12), {})
    assert response.status_code == 429 and response["Retry-After"] == "12"
    assert response.data["error"]["code"] == "rate_limited"


def test_ids_and_page_bounds_too_big_for_a_database_are_answers_not_crashes(bob, app):
    client = client_for(bob)
    huge = "9" * 30
    assert_error(client.get(f"/api/v1/keys/{huge}/"), 404, "not_found")
    assert client.get("/api/v1/keys/", {"application": huge}).json()["results"] == []
    assert client.get("/api/v1/subscriptions/", {"application": huge}).json()["results"] == []
    page = client.get("/api/v1/applications/", {"limit": huge, "offset": huge})
    assert page.status_code == 200 and page.json()["results"] == [] and page.json()["count"] == 1
    body = {"application": int(huge), "api": "weather", "plan": 1}
    assert "application" in assert_error(client.post("/api/v1/subscriptions/", body), 400, "invalid_input")["fields"]


def test_only_json_bodies_are_accepted(bob, acme):
    response = client_for(bob).post("/api/v1/applications/", {"name": "Form"}, format="multipart")
    assert_error(response, 415, "unsupported_media_type")
