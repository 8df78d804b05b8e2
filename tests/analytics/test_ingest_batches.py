"""Ingest stores every call record of the stream once, on SQLite and on PostgreSQL: busy
streams, replays, hostile records, keys' last use, and entries the database refuses."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import override_settings

from analytics.ingest import DEAD_LETTER_SUFFIX, GROUP, ingest_call_logs
from analytics.models import CallLog
from portal.models import ApiKey, Application, Tenant
from tests.analytics.ingest_stream import add, fill, new_stream_name, pending, record, request_ids, stored_ids

pytestmark = pytest.mark.django_db


@pytest.fixture
def stream(redis_client):
    name = new_stream_name()
    with override_settings(PORTICO_CALL_LOG_STREAM=name):
        yield name
    redis_client.delete(name, name + DEAD_LETTER_SUFFIX)


def test_a_busy_stream_is_stored_whole_and_emptied(backend, redis_client, stream):
    sent = fill(redis_client, stream, entries=30, per_entry=500)
    assert ingest_call_logs(using=backend.alias) == 15_000
    ids = stored_ids(backend.alias)
    assert len(ids) == 15_000 and set(ids) == sent
    assert redis_client.xlen(stream) == 0 and pending(redis_client, stream) == 0
    assert CallLog.objects.using(backend.alias).filter(status=503).count() == 30 * len(range(0, 500, 7))


def test_every_field_arrives_as_the_gateway_wrote_it(backend, redis_client, stream):
    at = datetime(2026, 11, 27, 13, 45, 12, 345678, tzinfo=UTC)
    ai = record(
        "ai-1",
        time=at.timestamp(),
        client_request_id="client-7",
        key_prefix="pk_abc",
        status=201,
        latency_ms=812.25,
        upstream_latency_ms=None,
        bytes_in=2**40,
        cache_hit=1,
        error_code=None,
        model="gpt-4o-mini",
        provider="openai",
        upstream_model="gpt-4o-mini-2024-07-18",
        tokens_in=1200,
        tokens_out=300,
        tokens_cached=1000,
        tokens_estimated=True,
        cost="0.000123456789",  # more places than the column: rounded to 8
        ttft_ms=95.5,
        overhead_ms=1.25,
        pii_masked=2,
        fallbacks=1,
        prompt_capture="[REDACTED] hello",
        response_capture=None,
    )
    add(redis_client, stream, [ai, record("rest-1")])
    assert ingest_call_logs(using=backend.alias) == 2
    row = CallLog.objects.using(backend.alias).get(request_id="ai-1")
    assert row.time == at
    assert (row.client_request_id, row.key_prefix, row.status, row.error_code) == ("client-7", "pk_abc", 201, "")
    assert (row.latency_ms, row.upstream_latency_ms, row.bytes_in, row.cache_hit) == (812.25, None, 2**40, True)
    assert (row.model, row.provider, row.upstream_model) == ("gpt-4o-mini", "openai", "gpt-4o-mini-2024-07-18")
    assert (row.tokens_in, row.tokens_out, row.tokens_cached, row.tokens_estimated) == (1200, 300, 1000, True)
    assert row.cost == Decimal("0.00012346")
    assert (row.ttft_ms, row.overhead_ms, row.pii_masked, row.fallbacks) == (95.5, 1.25, 2, 1)
    assert (row.prompt_capture, row.response_capture) == ("[REDACTED] hello", None)
    rest = CallLog.objects.using(backend.alias).get(request_id="rest-1")
    assert (rest.model, rest.tokens_in, rest.cost, rest.pii_masked, rest.client_request_id) == ("", None, None, 0, "")


def test_a_batch_delivered_again_is_stored_once(backend, redis_client, stream):
    ids = request_ids()
    batch = [record(next(ids)) for _ in range(300)]
    add(redis_client, stream, batch)
    assert ingest_call_logs(using=backend.alias) == 300
    add(redis_client, stream, batch + [record("one-more")])  # a replay after an ambiguous failure
    add(redis_client, stream, batch[:10] + batch[:10])  # and the same record twice in one batch
    assert ingest_call_logs(using=backend.alias) == 1
    assert len(stored_ids(backend.alias)) == 301 == len(set(stored_ids(backend.alias)))


@pytest.mark.parametrize(
    "hostile",
    [
        {"status": 70_000},  # past the column's range
        {"status": -1},
        {"status": True},  # a bool is not a status
        {"status": "200"},
        {"tokens_in": -5},
        {"tokens_out": 2**31},
        {"bytes_out": 2**70},  # beyond 64 bits: decoded as a float
        {"bytes_out": 1.5},
        {"application_id": 2**63},
        {"latency_ms": "12"},
        {"time": 1e20},
        {"time": -1},
        {"time": "yesterday"},
        {"cost": "free"},
        {"cost": "1e400"},
        {"cost": "12345678"},  # more than the column's six integer places
        {"cost": "NaN"},
        {"cost": 0.5},
        {"method": "X" * 11},
        {"key_prefix": "k" * 17},
        {"request_id": "r" * 65},
        {"request_id": None},
        {"request_id": ""},
        {"path": None},
        {"model": ["a", "list"]},
        {"cache_hit": "yes"},
    ],
    ids=repr,
)
def test_a_record_that_is_not_a_call_record_is_skipped_and_its_batch_stored(backend, redis_client, stream, hostile):
    batch = [record("good-1"), {**record("bad"), **hostile}, record("good-2")]
    redis_client.xadd(stream, {"b": json.dumps(batch)})  # the stdlib writes any int
    assert ingest_call_logs(using=backend.alias) == 2
    assert sorted(stored_ids(backend.alias)) == ["good-1", "good-2"]
    assert redis_client.xlen(stream) == 0


def test_strings_a_client_chose_are_kept_even_with_nul_or_a_long_path(backend, redis_client, stream):
    add(
        redis_client,
        stream,
        [record("nul", model="gpt\x00-4", error_code="\x00"), record("long", path="/p/" + "x" * 5000)],
    )
    assert ingest_call_logs(using=backend.alias) == 2
    rows = {row.request_id: row for row in CallLog.objects.using(backend.alias).all()}
    assert rows["nul"].model == "gpt\ufffd-4" and rows["nul"].error_code == "\ufffd"
    assert rows["long"].path == ("/p/" + "x" * 5000)[:2000]


def test_unknown_fields_and_unreadable_entries_cost_nothing_else(backend, redis_client, stream):
    redis_client.xadd(stream, {"r": b"not a batch"})
    redis_client.xadd(stream, {"b": b"[not json"})
    redis_client.xadd(stream, {"b": b'{"a": "dict, not a list"}'})
    add(redis_client, stream, [record("u1", colour="from a newer gateway"), "not a record", 42, None])
    assert ingest_call_logs(using=backend.alias) == 1
    assert stored_ids(backend.alias) == ["u1"]
    assert redis_client.xlen(stream) == 0 and pending(redis_client, stream) == 0


def make_key(alias: str) -> ApiKey:
    """A key and what it belongs to, in the backend's database (test data, not a service)."""
    user = get_user_model()(username="key-owner")
    user.save(using=alias)
    tenant = Tenant(name="Keys", slug="keys")
    tenant.save(using=alias)
    application = Application(tenant=tenant, name="App", created_by=user)
    application.save(using=alias)
    key = ApiKey(application=application, prefix="pk_ingest1", secret_hash="0" * 64)
    key.save(using=alias)
    return key


def test_a_keys_last_use_moves_forward_and_never_back(backend, redis_client, stream):
    key = make_key(backend.alias)
    now = datetime.now(UTC).replace(microsecond=0)
    add(
        redis_client,
        stream,
        [
            record("k1", key_prefix=key.prefix, time=(now - timedelta(minutes=5)).timestamp()),
            record("k2", key_prefix=key.prefix, time=now.timestamp()),
            record("k3", key_prefix="pk_unknown", time=now.timestamp()),
        ],
    )
    ingest_call_logs(using=backend.alias)
    assert ApiKey.objects.using(backend.alias).get(pk=key.pk).last_used_at == now
    add(redis_client, stream, [record("k4", key_prefix=key.prefix, time=(now - timedelta(hours=1)).timestamp())])
    ingest_call_logs(using=backend.alias)  # a late record
    assert ApiKey.objects.using(backend.alias).get(pk=key.pk).last_used_at == now


def test_entries_a_dead_consumer_read_are_claimed_and_stored(backend, redis_client, stream):
    sent = fill(redis_client, stream, entries=5, per_entry=50)
    redis_client.xgroup_create(stream, GROUP, id="0")
    redis_client.xreadgroup(GROUP, "crashed-worker", {stream: ">"}, count=3)  # read, never acknowledged
    assert ingest_call_logs(using=backend.alias, claim_idle_ms=60_000) == 100  # theirs are not idle yet
    assert pending(redis_client, stream) == 3
    assert ingest_call_logs(using=backend.alias, claim_idle_ms=0) == 150
    assert set(stored_ids(backend.alias)) == sent
    assert pending(redis_client, stream) == 0 and redis_client.xlen(stream) == 0


POISON_SQLITE = """
CREATE TRIGGER poison BEFORE INSERT ON analytics_calllog WHEN NEW.path = '/poison'
BEGIN SELECT RAISE(ABORT, 'poison refused'); END
"""
POISON_POSTGRES = [
    """CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN IF NEW.path = '/poison' THEN
      RAISE EXCEPTION 'poison refused' USING ERRCODE = 'check_violation';
    END IF; RETURN NEW; END $$""",
    "CREATE TRIGGER poison BEFORE INSERT ON analytics_calllog FOR EACH ROW EXECUTE FUNCTION poison()",
]


def test_an_entry_the_database_refuses_goes_to_the_dead_letters_and_its_neighbours_are_stored(
    backend, redis_client, stream
):
    with connections[backend.alias].cursor() as cursor:
        for statement in [POISON_SQLITE] if backend.name == "sqlite" else POISON_POSTGRES:
            cursor.execute(statement)
    add(redis_client, stream, [record("n1"), record("n2")])
    add(redis_client, stream, [record("p1"), record("p2", path="/poison")])
    add(redis_client, stream, [record("n3")])
    assert ingest_call_logs(using=backend.alias) == 3
    assert sorted(stored_ids(backend.alias)) == ["n1", "n2", "n3"]
    dead = redis_client.xrange(stream + DEAD_LETTER_SUFFIX)
    assert len(dead) == 1 and b"/poison" in dead[0][1][b"b"] and b"poison refused" in dead[0][1][b"error"]
    assert redis_client.xlen(stream) == 0 and pending(redis_client, stream) == 0
