"""Personal access tokens: how a person authenticates to the management API."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from portal.models import PersonalAccessToken
from portal.services.tokens import create_access_token, revoke_access_token
from tests.api.conftest import assert_error, client_for

pytestmark = pytest.mark.django_db


def with_header(value: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=value)
    return client


def test_no_token_is_401_json_with_a_challenge():
    response = APIClient().get("/api/v1/applications/")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Token")


@pytest.mark.parametrize("header", ["Token pat_abcdefgh.nope", "Token nonsense", "Token a b", "Bearer pt_x.y", "Token"])
def test_a_malformed_or_unknown_token_is_401(header):
    assert_error(with_header(header).get("/api/v1/applications/"), 401, "not_authenticated")


def test_token_and_bearer_keywords_both_authenticate(alice, acme):
    _token, secret = create_access_token(actor=alice, name="cli")
    for keyword in ("Token", "Bearer", "bearer"):
        assert with_header(f"{keyword} {secret}").get("/api/v1/applications/").status_code == 200


def test_a_token_with_a_wrong_secret_but_a_real_prefix_is_401(alice):
    token, secret = create_access_token(actor=alice, name="cli")
    forged = f"{token.prefix}.{'A' * 43}"
    assert forged != secret
    assert_error(with_header(f"Token {forged}").get("/api/v1/tokens/"), 401, "not_authenticated")


def test_only_the_prefix_and_a_sha256_of_the_token_are_stored(alice):
    import hashlib

    token, secret = create_access_token(actor=alice, name="cli")
    stored = PersonalAccessToken.objects.get(pk=token.pk)
    assert secret.startswith(stored.prefix + ".") and stored.prefix.startswith("pat_")
    assert stored.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(PersonalAccessToken.objects.filter(pk=token.pk).values().get())


def test_revoked_expired_or_inactive_owner_tokens_are_401(alice, bob):
    token, secret = create_access_token(actor=alice, name="cli")
    revoke_access_token(token, actor=alice)
    assert_error(with_header(f"Token {secret}").get("/api/v1/tokens/"), 401, "not_authenticated")

    token, secret = create_access_token(actor=alice, name="short", expires_at=timezone.now() + timedelta(minutes=1))
    PersonalAccessToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert_error(with_header(f"Token {secret}").get("/api/v1/tokens/"), 401, "not_authenticated")

    _token, secret = create_access_token(actor=bob, name="cli")
    bob.is_active = False
    bob.save()
    assert_error(with_header(f"Token {secret}").get("/api/v1/tokens/"), 401, "not_authenticated")


def test_using_a_token_records_when_it_was_last_used(alice):
    token, secret = create_access_token(actor=alice, name="cli")
    assert token.last_used_at is None
    with_header(f"Token {secret}").get("/api/v1/tokens/")
    assert PersonalAccessToken.objects.get(pk=token.pk).last_used_at is not None


def test_create_access_token_command_prints_a_working_token(alice, acme):
    out = StringIO()
    call_command("create_access_token", "alice", "laptop", stdout=out)
    secret = out.getvalue().strip()
    assert secret.startswith("pat_")
    assert with_header(f"Token {secret}").get("/api/v1/applications/").status_code == 200
    assert PersonalAccessToken.objects.get(user=alice).name == "laptop"


def test_create_access_token_command_sets_an_expiry_when_asked(alice):
    call_command("create_access_token", "alice", "ci", "--expires-in-days", "7", stdout=StringIO())
    expires_at = PersonalAccessToken.objects.get(user=alice).expires_at
    assert timezone.now() + timedelta(days=6) < expires_at <= timezone.now() + timedelta(days=7)
    with pytest.raises(CommandError, match="future"):
        call_command("create_access_token", "alice", "old", "--expires-in-days", "0", stdout=StringIO())


def test_create_access_token_command_explains_a_bad_user_or_name(alice):
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        call_command("create_access_token", "nobody", "laptop", stdout=StringIO())
    with pytest.raises(CommandError, match="needs a name"):
        call_command("create_access_token", "alice", "  ", stdout=StringIO())
    alice.is_active = False
    alice.save()
    with pytest.raises(CommandError, match="not active"):
        call_command("create_access_token", "alice", "laptop", stdout=StringIO())


def test_token_endpoints_create_list_and_revoke_your_own_tokens(alice):
    client = client_for(alice)
    created = client.post("/api/v1/tokens/", {"name": "ci"}, format="json")
    assert created.status_code == 201 and created["Cache-Control"] == "no-store"
    secret = created.json()["secret"]
    assert with_header(f"Bearer {secret}").get("/api/v1/tokens/").status_code == 200

    listed = client.get("/api/v1/tokens/").json()["results"]
    assert {t["name"] for t in listed} == {"tests", "ci"}
    assert all("secret" not in t for t in listed)

    revoked = client.post(f"/api/v1/tokens/{created.json()['id']}/revoke/")
    assert revoked.json()["state"] == "revoked"
    assert_error(with_header(f"Bearer {secret}").get("/api/v1/tokens/"), 401, "not_authenticated")
    assert_error(client.post(f"/api/v1/tokens/{created.json()['id']}/revoke/"), 409, "illegal_transition")


def test_a_token_needs_a_name_and_a_future_expiry(alice):
    client = client_for(alice)
    assert_error(client.post("/api/v1/tokens/", {"name": " "}, format="json"), 400, "invalid_input")
    past = (timezone.now() - timedelta(days=1)).isoformat()
    assert_error(client.post("/api/v1/tokens/", {"name": "x", "expires_at": past}, format="json"), 400, "invalid_input")


def test_another_persons_tokens_are_invisible(alice, bob):
    theirs, _secret = create_access_token(actor=bob, name="bob's laptop")
    client = client_for(alice)
    assert [t["name"] for t in client.get("/api/v1/tokens/").json()["results"]] == ["tests"]
    assert_error(client.get(f"/api/v1/tokens/{theirs.pk}/"), 404, "not_found")
    assert_error(client.post(f"/api/v1/tokens/{theirs.pk}/revoke/"), 404, "not_found")
    assert PersonalAccessToken.objects.get(pk=theirs.pk).revoked_at is None
