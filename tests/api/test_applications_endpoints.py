"""Applications over the REST API: create, edit, delete, keys, with the team's roles."""

import pytest

from portal.models import Application, AuditEvent, Membership, Role
from portal.services import keys
from portal.services.config_signal import current_config_version
from portal.services.tenants import create_tenant
from tests.api.conftest import assert_error, client_for

pytestmark = pytest.mark.django_db


def test_a_developer_creates_an_application_in_their_only_team(bob, acme):
    created = client_for(bob).post("/api/v1/applications/", {"name": " CLI ", "description": "Tools"}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["tenant"] == "acme" and created.json()["name"] == "CLI"
    app = Application.objects.get(pk=created.json()["id"])
    assert app.tenant == acme and app.created_by == bob
    assert AuditEvent.objects.filter(action="application.created", object_id=str(app.pk)).exists()


def test_someone_in_several_teams_must_say_which(bob, acme):
    personal = create_tenant("Bob's team", actor=bob, is_personal=True)
    client = client_for(bob)
    error = assert_error(client.post("/api/v1/applications/", {"name": "CLI"}, format="json"), 400, "invalid_input")
    assert "acme" in error["message"] and personal.slug in error["message"]
    created = client.post("/api/v1/applications/", {"name": "CLI", "tenant": personal.slug}, format="json")
    assert created.status_code == 201 and created.json()["tenant"] == personal.slug
    assert [a["name"] for a in client.get("/api/v1/applications/", {"tenant": "acme"}).json()["results"]] == []


def test_an_application_cannot_go_to_a_team_you_are_not_in(bob, acme, globex):
    response = client_for(bob).post("/api/v1/applications/", {"name": "Sneaky", "tenant": "globex"}, format="json")
    assert_error(response, 404, "not_found")
    assert not Application.objects.filter(name="Sneaky").exists()


def test_names_are_required_and_unique_in_a_team(bob, app):
    client = client_for(bob)
    error = assert_error(client.post("/api/v1/applications/", {"name": ""}, format="json"), 400, "invalid_input")
    assert "name" in error["fields"]
    assert_error(client.post("/api/v1/applications/", {"name": "Acme App"}, format="json"), 400, "invalid_input")
    other = client.post("/api/v1/applications/", {"name": "Other"}, format="json").json()
    assert_error(
        client.patch(f"/api/v1/applications/{other['id']}/", {"name": "Acme App"}, format="json"), 400, "invalid_input"
    )


def test_a_developer_renames_and_describes_an_application(bob, app):
    response = client_for(bob).patch(f"/api/v1/applications/{app.pk}/", {"description": "Mobile"}, format="json")
    assert response.status_code == 200 and response.json()["description"] == "Mobile"
    response = client_for(bob).patch(f"/api/v1/applications/{app.pk}/", {"name": "Acme Mobile"}, format="json")
    app.refresh_from_db()
    assert (app.name, app.description) == ("Acme Mobile", "Mobile")


def test_put_is_not_offered_so_a_partial_body_never_blanks_fields(bob, app):
    assert_error(
        client_for(bob).put(f"/api/v1/applications/{app.pk}/", {"name": "X"}, format="json"), 405, "method_not_allowed"
    )


def test_deleting_needs_an_admin_and_tells_the_gateway(bob, alice, app, django_capture_on_commit_callbacks):
    assert_error(client_for(bob).delete(f"/api/v1/applications/{app.pk}/"), 403, "permission_denied")
    assert Application.objects.filter(pk=app.pk).exists()
    before = current_config_version()
    with django_capture_on_commit_callbacks(execute=True):
        assert client_for(alice).delete(f"/api/v1/applications/{app.pk}/").status_code == 204
    assert not Application.objects.filter(pk=app.pk).exists()
    assert current_config_version() > before


def test_an_admin_not_owner_may_delete(bob, app, acme):
    Membership.objects.filter(user=bob, tenant=acme).update(role=Role.ADMIN)
    assert client_for(bob).delete(f"/api/v1/applications/{app.pk}/").status_code == 204


def test_an_applications_keys_are_listed_by_prefix_without_secrets(bob, app):
    key, _secret = keys.create_api_key(app, actor=bob, name="laptop")
    listed = client_for(bob).get(f"/api/v1/applications/{app.pk}/keys/").json()["results"]
    assert [(k["prefix"], k["name"], k["state"]) for k in listed] == [(key.prefix, "laptop", "active")]
    assert "secret" not in listed[0] and "secret_hash" not in listed[0]
