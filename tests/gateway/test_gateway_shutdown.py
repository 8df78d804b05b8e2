"""Stopping or reloading the gateway drops no in-flight request and no call record."""

import signal
import threading
import time

import pytest
import requests
from django.conf import settings

from gateway.calllog import records_of
from tests.gateway.conftest import GatewayProcess

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGHUP"])
def test_in_flight_requests_finish_when_the_gateway_stops_or_reloads(
    configure, upstream_a, tmp_path, redis_client, signal_name
):
    isolated = GatewayProcess(settings.REDIS_URL, tmp_path)
    isolated.start()
    try:
        config = configure([upstream_a])
        isolated.wait_for_config()
        results = {}

        def slow_call():
            response = requests.get(
                f"{isolated.url}{config.base_path}/slow?ms=1500", headers={"X-API-Key": config.key}, timeout=10
            )
            results["status"] = response.status_code
            results["id"] = response.headers["X-Request-ID"]

        caller = threading.Thread(target=slow_call)
        caller.start()
        time.sleep(0.5)  # the request is now waiting on the upstream
        isolated.process.send_signal(getattr(signal, signal_name))
        caller.join(timeout=10)
        assert results.get("status") == 200

        deadline = time.monotonic() + 5
        logged = set()
        while time.monotonic() < deadline and results["id"] not in logged:
            logged = {r["request_id"] for _i, f in redis_client.xrange("portico:calls") for r in records_of(f)}
            time.sleep(0.1)
        assert results["id"] in logged
    finally:
        isolated.stop()
