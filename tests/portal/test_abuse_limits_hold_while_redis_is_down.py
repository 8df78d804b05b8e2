"""While Redis is away, the portal's abuse limits count in each process instead of letting
everything through: brute force on log-in, sign-up and password reset stays bounded, and
nobody gets a 500. Redis is really away here: the cache points at a closed port, or at a
server that accepts connections and never answers."""

import itertools
import socket
import threading

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import caches
from django.urls import reverse

from portal.embedded_redis import free_port
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

_addresses = (f"10.3.{n // 250}.{n % 250 + 1}" for n in itertools.count())


def forget_outages() -> None:
    """The fallback store is one per process: forget what other tests' outages counted."""
    fallback = getattr(caches["default"], "fallback", None)
    if fallback is not None:
        fallback.clear()


@pytest.fixture
def outage(cache_down):
    forget_outages()
    yield
    forget_outages()


def test_an_account_locks_after_10_failed_log_ins_from_anywhere(client, alice, bob, outage):
    def attempt(username, password):
        data = {"username": username, "password": password}
        return client.post(reverse("login"), data, REMOTE_ADDR=next(_addresses))

    assert [attempt("alice", "wrong").status_code for _ in range(10)] == [200] * 10
    assert attempt("alice", "wrong").status_code == 429
    assert attempt(" Alice", PASSWORD).status_code == 429 and "_auth_user_id" not in client.session
    assert attempt("bob", PASSWORD).status_code == 302  # others are not locked out with her


def test_one_address_is_limited_to_20_log_ins_a_minute(client, alice, outage):
    statuses = [
        client.post(reverse("login"), {"username": f"user{n}", "password": "x"}, REMOTE_ADDR="10.9.9.9").status_code
        for n in range(21)
    ]
    assert statuses == [200] * 20 + [429]


def test_sign_ups_from_one_address_stop_after_10_an_hour(client, outage):
    def sign_up(n):
        data = {"username": f"new{n}", "email": f"new{n}@example.com", "password1": PASSWORD, "password2": PASSWORD}
        response = client.post(reverse("signup"), data, REMOTE_ADDR="10.8.8.8")
        client.logout()
        return response.status_code

    assert [sign_up(n) for n in range(11)] == [302] * 10 + [429]
    assert get_user_model().objects.filter(username__startswith="new").count() == 10


def test_password_resets_from_one_address_stop_after_5_an_hour(client, alice, outage, mailoutbox):
    statuses = [
        client.post(reverse("password_reset"), {"email": f"x{n}@example.com"}, REMOTE_ADDR="10.7.7.7").status_code
        for n in range(6)
    ]
    assert statuses == [302] * 5 + [429]


@pytest.fixture
def silent_redis(settings, monkeypatch):
    """A TCP server that accepts connections and never answers; counts the connections.
    (The cache leaves Redis alone for longer than this test can take, however slow the machine.)"""
    monkeypatch.setattr("portal.cache.RETRY_SECONDS", 600.0)
    listener = socket.create_server(("127.0.0.1", free_port()))
    accepted: list[socket.socket] = []

    def accept():
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    port = listener.getsockname()[1]
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {"socket_connect_timeout": 0.3, "socket_timeout": 0.3},
        }
    }
    forget_outages()
    yield accepted
    listener.close()
    for connection in accepted:
        connection.close()
    forget_outages()


def test_a_redis_that_never_answers_is_left_alone_and_the_limit_still_holds(client, alice, silent_redis):
    def attempt():
        data = {"username": "alice", "password": "wrong"}
        return client.post(reverse("login"), data, REMOTE_ADDR=next(_addresses)).status_code

    assert attempt() == 200
    connections_after_the_first = len(silent_redis)
    assert connections_after_the_first >= 1
    assert [attempt() for _ in range(10)] == [200] * 9 + [429]
    # Every later counter was served by the process without waiting on Redis again.
    assert len(silent_redis) == connections_after_the_first
