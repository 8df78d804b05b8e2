"""Opt-in gateway behaviours, on a gateway started with them turned on: the API key in a
query parameter, and active health checks of upstream targets."""

import collections
import time

import pytest
from django.conf import settings

from portal.embedded_redis import free_port
from tests.gateway.conftest import GatewayProcess, start_upstream, stop

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

PROBE_INTERVAL = 0.2


@pytest.fixture(scope="module")
def gateway(django_db_setup, django_db_blocker, tmp_path_factory):
    """Overrides the harness's gateway for this module (``configure`` then uses this one)."""
    process = GatewayProcess(
        settings.REDIS_URL,
        tmp_path_factory.mktemp("gateway-options"),
        extra_env={
            "GATEWAY_KEY_QUERY_PARAM": "api_key",
            "GATEWAY_ACTIVE_HEALTH_PATH": "/count",
            "GATEWAY_ACTIVE_HEALTH_INTERVAL": str(PROBE_INTERVAL),
        },
    )
    process.start()
    yield process
    process.stop()


def test_key_in_the_enabled_query_parameter_is_accepted_and_not_forwarded(gateway, configure, upstream_a):
    config = configure([upstream_a])
    response = gateway.get(f"{config.base_path}/echo?a=1&api_key={config.key}&b=2")
    assert response.status_code == 200
    assert response.json()["path"] == "/echo?a=1&b=2"
    # Stripped even when a header carried the key.
    with_header = gateway.get(f"{config.base_path}/echo?api_key=other&c=3", config.key)
    assert with_header.status_code == 200 and with_header.json()["path"] == "/echo?c=3"
    wrong = gateway.get(f"{config.base_path}/echo?api_key={config.key_prefix}.wrong")
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"


def test_active_checks_eject_a_down_target_before_any_request_fails_and_readmit_it(gateway, configure, upstream_a):
    port = free_port()
    config = configure([upstream_a, f"http://127.0.0.1:{port}"], retries=0)
    time.sleep(3 * PROBE_INTERVAL)  # every worker has probed the down target by now
    served = [gateway.get(f"{config.base_path}/echo", config.key) for _ in range(20)]
    # With retries off, a request sent to the down target would be a 502: none was.
    assert [r.status_code for r in served] == [200] * 20
    assert {r.json()["upstream"] for r in served} == {"a"}

    process, _url = start_upstream("c", port=port)
    try:
        time.sleep(3 * PROBE_INTERVAL)  # readmitted by a probe, long before the passive cool-down ends
        counts = collections.Counter(
            gateway.get(f"{config.base_path}/echo", config.key).json()["upstream"] for _ in range(20)
        )
        assert counts["c"] >= 5, counts
    finally:
        stop(process)
