"""A Redis outage while the gateway takes traffic and the ingester runs ends with every call
stored once, on SQLite and on PostgreSQL: the gateway spools while Redis is away and
replays after, the ingester waits and carries on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as redis_lib

from analytics.models import CallLog
from portal import embedded_redis
from tests.gateway.conftest import GatewayProcess, configure, gateway, upstream_a  # noqa: F401 - fixtures
from tests.gateway.test_gateway_call_log import mixed_traffic

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

ROOT = Path(__file__).resolve().parents[2]


def test_a_redis_outage_during_traffic_ends_with_every_call_stored_once(
    backend,
    configure,  # noqa: F811
    upstream_a,  # noqa: F811
    tmp_path,
):
    port = embedded_redis.free_port()
    own_redis = embedded_redis.start(port, tmp_path / "redis", persist=True)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis_lib.Redis.from_url(url)
    isolated = GatewayProcess(url, tmp_path)
    isolated.start()
    ingester = subprocess.Popen(
        [sys.executable, "manage.py", "ingest_call_logs", "--follow", "--claim-idle-ms", "2000"],
        cwd=ROOT,
        env={**os.environ, "REDIS_URL": url, "DATABASE_URL": backend.database_url},
        stdout=(tmp_path / "ingest.log").open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        config = configure([upstream_a])  # its config version is bumped on the session Redis...
        client.incr("portico:config:version")  # ...so tell this gateway too
        isolated.wait_for_config(int(client.get("portico:config:version")))
        before = mixed_traffic(isolated, config, 60)

        own_redis.terminate()
        own_redis.wait(timeout=10)
        during = mixed_traffic(isolated, config, 60)  # the gateway spools; the ingester waits
        time.sleep(1.5)  # the ingester meets the outage too
        own_redis = embedded_redis.start(port, tmp_path / "redis", persist=True)
        after = mixed_traffic(isolated, config, 60)

        everything = before | during | after
        assert len(everything) == 180
        stored = CallLog.objects.using(backend.alias).values_list("request_id", flat=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and set(stored.all()) != everything:
            time.sleep(0.2)
        ids = list(stored.all())
        missing = everything - set(ids)
        assert not missing, (len(missing & before), len(missing & during), len(missing & after))
        assert len(ids) == len(set(ids)) == 180
        assert ingester.poll() is None, (tmp_path / "ingest.log").read_text()[-3000:]
    finally:
        ingester.send_signal(signal.SIGTERM)
        ingester.wait(timeout=30)
        isolated.stop()
        client.close()
        if own_redis.poll() is None:
            own_redis.terminate()
            own_redis.wait(timeout=10)
