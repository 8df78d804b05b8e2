"""The portal page where a person creates (sees once), lists and revokes their access tokens."""

import re

import pytest
from django.test import Client
from rest_framework.test import APIClient

from portal.models import PersonalAccessToken
from portal.services.tokens import create_access_token

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_signed_out_people_are_sent_to_log_in():
    response = Client().get("/account/tokens/")
    assert response.status_code == 302 and "/accounts/login" in response["Location"]


def test_a_new_token_is_shown_once_with_a_copy_button_and_works(alice, acme):
    client = signed_in(alice)
    page = client.post("/account/tokens/", {"name": "laptop", "expires_in": "30"})
    html = page.content.decode()
    assert page.status_code == 200 and page["Cache-Control"] == "no-store"
    assert "only time it is shown" in html and "Copy" in html
    secret = re.search(r'id="secret">(pat_[^<]+)<', html).group(1)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    assert api.get("/api/v1/applications/").status_code == 200

    listing = client.get("/account/tokens/").content.decode()
    assert PersonalAccessToken.objects.get(user=alice).prefix in listing and secret not in listing


def test_a_token_needs_a_name(alice):
    page = signed_in(alice).post("/account/tokens/", {"name": "", "expires_in": ""})
    assert page.status_code == 200 and "errorlist" in page.content.decode()
    assert not PersonalAccessToken.objects.exists()


def test_revoking_from_the_page_stops_the_token(alice):
    token, secret = create_access_token(actor=alice, name="old")
    response = signed_in(alice).post(f"/account/tokens/{token.pk}/revoke/", follow=True)
    assert "revoked" in response.content.decode()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {secret}")
    assert api.get("/api/v1/tokens/").status_code == 401


def test_another_persons_token_is_404_on_the_page(alice, bob):
    theirs, _secret = create_access_token(actor=bob, name="bob's")
    assert signed_in(alice).post(f"/account/tokens/{theirs.pk}/revoke/").status_code == 404
    assert "bob&#x27;s" not in signed_in(alice).get("/account/tokens/").content.decode()
    assert PersonalAccessToken.objects.get(pk=theirs.pk).revoked_at is None
