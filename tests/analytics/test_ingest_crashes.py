"""An ingester killed at any point and started again loses no call and stores none twice,
on SQLite and on PostgreSQL: killed between reading and inserting, between committing and
acknowledging, and a real Celery worker killed in the middle of a big backlog."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.test import override_settings

from analytics.ingest import ingest_call_logs
from analytics.models import CallLog
from tests.analytics.ingest_stream import fill, new_stream_name, pending, stored_ids

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stream(redis_client):
    name = new_stream_name()
    with override_settings(PORTICO_CALL_LOG_STREAM=name):
        yield name
    redis_client.delete(name)


def env_for(backend, stream: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": backend.database_url, "PORTICO_CALL_LOG_STREAM": stream}


def assert_stored_once(backend, redis_client, stream: str, sent: set[str]) -> None:
    ids = stored_ids(backend.alias)
    assert len(ids) == len(set(ids)) and set(ids) == sent, (len(ids), len(sent - set(ids)))
    assert redis_client.xlen(stream) == 0 and pending(redis_client, stream) == 0


@pytest.mark.parametrize(
    "where,stored_before_restart",
    [("after-read", 2 * 2 * 100), ("before-ack", 3 * 2 * 100)],  # batches of 2 entries of 100 records
)
def test_an_ingester_killed_mid_batch_and_restarted_loses_and_doubles_nothing(
    backend, redis_client, stream, where, stored_before_restart
):
    sent = fill(redis_client, stream, entries=10, per_entry=100)
    crashed = subprocess.run(
        [sys.executable, "-m", "tests.analytics.crashing_ingest", where, "3", "2"],
        cwd=ROOT,
        env=env_for(backend, stream),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stdout + crashed.stderr[-3000:]
    # What the dead ingester left: its third read pending, its rows committed or not.
    assert CallLog.objects.using(backend.alias).count() == stored_before_restart
    assert pending(redis_client, stream) == 2
    # A new ingester takes the dead one's entries over once they are idle (0 ms here).
    assert ingest_call_logs(using=backend.alias, claim_idle_ms=0) == len(sent) - stored_before_restart
    assert_stored_once(backend, redis_client, stream, sent)


def start_worker(backend, stream: str, queue: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "-P", "solo", "-Q", queue]
        + ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "info"],
        cwd=ROOT,
        env=env_for(backend, stream),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} within {timeout}s")


def test_a_celery_worker_killed_mid_backlog_and_restarted_loses_and_doubles_nothing(
    backend, redis_client, stream, tmp_path
):
    from portal.celery import app

    sent = fill(redis_client, stream, entries=300, per_entry=250)
    queue = f"test-ingest-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "worker.log"
    count = CallLog.objects.using(backend.alias).count
    task = {"kwargs": {"max_seconds": 120, "claim_idle_ms": 0}, "queue": queue}

    first = start_worker(backend, stream, queue, log)
    try:
        app.send_task("analytics.ingest_call_logs", **task)
        wait_until(lambda: count() > 0, 60, f"the first worker stored nothing ({log.read_text()[-2000:]})")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    stored_by_first = count()
    assert 0 < stored_by_first < len(sent), "the worker was not killed mid-backlog: use a bigger one"
    assert pending(redis_client, stream) > 0 or redis_client.xlen(stream) > 0

    second = start_worker(backend, stream, queue, log)
    try:
        app.send_task("analytics.ingest_call_logs", **task)
        wait_until(
            lambda: redis_client.xlen(stream) == 0 and pending(redis_client, stream) == 0,
            120,
            f"the second worker did not drain the stream ({log.read_text()[-2000:]})",
        )
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=30)
    assert_stored_once(backend, redis_client, stream, sent)
