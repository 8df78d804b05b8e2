"""Password-reset e-mails are limited per address as well as per client: from many client
addresses, spellings of one address still share one counter (no mail-bombing an inbox)."""

import itertools

import pytest
from django.urls import reverse

from tests.portal.ratelimit_helpers import clear_counters, start_of_a_fresh_window

pytestmark = pytest.mark.django_db

_addresses = (f"10.2.{n // 250}.{n % 250 + 1}" for n in itertools.count())


def test_reset_mails_to_one_address_stop_after_five_an_hour(client, alice, redis_client, mailoutbox):
    clear_counters(redis_client)
    start_of_a_fresh_window("alice@example.com", 3600)
    spellings = [
        "alice@example.com",
        " Alice@Example.com",
        "ALICE@EXAMPLE.COM ",
        "alice@EXAMPLE.com",
        "alice@example.com",
    ]
    for email in spellings:
        response = client.post(reverse("password_reset"), {"email": email}, REMOTE_ADDR=next(_addresses))
        assert response.status_code == 302, email
    refused = client.post(reverse("password_reset"), {"email": "Alice@example.com"}, REMOTE_ADDR=next(_addresses))
    assert refused.status_code == 429
    assert 1 <= len(mailoutbox) <= 5 and all(m.to == ["alice@example.com"] for m in mailoutbox)
    other = client.post(reverse("password_reset"), {"email": "bob@example.com"}, REMOTE_ADDR=next(_addresses))
    assert other.status_code == 302
