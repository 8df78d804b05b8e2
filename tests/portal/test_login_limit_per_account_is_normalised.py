"""The per-account log-in limit counts the name as the log-in form reads it (NFKC, stripped)
and case-folded, so spellings of one name share one counter: while alice is locked out,
none of " alice", "alice ", "ａｌｉｃｅ" or "ALICE" gets in, even with her password."""

import itertools

import pytest
from django.urls import reverse

from portal.ratelimits import normalized_name
from tests.conftest import PASSWORD
from tests.portal.ratelimit_helpers import clear_counters, start_of_a_fresh_window

pytestmark = pytest.mark.django_db

VARIANTS = [" alice", "alice ", "\talice\n", "ａｌｉｃｅ", "\u3000alice", "ALICE", "Alice", "ＡＬＩＣＥ "]
_addresses = (f"10.1.{n // 250}.{n % 250 + 1}" for n in itertools.count())


def attempt(client, username: str, password: str):
    """One log-in from a new client address, so only the per-account limit can refuse it."""
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=next(_addresses))


@pytest.fixture
def fresh_limits(redis_client):
    clear_counters(redis_client)
    start_of_a_fresh_window("alice", 60)


def test_every_spelling_of_a_name_reads_as_that_name():
    assert {normalized_name(v) for v in VARIANTS} == {"alice"}
    assert normalized_name("ﬁ") == "fi" and normalized_name("STRASSE") == normalized_name("straße")


def test_a_padded_or_full_width_name_logs_in_as_the_real_account(client, alice, fresh_limits):
    # Why the limit must fold spellings: the form itself turns them into alice.
    response = attempt(client, "ａｌｉｃｅ ", PASSWORD)
    assert response.status_code == 302 and client.session["_auth_user_id"] == str(alice.pk)


def test_while_the_real_name_is_locked_no_spelling_of_it_logs_in(client, alice, fresh_limits):
    assert [attempt(client, "alice", "wrong").status_code for _ in range(10)] == [200] * 10
    for variant in VARIANTS:
        response = attempt(client, variant, PASSWORD)
        assert response.status_code == 429, variant
        assert "_auth_user_id" not in client.session, variant
    assert attempt(client, "alice", PASSWORD).status_code == 429


def test_spellings_add_up_to_one_lockout(client, alice, fresh_limits):
    statuses = [attempt(client, variant, "wrong").status_code for variant in [*VARIANTS, "alice", "alice", "alice"]]
    assert statuses[:10] == [200] * 10 and statuses[10] == 429
    assert attempt(client, "alice", PASSWORD).status_code == 429


def test_another_account_is_not_locked_with_her(client, alice, bob, fresh_limits):
    for _ in range(11):
        attempt(client, "alice", "wrong")
    assert attempt(client, "bob", PASSWORD).status_code == 302
