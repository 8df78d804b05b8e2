"""The trace id of a call: ingested on each backend (SQLite executemany, PostgreSQL COPY), a
malformed one stored as none rather than costing the record, and found in the log explorer by
exact match, per tenant, with a bad search a form error."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from analytics import explorer
from analytics.ingest import DEAD_LETTER_SUFFIX, ingest_call_logs
from analytics.models import CallLog
from portal.services.errors import InvalidInput
from tests.analytics.factories import call, store
from tests.analytics.ingest_stream import add, new_stream_name, record

pytestmark = pytest.mark.django_db

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def stream(redis_client):
    name = new_stream_name()
    with override_settings(PORTICO_CALL_LOG_STREAM=name):
        yield name
    redis_client.delete(name, name + DEAD_LETTER_SUFFIX)


def test_the_trace_id_is_ingested_and_a_malformed_one_is_stored_as_none(backend, redis_client, stream):
    records = [
        record("traced", trace_id=TRACE),
        record("untraced"),  # a record from a gateway before tracing
        record("too-long", trace_id=TRACE + "00"),
        record("capitals", trace_id=TRACE.upper()),
        record("not-hex", trace_id="z" * 32),
        record("nul", trace_id="\x00" * 32),
    ]
    add(redis_client, stream, records)
    assert ingest_call_logs(using=backend.alias) == len(records)
    stored = dict(CallLog.objects.using(backend.alias).values_list("request_id", "trace_id"))
    assert stored == {"traced": TRACE, "untraced": "", "too-long": "", "capitals": "", "not-hex": "", "nul": ""}


@pytest.fixture
def traced(acme, globex, app, globex_app):
    now = timezone.now()
    return store(
        [
            call(now - timedelta(minutes=1), request_id="acme-1", tenant_id=acme.pk, trace_id=TRACE),
            call(now - timedelta(minutes=2), request_id="acme-2", tenant_id=acme.pk, trace_id=TRACE),
            call(now - timedelta(minutes=3), request_id="acme-other", tenant_id=acme.pk, trace_id="1" * 32),
            call(now - timedelta(minutes=4), request_id="globex-1", tenant_id=globex.pk, trace_id=TRACE),
        ]
    )


def ids(response) -> list[str]:
    return [c.request_id for c in response.context["page"].calls]


def test_a_tenant_finds_its_own_calls_of_a_trace_and_staff_find_all(client, traced, alice, charlie, staff):
    client.force_login(alice)
    assert ids(client.get("/usage/calls/", {"trace_id": TRACE})) == ["acme-1", "acme-2"]
    assert ids(client.get("/usage/calls/", {"trace_id": f"  {TRACE.upper()} "})) == ["acme-1", "acme-2"]
    client.force_login(charlie)
    assert ids(client.get("/usage/calls/", {"trace_id": TRACE})) == ["globex-1"]
    assert ids(client.get("/usage/calls/", {"trace_id": "1" * 32})) == []
    client.force_login(staff)
    assert ids(client.get("/staff/calls/", {"trace_id": TRACE})) == ["acme-1", "acme-2", "globex-1"]


@pytest.mark.parametrize(
    "value",
    [TRACE[:-1], TRACE + "0", "g" * 32, "%" * 32, TRACE[:16], "' OR 1=1 --", "x" * 5000, "é" * 32],
)
def test_a_malformed_trace_id_is_a_form_error(client, traced, alice, value):
    client.force_login(alice)
    response = client.get("/usage/calls/", {"trace_id": value})
    assert response.status_code == 400
    assert "A trace id is 32 hexadecimal digits." in response.content.decode()
    assert client.get("/usage/calls/export.csv", {"trace_id": value}).status_code == 400
    with pytest.raises(InvalidInput):
        explorer.parse_filter({"trace_id": value})


def test_the_export_has_the_trace_id_and_the_call_page_links_its_trace(client, traced, alice):
    client.force_login(alice)
    body = b"".join(client.get("/usage/calls/export.csv", {"trace_id": TRACE}).streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [(r["request_id"], r["trace_id"]) for r in rows] == [("acme-1", TRACE), ("acme-2", TRACE)]
    page = client.get("/usage/calls/acme-1/").content.decode()
    assert TRACE in page and f"trace_id={TRACE}" in page


@pytest.mark.parametrize("name", ["model", "key_prefix", "error_code"])
def test_a_nul_in_a_text_filter_is_a_clear_refusal_not_a_database_error(name):
    # PostgreSQL refuses NUL in any string: unchecked, the explorer and its export were a 500.
    with pytest.raises(InvalidInput, match="NUL"):
        explorer.parse_filter({name: "gpt\x00"})


def test_a_call_id_with_a_nul_is_not_found_on_each_backend(backend, acme, alice):
    from portal.services.errors import NotFound

    with pytest.raises(NotFound):
        explorer.get_call(alice, acme, "acme-1\x00", using=backend.alias)


def test_the_explorer_page_answers_a_nul_filter_with_a_form_error(client, traced, alice):
    client.force_login(alice)
    response = client.get("/usage/calls/", {"model": "gpt\x00"})
    assert response.status_code == 400
    assert b"NUL" in response.content
