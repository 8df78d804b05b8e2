"""API keys over the REST API: the secret once, rotation with a grace period, revocation."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from portal import keyformat
from portal.models import ApiKey
from portal.services import keys
from tests.api.conftest import assert_error, client_for

pytestmark = pytest.mark.django_db


def test_a_new_keys_secret_is_in_the_creation_answer_and_nowhere_after(bob, app):
    client = client_for(bob)
    expiry = (timezone.now() + timedelta(days=30)).isoformat()
    created = client.post(
        f"/api/v1/applications/{app.pk}/keys/", {"name": "laptop", "expires_at": expiry}, format="json"
    )
    assert created.status_code == 201 and created["Cache-Control"] == "no-store"
    body = created.json()
    assert body["secret"].startswith(body["prefix"] + ".") and body["state"] == "active"
    stored = ApiKey.objects.get(pk=body["id"])
    assert keyformat.secret_matches(body["secret"], stored.secret_hash) and stored.expires_at is not None
    for answer in (client.get(f"/api/v1/keys/{body['id']}/"), client.get("/api/v1/keys/")):
        assert body["secret"] not in answer.content.decode()
        assert body["prefix"] in answer.content.decode()


def test_an_expiry_in_the_past_or_a_long_name_is_refused(bob, app):
    client = client_for(bob)
    past = (timezone.now() - timedelta(minutes=1)).isoformat()
    url = f"/api/v1/applications/{app.pk}/keys/"
    assert_error(client.post(url, {"expires_at": past}, format="json"), 400, "invalid_input")
    assert_error(client.post(url, {"name": "x" * 81}, format="json"), 400, "invalid_input")
    assert_error(client.post(url, {"expires_at": "next tuesday"}, format="json"), 400, "invalid_input")
    assert not ApiKey.objects.exists()


def test_keys_list_filters_by_application(bob, app, acme):
    other = client_for(bob).post("/api/v1/applications/", {"name": "Other"}, format="json").json()
    mine, _ = keys.create_api_key(app, actor=bob)
    client = client_for(bob)
    client.post(f"/api/v1/applications/{other['id']}/keys/", {}, format="json")
    assert [k["prefix"] for k in client.get("/api/v1/keys/", {"application": app.pk}).json()["results"]] == [
        mine.prefix
    ]
    assert len(client.get("/api/v1/keys/").json()["results"]) == 2
    assert client.get("/api/v1/keys/", {"application": "abc"}).json()["results"] == []


def test_rotation_returns_a_new_secret_and_keeps_the_old_one_for_the_grace_period(bob, app):
    old, old_secret = keys.create_api_key(app, actor=bob)
    rotated = client_for(bob).post(f"/api/v1/keys/{old.pk}/rotate/", {"grace_seconds": 600}, format="json")
    assert rotated.status_code == 201, rotated.content
    new = rotated.json()
    assert new["prefix"] != old.prefix and new["rotated_from"] == old.prefix
    assert keyformat.secret_matches(new["secret"], ApiKey.objects.get(pk=new["id"]).secret_hash)
    old.refresh_from_db()
    assert old.is_usable() and old.expires_at <= timezone.now() + timedelta(seconds=601)
    assert_error(client_for(bob).post(f"/api/v1/keys/{old.pk}/rotate/"), 409, "illegal_transition")


def test_rotation_without_a_grace_period_uses_the_setting(bob, app, settings):
    settings.PORTICO_KEY_ROTATION_GRACE_SECONDS = 3600
    old, _ = keys.create_api_key(app, actor=bob)
    assert client_for(bob).post(f"/api/v1/keys/{old.pk}/rotate/").status_code == 201
    old.refresh_from_db()
    assert timezone.now() + timedelta(minutes=59) < old.expires_at <= timezone.now() + timedelta(hours=1)


def test_a_negative_grace_period_is_a_clear_400(bob, app):
    old, _ = keys.create_api_key(app, actor=bob)
    response = client_for(bob).post(f"/api/v1/keys/{old.pk}/rotate/", {"grace_seconds": -1}, format="json")
    assert "grace_seconds" in assert_error(response, 400, "invalid_input")["fields"]
    assert ApiKey.objects.count() == 1


def test_revoking_stops_a_key_at_once_and_twice_is_a_conflict(bob, app):
    key, _ = keys.create_api_key(app, actor=bob)
    revoked = client_for(bob).post(f"/api/v1/keys/{key.pk}/revoke/")
    assert revoked.json()["state"] == "revoked" and parse_datetime(revoked.json()["revoked_at"])
    assert not ApiKey.objects.get(pk=key.pk).is_usable()
    assert_error(client_for(bob).post(f"/api/v1/keys/{key.pk}/revoke/"), 409, "illegal_transition")
    assert_error(client_for(bob).post(f"/api/v1/keys/{key.pk}/rotate/"), 409, "illegal_transition")
