"""Ingesting the call-log stream into CallLog rows: idempotent, and nothing stranded by a dead consumer."""

import time
import uuid

import orjson
import pytest
from django.test import override_settings

from analytics.ingest import GROUP, ingest_call_logs
from analytics.models import CallLog

pytestmark = pytest.mark.django_db


def record(request_id, **extra):
    return {
        "request_id": request_id,
        "time": time.time(),
        "api_id": 1,
        "version_id": 2,
        "tenant_id": 3,
        "application_id": 4,
        "key_prefix": "",
        "method": "GET",
        "path": "/v1/echo",
        "status": 200,
        "latency_ms": 1.5,
        "upstream_latency_ms": 1.0,
        "bytes_in": 0,
        "bytes_out": 12,
        "cache_hit": 0,
        "error_code": None,
        "client_ip": "127.0.0.1",
        **extra,
    }


@pytest.fixture
def stream(redis_client):
    name = f"test:calls:{uuid.uuid4().hex}"
    with override_settings(PORTICO_CALL_LOG_STREAM=name):
        yield name
    redis_client.delete(name)


def add(redis_client, stream, records):
    """As the gateway writes them: one stream entry per batch."""
    redis_client.xadd(stream, {"b": orjson.dumps(records)})


def test_stream_entries_become_call_log_rows_and_leave_the_stream(redis_client, stream):
    add(redis_client, stream, [record("a1", status=200), record("a2", status=429, error_code="rate_limited")])
    assert ingest_call_logs() == 2
    rows = {row.request_id: row for row in CallLog.objects.all()}
    assert set(rows) == {"a1", "a2"}
    assert rows["a2"].status == 429 and rows["a2"].error_code == "rate_limited"
    assert rows["a1"].error_code == "" and rows["a1"].cache_hit is False
    assert redis_client.xlen(stream) == 0


def test_a_record_delivered_twice_is_stored_once(redis_client, stream):
    add(redis_client, stream, [record("b1"), record("b2")])
    ingest_call_logs()
    add(redis_client, stream, [record("b1"), record("b2")])  # as after a replay
    ingest_call_logs()
    assert sorted(CallLog.objects.values_list("request_id", flat=True)) == ["b1", "b2"]


def test_running_twice_leaves_the_same_rows(redis_client, stream):
    for batch in range(6):
        add(redis_client, stream, [record(f"c{batch}-{i}") for i in range(5)])
    assert ingest_call_logs(batch_size=4) == 30
    first = sorted(CallLog.objects.values_list("request_id", "status"))
    assert ingest_call_logs() == 0
    assert sorted(CallLog.objects.values_list("request_id", "status")) == first


def test_entries_read_by_a_dead_consumer_are_claimed_and_stored(redis_client, stream):
    add(redis_client, stream, [record("d1"), record("d2")])
    redis_client.xgroup_create(stream, GROUP, id="0")
    # A consumer that read the entries and died before acknowledging them.
    redis_client.xreadgroup(GROUP, "crashed-worker", {stream: ">"}, count=10)
    assert ingest_call_logs(claim_idle_ms=0) == 2
    assert sorted(CallLog.objects.values_list("request_id", flat=True)) == ["d1", "d2"]
    assert redis_client.xpending(stream, GROUP)["pending"] == 0


def test_an_unreadable_entry_is_skipped_without_stopping_the_rest(redis_client, stream):
    redis_client.xadd(stream, {"r": b"not json"})
    redis_client.xadd(stream, {"b": b"[not json"})
    add(redis_client, stream, [record("e1")])
    assert ingest_call_logs() == 1
    assert list(CallLog.objects.values_list("request_id", flat=True)) == ["e1"]
    assert redis_client.xlen(stream) == 0


def test_an_unreadable_record_in_a_batch_does_not_cost_the_others(redis_client, stream):
    broken = record("f2")
    del broken["time"]
    add(redis_client, stream, [record("f1"), broken, "not a record", record("f3")])
    assert ingest_call_logs() == 2
    assert sorted(CallLog.objects.values_list("request_id", flat=True)) == ["f1", "f3"]


def test_a_record_that_is_not_a_call_record_is_skipped_and_the_others_stored(redis_client, stream):
    wrong = [
        record("g2", status="200"),  # a field of the wrong type
        record("g3", time="yesterday"),
        record("g4", method="X" * 11),  # longer than its column
        {k: v for k, v in record("g5").items() if k != "method"},  # a required field missing
    ]
    add(redis_client, stream, [record("g1"), *wrong, record("g6", colour="ignored: not a call-record field")])
    assert ingest_call_logs() == 2
    assert sorted(CallLog.objects.values_list("request_id", flat=True)) == ["g1", "g6"]
    assert redis_client.xlen(stream) == 0


def test_an_entry_without_a_batch_is_skipped(redis_client, stream):
    redis_client.xadd(stream, {"r": orjson.dumps(record("h1"))})  # the one-record shape of before batches
    add(redis_client, stream, [record("h2")])
    assert ingest_call_logs() == 1
    assert list(CallLog.objects.values_list("request_id", flat=True)) == ["h2"]
    assert redis_client.xlen(stream) == 0


def test_management_command_ingests(redis_client, stream):
    from io import StringIO

    from django.core.management import call_command

    add(redis_client, stream, [record("f1")])
    out = StringIO()
    call_command("ingest_call_logs", stdout=out)
    assert "1 call records ingested" in out.getvalue()
    assert CallLog.objects.filter(request_id="f1").exists()
