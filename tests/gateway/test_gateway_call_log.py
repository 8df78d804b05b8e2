"""Every call leaves exactly one record, even across a Redis outage, and lands in CallLog."""

import concurrent.futures
import os
import signal
import subprocess
import threading
import time

import pytest
import redis as redis_lib
import requests
from django.conf import settings

from analytics.ingest import ingest_call_logs
from analytics.models import CallLog
from gateway.calllog import records_of
from portal import embedded_redis
from tests.gateway.conftest import GatewayProcess

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

STREAM = "portico:calls"


def stream_ids(client) -> list[str]:
    return [r["request_id"] for _id, fields in client.xrange(STREAM) for r in records_of(fields)]


def wait_for_ids(client, expected: set[str], timeout: float = 10.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = stream_ids(client)
        if expected <= set(ids):
            return ids
        time.sleep(0.1)
    return stream_ids(client)


def mixed_traffic(gateway, config, n: int) -> set[str]:
    """n calls with every kind of outcome; returns the request ids the gateway answered with."""
    paths = [
        (f"{config.base_path}/echo", config.key),  # 200
        (f"{config.base_path}/echo", None),  # 401
        ("/nowhere", config.key),  # 404
        (f"{config.base_path}/status/503", config.key),  # upstream 503
    ]

    def one(i):
        path, key = paths[i % len(paths)]
        headers = {"X-API-Key": key} if key else {}
        return requests.get(f"{gateway.url}{path}", headers=headers, timeout=10).headers["X-Request-ID"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        return set(pool.map(one, range(n)))


def test_every_request_is_in_the_stream_exactly_once(gateway, configure, upstream_a, redis_client):
    config = configure([upstream_a], plan={"requests_per_second": 1000})
    redis_client.delete(STREAM)
    sent = mixed_traffic(gateway, config, 200)
    assert len(sent) == 200
    ids = wait_for_ids(redis_client, sent)
    assert sent <= set(ids)
    assert len(ids) == len(set(ids)), "a record was written twice"


def test_records_carry_who_what_and_how_long(gateway, configure, upstream_a, redis_client):
    config = configure([upstream_a])
    redis_client.delete(STREAM)
    request_id = gateway.get(f"{config.base_path}/echo?x=1", config.key).headers["X-Request-ID"]
    wait_for_ids(redis_client, {request_id})
    record = next(r for _i, f in redis_client.xrange(STREAM) for r in records_of(f) if r["request_id"] == request_id)
    assert record["status"] == 200 and record["method"] == "GET" and record["path"] == f"{config.base_path}/echo"
    assert record["key_prefix"] == config.key_prefix and record["application_id"] == config.application.pk
    assert record["tenant_id"] == config.application.tenant_id and record["api_id"] == config.api.pk
    assert record["latency_ms"] >= record["upstream_latency_ms"] > 0 and record["bytes_out"] > 0


def test_ingestion_turns_the_stream_into_call_logs_idempotently(gateway, configure, upstream_a, redis_client):
    config = configure([upstream_a])
    redis_client.delete(STREAM)
    sent = mixed_traffic(gateway, config, 40)
    wait_for_ids(redis_client, sent)
    stored = ingest_call_logs()
    assert stored == 40
    assert set(CallLog.objects.values_list("request_id", flat=True)) == sent
    assert ingest_call_logs() == 0 and CallLog.objects.count() == 40
    statuses = set(CallLog.objects.values_list("status", flat=True))
    assert statuses == {200, 401, 404, 503}
    config.application.keys.get().refresh_from_db()
    assert config.application.keys.get().last_used_at is not None


def test_a_redis_stop_and_start_during_traffic_loses_no_call_record(configure, upstream_a, tmp_path):
    # A gateway of its own, on a Redis this test can stop and start on the same port. The
    # Redis persists (as production's must), so what it held before the stop is still there.
    port = embedded_redis.free_port()
    own_redis = embedded_redis.start(port, tmp_path / "redis", persist=True)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis_lib.Redis.from_url(url)
    isolated = GatewayProcess(url, tmp_path)
    isolated.start()
    try:
        config = configure([upstream_a])  # its config version is bumped on the session Redis...
        client.incr("portico:config:version")  # ...so tell this gateway too
        isolated.wait_for_config(int(client.get("portico:config:version")))
        before = mixed_traffic(isolated, config, 40)

        own_redis.terminate()
        own_redis.wait(timeout=10)
        during = mixed_traffic(isolated, config, 40)  # limits fail open, records are spooled

        own_redis = embedded_redis.start(port, tmp_path / "redis", persist=True)
        after = mixed_traffic(isolated, config, 40)
        everything = before | during | after
        assert len(everything) == 120
        ids = wait_for_ids(client, everything, timeout=15)
        missing = everything - set(ids)
        assert not missing, (len(missing & before), len(missing & during), len(missing & after))
        assert len(ids) == len(set(ids)), "a record was written twice"
    finally:
        isolated.stop()
        own_redis.terminate()
        own_redis.wait(timeout=10)


def test_a_worker_killed_under_load_loses_no_answered_call_record(configure, upstream_a, tmp_path):
    # A gateway of its own (its workers are killed), on the session's Redis and stream.
    isolated = GatewayProcess(settings.REDIS_URL, tmp_path)
    isolated.start()
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    try:
        config = configure([upstream_a])
        isolated.wait_for_config()
        client.delete(STREAM)
        workers = [int(pid) for pid in subprocess.check_output(["pgrep", "-P", str(isolated.process.pid)]).split()]
        assert len(workers) == 2
        answered: list[list[str]] = [[] for _ in range(6)]
        stop_at = time.monotonic() + 5.0

        def load(n: int) -> None:
            session = requests.Session()
            url = f"{isolated.url}{config.base_path}/echo"
            for i in range(1500):  # bounded in count and in time
                if time.monotonic() > stop_at:
                    return
                try:
                    answer = session.get(url, headers={"X-API-Key": config.key} if i % 5 else {}, timeout=5)
                except requests.RequestException:  # the killed worker's connections
                    session = requests.Session()
                    continue
                if answer.status_code < 500:
                    answered[n].append(answer.headers["X-Request-ID"])

        threads = [threading.Thread(target=load, args=(n,)) for n in range(len(answered))]
        for thread in threads:
            thread.start()
        time.sleep(2.0)
        os.kill(workers[0], signal.SIGKILL)
        for thread in threads:
            thread.join(timeout=15)
        sent = {request_id for ids in answered for request_id in ids}
        assert len(sent) == sum(map(len, answered)) > 1000

        replacement = set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not replacement:
            pids = subprocess.check_output(["pgrep", "-P", str(isolated.process.pid)]).split()
            replacement = {int(pid) for pid in pids} - set(workers)
            time.sleep(0.1)
        assert replacement, "gunicorn did not replace the killed worker"

        ids = wait_for_ids(client, sent, timeout=15)
        missing = sent - set(ids)
        # A call is appended to the worker's ring before its answer's last byte is written, so
        # no answered call may be missing, however the kill falls.
        assert not missing, f"{len(missing)} of {len(sent)} answered calls have no record"
        assert len(ids) == len(set(ids)), "a record was written twice"
        print(f"answered {len(sent)}, records {len(ids)}, missing {len(missing)}")
    finally:
        isolated.stop()
