"""Key rotation and personal-access-token creation are limited like key creation: per person
and per client address, in the console and over the REST API (each on its own counters)."""

import pytest
from django.urls import reverse

from portal.models import ApiKey, PersonalAccessToken
from portal.services import keys
from tests.api.conftest import assert_error, client_for
from tests.portal.ratelimit_helpers import clear_counters, start_of_a_fresh_window

pytestmark = pytest.mark.django_db


@pytest.fixture
def fresh_limits(redis_client, bob):
    clear_counters(redis_client)
    start_of_a_fresh_window(str(bob.pk), 3600)
    start_of_a_fresh_window("127.0.0.1", 3600)


def issued_keys(app, bob, count: int) -> list[ApiKey]:
    return [keys.create_api_key(app, actor=bob, name=f"k{n}")[0] for n in range(count)]


def test_a_person_rotates_at_most_30_keys_an_hour_in_the_console(client, app, bob, fresh_limits):
    client.force_login(bob)
    to_rotate = issued_keys(app, bob, 31)
    statuses = [client.post(reverse("key_rotate", args=[app.pk, key.pk])).status_code for key in to_rotate]
    assert statuses == [200] * 30 + [429]
    assert not hasattr(ApiKey.objects.get(pk=to_rotate[-1].pk), "rotated_to")
    assert ApiKey.objects.filter(rotated_from__isnull=False).count() == 30


def test_rotations_count_per_address_across_people(client, app, alice, bob, fresh_limits):
    to_rotate = issued_keys(app, bob, 61)
    for person, batch in ((alice, to_rotate[:30]), (bob, to_rotate[30:60])):
        client.force_login(person)
        assert {client.post(reverse("key_rotate", args=[app.pk, k.pk])).status_code for k in batch} == {200}
    assert client.post(reverse("key_rotate", args=[app.pk, to_rotate[60].pk])).status_code == 429


def test_a_person_creates_at_most_20_access_tokens_an_hour_in_the_console(client, bob, fresh_limits):
    client.force_login(bob)
    statuses = [
        client.post(reverse("access_tokens"), {"name": f"t{n}", "expires_in": "30"}).status_code for n in range(21)
    ]
    assert statuses == [200] * 20 + [429]
    assert PersonalAccessToken.objects.filter(user=bob).count() == 20
    assert client.get(reverse("access_tokens")).status_code == 200  # reading the page is not limited


def test_rest_rotation_is_limited_per_user_with_a_json_429(app, bob, fresh_limits):
    api = client_for(bob)
    to_rotate = issued_keys(app, bob, 31)
    for key in to_rotate[:30]:
        assert api.post(f"/api/v1/keys/{key.pk}/rotate/", {}, format="json").status_code == 201
    error = assert_error(api.post(f"/api/v1/keys/{to_rotate[30].pk}/rotate/", {}, format="json"), 429, "rate_limited")
    assert "keys rotated" in error["message"] and "per user" in error["message"]
    assert not hasattr(ApiKey.objects.get(pk=to_rotate[30].pk), "rotated_to")


def test_rest_token_creation_is_limited_per_user_with_a_json_429(bob, fresh_limits):
    api = client_for(bob)  # made by the service, not counted
    for n in range(20):
        assert api.post("/api/v1/tokens/", {"name": f"t{n}"}, format="json").status_code == 201
    error = assert_error(api.post("/api/v1/tokens/", {"name": "one more"}, format="json"), 429, "rate_limited")
    assert "access tokens created" in error["message"] and "per user" in error["message"]
    assert PersonalAccessToken.objects.filter(user=bob).count() == 21


def test_key_creation_in_the_console_keeps_its_limit(client, app, bob, fresh_limits):
    client.force_login(bob)
    statuses = [client.post(reverse("key_create", args=[app.pk]), {"name": f"k{n}"}).status_code for n in range(31)]
    assert statuses == [200] * 30 + [429]
    assert ApiKey.objects.filter(application=app).count() == 30
