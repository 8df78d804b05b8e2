"""Trace context through the real gateway: the upstream receives the client's trace under the
gateway's own span, hostile traceparent/tracestate headers start a fresh trace (never an
error), and the trace id reaches the call record, CallLog and the log explorer, per tenant."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from analytics.ingest import ingest_call_logs
from analytics.models import CallLog
from tests.gateway.rawhttp import build_request, exchange, find_call_record

pytestmark = [pytest.mark.gateway, pytest.mark.django_db(transaction=True)]

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def call(gateway, config, headers, path="/echo"):
    """One GET through the gateway; (its answer, what the upstream received as JSON)."""
    answer = exchange(
        gateway.port,
        build_request("GET", f"{config.base_path}{path}", [("Authorization", f"Bearer {config.key}"), *headers]),
    )
    assert answer.status == 200, answer
    return answer, answer.json()


def received(echo, name):
    return [value for field, value in echo["header_list"] if field.lower() == name]


def upstream_traceparent(echo) -> tuple[str, str, str]:
    values = received(echo, "traceparent")
    assert len(values) == 1, values
    match = TRACEPARENT.fullmatch(values[0])
    assert match, values[0]
    return match.group(1), match.group(2), match.group(3)


@pytest.mark.parametrize("flags", ["01", "00", "03"])
def test_the_upstream_gets_the_clients_trace_under_the_gateways_span(gateway, configure, upstream_a, flags):
    config = configure([upstream_a])
    _answer, echo = call(gateway, config, [("traceparent", f"00-{TRACE}-{PARENT}-{flags}")])
    trace_id, parent_id, sent_flags = upstream_traceparent(echo)
    assert trace_id == TRACE
    assert parent_id != PARENT and parent_id != "0" * 16
    assert sent_flags == flags


def test_each_call_of_a_trace_gets_its_own_gateway_span(gateway, configure, upstream_a):
    config = configure([upstream_a])
    parents = {upstream_traceparent(call(gateway, config, [("traceparent", f"00-{TRACE}-{PARENT}-01")])[1])[1]}
    parents.add(upstream_traceparent(call(gateway, config, [("traceparent", f"00-{TRACE}-{PARENT}-01")])[1])[1])
    assert len(parents) == 2


def test_without_a_traceparent_the_gateway_starts_a_trace(gateway, configure, upstream_a):
    config = configure([upstream_a])
    first = upstream_traceparent(call(gateway, config, [])[1])
    second = upstream_traceparent(call(gateway, config, [])[1])
    assert first[0] != second[0] and "0" * 32 not in (first[0], second[0])
    assert received(call(gateway, config, [])[1], "tracestate") == []


HOSTILE = [
    [("traceparent", f"00-{TRACE.upper()}-{PARENT}-01")],
    [("traceparent", f"00-{'0' * 32}-{PARENT}-01")],
    [("traceparent", f"00-{TRACE}-{'0' * 16}-01")],
    [("traceparent", f"ff-{TRACE}-{PARENT}-01")],
    [("traceparent", f"00-{TRACE}-{PARENT}-01-extra")],
    [("traceparent", f"00-{TRACE[:-1]}-{PARENT}-01")],
    [("traceparent", f"00-{TRACE}-{PARENT}0-01")],
    [("traceparent", "")],
    [("traceparent", f"00-{TRACE}-{PARENT}-01" + "-" + "a" * 10_000)],  # a 10 kB header
    [("traceparent", "x" * 10_000)],
    [("traceparent", (b"\xff" * 55))],
    # Two of them: neither can be told to be the parent (the upstream must not see either).
    [("traceparent", f"00-{TRACE}-{PARENT}-01"), ("traceparent", f"00-{TRACE}-{PARENT}-01")],
    [("TraceParent", f"00-{TRACE}-{PARENT}-01"), ("traceparent", f"00-{'1' * 32}-{PARENT}-01")],
]


@pytest.mark.parametrize("headers", HOSTILE, ids=range(len(HOSTILE)))
def test_a_hostile_traceparent_starts_a_fresh_trace_and_is_never_an_error(
    gateway, configure, upstream_a, redis_client, headers
):
    config = configure([upstream_a])
    answer, echo = call(gateway, config, [*headers, ("tracestate", "vendor=secret-from-client")])
    trace_id, parent_id, flags = upstream_traceparent(echo)
    assert trace_id not in (TRACE, "1" * 32, "0" * 32) and parent_id != PARENT
    # A trace the gateway starts carries no tracestate: the client's belonged to its own trace.
    assert received(echo, "tracestate") == []
    record = find_call_record(redis_client, answer.header("x-request-id"))
    assert record["trace_id"] == trace_id and record["status"] == 200


def test_a_valid_tracestate_goes_on_and_a_bad_one_is_dropped(gateway, configure, upstream_a):
    config = configure([upstream_a])
    parent = ("traceparent", f"00-{TRACE}-{PARENT}-01")
    _a, echo = call(gateway, config, [parent, ("tracestate", "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE")])
    assert received(echo, "tracestate") == ["rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"]
    _a, echo = call(gateway, config, [parent, ("tracestate", "a=1"), ("tracestate", "b=2")])
    assert received(echo, "tracestate") == ["a=1,b=2"]
    for bad in ("k=" + "v" * 600, ",".join(f"k{i}=v" for i in range(33)), "a=1,a=2", "Bad Key=1"):
        _a, echo = call(gateway, config, [parent, ("tracestate", bad)])
        assert received(echo, "tracestate") == [], bad
        assert upstream_traceparent(echo)[0] == TRACE  # the traceparent itself still stands


def test_a_refused_call_is_recorded_with_its_trace(gateway, configure, upstream_a, redis_client):
    config = configure([upstream_a])
    answer = exchange(
        gateway.port,
        build_request("GET", f"{config.base_path}/echo", [("traceparent", f"00-{TRACE}-{PARENT}-01")]),
    )
    assert answer.status == 401
    record = find_call_record(redis_client, answer.header("x-request-id"))
    assert record["trace_id"] == TRACE and record["error_code"] == "missing_api_key"


def test_the_trace_id_reaches_call_log_and_the_explorer_finds_it_for_its_tenant_only(
    gateway, configure, upstream_a, redis_client
):
    mine = configure([upstream_a])
    theirs = configure([upstream_a])
    trace = "a1" * 16
    answer, _echo = call(gateway, mine, [("traceparent", f"00-{trace}-{PARENT}-01")])
    other, _echo = call(gateway, theirs, [("traceparent", f"00-{trace}-{PARENT}-01")])  # the same trace id
    started, _echo = call(gateway, mine, [])
    request_id, other_id, started_id = (a.header("x-request-id") for a in (answer, other, started))
    started_trace = find_call_record(redis_client, started_id)["trace_id"]
    for rid in (request_id, other_id):
        find_call_record(redis_client, rid)
    ingest_call_logs()
    assert CallLog.objects.get(request_id=request_id).trace_id == trace
    assert CallLog.objects.get(request_id=started_id).trace_id == started_trace

    client = Client()
    client.force_login(mine.owner)
    page = client.get("/usage/calls/", {"trace_id": trace.upper()})  # pasted in capitals
    assert page.status_code == 200
    assert [c.request_id for c in page.context["page"].calls] == [request_id]
    detail = client.get(f"/usage/calls/{request_id}/")
    assert trace in detail.content.decode()
    export = b"".join(client.get("/usage/calls/export.csv", {"trace_id": trace}).streaming_content).decode()
    header, *rows = [line.split(",") for line in export.strip().splitlines()]
    assert [row[header.index("trace_id")] for row in rows] == [trace]

    client.force_login(theirs.owner)
    page = client.get("/usage/calls/", {"trace_id": trace})
    assert [c.request_id for c in page.context["page"].calls] == [other_id]
    assert client.get(f"/usage/calls/{request_id}/").status_code == 404
    assert client.get("/usage/calls/", {"trace_id": started_trace}).context["page"].calls == []
