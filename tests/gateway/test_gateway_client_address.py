"""Client addresses behind proxies, and failed-key limiting by address.

The gateway here trusts 127.0.0.2 as a proxy: only from it is X-Forwarded-For believed,
and then the client is the rightmost address in the chain that is not a trusted proxy. An
untrusted peer's X-Forwarded-For is dropped, not extended. The failed-key limiter counts
by that client address, and a valid key passes even from an address blocked for bad keys.
"""

import pytest
from django.conf import settings

from tests.gateway.conftest import GatewayProcess
from tests.gateway.rawhttp import build_request, exchange, find_call_record

pytestmark = [pytest.mark.gateway, pytest.mark.django_db(transaction=True)]

PROXY = "127.0.0.2"
ALLOWED_FAILURES = 5


@pytest.fixture(scope="module")
def gateway(django_db_setup, django_db_blocker, tmp_path_factory):
    """This module's gateway (``configure`` uses it): 127.0.0.2 is a trusted proxy, and five
    failed keys a minute are allowed per client address."""
    process = GatewayProcess(
        settings.REDIS_URL,
        tmp_path_factory.mktemp("gateway-proxied"),
        extra_env={
            "GATEWAY_TRUSTED_PROXIES": f"{PROXY}/32",
            "GATEWAY_AUTH_FAILURES_PER_MINUTE": str(ALLOWED_FAILURES),
        },
    )
    process.start()
    yield process
    process.stop()


def call(gateway, config, *, source: str, forwarded_for: str | None = None, key: str | None = None):
    headers = [("X-API-Key", config.key if key is None else key)]
    if forwarded_for is not None:
        headers.append(("X-Forwarded-For", forwarded_for))
    return exchange(gateway.port, build_request("GET", f"{config.base_path}/echo", headers), source=source)


def forwarded_for_upstream(answer) -> list[str]:
    return [value for name, value in answer.json()["header_list"] if name.lower() == "x-forwarded-for"]


def client_ip_of(redis_client, answer) -> str:
    return find_call_record(redis_client, answer.header("x-request-id"))["client_ip"]


def test_behind_a_trusted_proxy_the_client_is_the_forwarded_address(gateway, configure, upstream_a, redis_client):
    config = configure([upstream_a])
    answer = call(gateway, config, source=PROXY, forwarded_for="203.0.113.7")
    assert answer.status == 200, answer
    assert forwarded_for_upstream(answer) == ["203.0.113.7, 127.0.0.2"]
    assert client_ip_of(redis_client, answer) == "203.0.113.7"


def test_an_untrusted_peers_forwarded_for_claim_is_dropped(gateway, configure, upstream_a, redis_client):
    config = configure([upstream_a])
    answer = call(gateway, config, source="127.0.0.1", forwarded_for="203.0.113.7")
    assert answer.status == 200, answer
    assert forwarded_for_upstream(answer) == ["127.0.0.1"]
    assert client_ip_of(redis_client, answer) == "127.0.0.1"


@pytest.mark.parametrize(
    ("chain", "client"),
    [
        ("198.51.100.1, 127.0.0.2", "198.51.100.1"),
        ("6.6.6.6, 198.51.100.1", "198.51.100.1"),
        ("6.6.6.6,198.51.100.1,127.0.0.2", "198.51.100.1"),
    ],
)
def test_in_a_forwarded_chain_the_client_is_the_rightmost_untrusted_address(
    gateway, configure, upstream_a, redis_client, chain, client
):
    config = configure([upstream_a])
    answer = call(gateway, config, source=PROXY, forwarded_for=chain)
    assert answer.status == 200, answer
    assert client_ip_of(redis_client, answer) == client
    (forwarded,) = forwarded_for_upstream(answer)
    assert client in forwarded and forwarded.endswith("127.0.0.2")


def bad_key_statuses(gateway, config, times: int, **where) -> list[tuple[int, str | None]]:
    answers = [call(gateway, config, key=config.key_prefix + ".wrong", **where) for _ in range(times)]
    return [(a.status, a.error_code) for a in answers]


BLOCKED = [(401, "invalid_api_key")] * ALLOWED_FAILURES + [(429, "too_many_auth_failures")] * 3


def test_a_valid_key_passes_from_an_address_blocked_for_bad_keys(gateway, configure, upstream_a):
    config = configure([upstream_a])
    # New connections each time: both workers see failures past the allowance.
    assert bad_key_statuses(gateway, config, ALLOWED_FAILURES + 3, source="127.0.0.3") == BLOCKED
    assert bad_key_statuses(gateway, config, 2, source="127.0.0.3") == [(429, "too_many_auth_failures")] * 2
    statuses = [call(gateway, config, source="127.0.0.3").status for _ in range(6)]
    assert statuses == [200] * 6, "a valid key was refused because its address guessed keys before"
    assert bad_key_statuses(gateway, config, 1, source="127.0.0.3") == [(429, "too_many_auth_failures")]


def test_two_clients_behind_one_trusted_proxy_are_limited_separately(gateway, configure, upstream_a):
    # Last in the module: on a gateway that limits by peer, this blocks the proxy itself.
    config = configure([upstream_a])
    first = {"source": PROXY, "forwarded_for": "198.51.100.10"}
    second = {"source": PROXY, "forwarded_for": "198.51.100.11"}
    assert bad_key_statuses(gateway, config, ALLOWED_FAILURES + 3, **first) == BLOCKED
    assert bad_key_statuses(gateway, config, 1, **second) == [(401, "invalid_api_key")]
    assert call(gateway, config, **second).status == 200
    assert call(gateway, config, **first).status == 200  # a valid key passes for the blocked one too
