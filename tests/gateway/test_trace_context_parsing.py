"""W3C Trace Context as the gateway reads it (gateway/tracing.py): exactly the spec's
traceparent, future versions read by their version-00 prefix, tracestate checked and capped,
and anything else a fresh trace; plus the settings that turn span export on."""

from __future__ import annotations

import os
import re

import pytest

from gateway import tracing
from gateway.settings import GatewaySettings, SettingsError

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{PARENT}-01".encode()
ID_LINE = re.compile(rb"traceparent: 00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})\r\n")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (VALID, (TRACE, PARENT, 1)),
        (f"00-{TRACE}-{PARENT}-00".encode(), (TRACE, PARENT, 0)),
        (f"00-{TRACE}-{PARENT}-03".encode(), (TRACE, PARENT, 3)),  # flags kept as sent
        (b" \t" + VALID + b" ", (TRACE, PARENT, 1)),  # optional whitespace around a field value
        # A future version: the version-00 fields are read, what follows must start with "-".
        (f"cc-{TRACE}-{PARENT}-01".encode(), (TRACE, PARENT, 1)),
        (f"01-{TRACE}-{PARENT}-01-something-new".encode(), (TRACE, PARENT, 1)),
    ],
)
def test_a_valid_traceparent_is_read(value, expected):
    assert tracing.parse_traceparent(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        b"",
        VALID.upper(),  # hex is lowercase only
        f"00-{TRACE.upper()}-{PARENT}-01".encode(),
        f"00-{'0' * 32}-{PARENT}-01".encode(),  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01".encode(),  # all-zero parent id
        f"ff-{TRACE}-{PARENT}-01".encode(),  # version ff is forbidden
        f"0g-{TRACE}-{PARENT}-01".encode(),
        f"00-{TRACE}-{PARENT}-01-extra".encode(),  # version 00 has nothing after the flags
        f"00-{TRACE}-{PARENT}-1".encode(),
        f"00-{TRACE}-{PARENT}-0x".encode(),
        f"00-{TRACE[:-1]}-{PARENT}-01".encode(),
        f"00-{TRACE}0-{PARENT}-01".encode(),
        f"00-{TRACE}-{PARENT[:-1]}-01".encode(),
        f"00_{TRACE}_{PARENT}_01".encode(),
        f"01-{TRACE}-{PARENT}-01x".encode(),  # a future version: no "-" after the flags
        f"01-{TRACE}-{PARENT}".encode(),  # shorter than 55
        f"00-{TRACE[:-2]}zz-{PARENT}-01".encode(),
        f"00-{TRACE}-{PARENT[:-2]}\xff\xff-01".encode("latin-1"),
        b"\xff" * 55,
        VALID * 200,
    ],
)
def test_an_invalid_traceparent_is_refused(value):
    assert tracing.parse_traceparent(value) is None


def begin(headers, bound=0):
    pairs = [(name.encode(), value if isinstance(value, bytes) else value.encode()) for name, value in headers]
    return tracing.begin(dict(pairs), pairs, bound)


def test_a_valid_parent_keeps_its_trace_and_flags_under_a_new_span_of_the_gateways():
    headers = [("traceparent", VALID), ("tracestate", "rojo=00f067aa0ba902b7")]
    trace_id, span_id, parent_id, flags, state = begin(headers)
    assert (trace_id, parent_id, flags) == (TRACE, PARENT, 1)
    assert re.fullmatch("[0-9a-f]{16}", span_id) and span_id not in (PARENT, "0" * 16)
    assert state == b"rojo=00f067aa0ba902b7"
    line = tracing.traceparent_line(trace_id, span_id, flags, state)
    assert line == f"traceparent: 00-{TRACE}-{span_id}-01\r\ntracestate: rojo=00f067aa0ba902b7\r\n".encode()


def test_an_invalid_parent_starts_a_new_trace_and_drops_the_tracestate():
    trace_id, span_id, parent_id, flags, state = begin([("traceparent", VALID.upper()), ("tracestate", "a=b")])
    assert re.fullmatch("[0-9a-f]{32}", trace_id) and trace_id != TRACE
    assert parent_id == "" and state is None and flags == 0


def test_two_traceparent_headers_are_no_parent_even_when_both_are_valid():
    trace_id, _span, parent_id, _flags, _state = begin([("traceparent", VALID), ("traceparent", VALID)])
    assert trace_id != TRACE and parent_id == ""


def test_several_tracestate_headers_are_one_list_in_order():
    _t, _s, _p, _f, state = begin([("traceparent", VALID), ("tracestate", "a=1, b=2"), ("tracestate", "c=3")])
    assert state == b"a=1,b=2,c=3"


@pytest.mark.parametrize(
    "value",
    [
        "x" * 10 + "=" + "v" * 600,  # over 512 characters
        ",".join(f"k{i}=v" for i in range(33)),  # over 32 members
        "a=1,a=2",  # a key twice
        "UPPER=1",
        "no-equals",
        "a=tab\tinside",
        "a=comma,=x",
        "a=",  # a value is at least one character
        "",
        "   ",
    ],
)
def test_an_invalid_or_oversized_tracestate_is_dropped_whole(value):
    assert tracing.valid_tracestate(value.encode()) is None


def test_a_tracestate_at_the_spec_limits_passes():
    members = ",".join(f"k{i:02d}@sys=v{i}" for i in range(32))
    assert len(members) <= 512
    assert tracing.valid_tracestate(members.encode()) == members.encode()
    assert tracing.valid_tracestate(b"a=1,,b=2") == b"a=1,b=2"  # empty members are allowed


def test_new_traces_are_sampled_by_ratio_of_their_ids():
    assert all(begin([], tracing.sample_bound(1.0))[3] == 1 for _ in range(200))
    assert all(begin([], tracing.sample_bound(0.0))[3] == 0 for _ in range(200))
    sampled = sum(begin([], tracing.sample_bound(0.25))[3] for _ in range(4000))
    assert 700 < sampled < 1300  # 1000 expected; far outside would mean a broken bound
    # The decision is the trace id's own (TraceIdRatioBased): its lower 64 bits under the bound.
    for _ in range(200):
        trace_id, _s, _p, flags, _st = begin([], tracing.sample_bound(0.5))
        assert flags == (int(trace_id[16:], 16) < tracing.sample_bound(0.5))


def test_ids_are_unique_and_well_formed():
    seen = set()
    for _ in range(2000):
        trace_id, span_id, _p, _f, _s = begin([])
        assert re.fullmatch("[0-9a-f]{32}", trace_id) and re.fullmatch("[0-9a-f]{16}", span_id)
        assert trace_id != "0" * 32 and span_id != "0" * 16
        seen.add(trace_id)
    assert len(seen) == 2000


def test_the_otlp_endpoint_comes_from_the_gateways_setting_then_the_standard_ones():
    assert GatewaySettings.from_env({}).otlp_endpoint == ""
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/"}
    assert GatewaySettings.from_env(env).otlp_endpoint == "http://collector:4318/v1/traces"
    env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = "http://traces:4318/custom"
    assert GatewaySettings.from_env(env).otlp_endpoint == "http://traces:4318/custom"
    env["GATEWAY_OTLP_ENDPOINT"] = "https://mine:4318/v1/traces"
    assert GatewaySettings.from_env(env).otlp_endpoint == "https://mine:4318/v1/traces"
    assert GatewaySettings.from_env({**env, "OTEL_SDK_DISABLED": "true"}).otlp_endpoint == env["GATEWAY_OTLP_ENDPOINT"]
    standard_only = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}
    assert GatewaySettings.from_env(standard_only).otlp_endpoint == ""


@pytest.mark.parametrize(
    "env",
    [
        {"GATEWAY_OTLP_ENDPOINT": "collector:4318"},
        {"GATEWAY_OTLP_ENDPOINT": "ftp://collector/v1/traces"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://"},
        {"GATEWAY_TRACE_SAMPLE_RATIO": "1.5"},
        {"GATEWAY_TRACE_SAMPLE_RATIO": "-0.1"},
        {"GATEWAY_TRACE_SAMPLE_RATIO": "nan"},
        {"GATEWAY_TRACE_SAMPLE_RATIO": "often"},
    ],
)
def test_unusable_tracing_settings_stop_the_gateway_at_start(env):
    with pytest.raises(SettingsError):
        GatewaySettings.from_env(env)


def test_the_sample_ratio_defaults_to_one_percent():
    assert GatewaySettings.from_env({}).trace_sample_ratio == 0.01
    assert GatewaySettings.from_env({"GATEWAY_TRACE_SAMPLE_RATIO": "0"}).trace_sample_ratio == 0.0


def test_a_forked_worker_never_hands_out_its_parents_pooled_ids():
    begin([])  # the pool (tracing._fresh_ids) is filled in this process
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the next few trace ids, to the parent
        os.write(write, ",".join(begin([])[0] for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = set(os.read(read, 4096).decode().split(","))
    os.close(read)
    assert len(child) == 5 and not child & {begin([])[0] for _ in range(5)}


def test_start_makes_the_same_upstream_lines_as_traceparent_line():
    pairs = [(b"traceparent", VALID), (b"tracestate", b"a=1")]
    *values, lines = tracing.start(dict(pairs), pairs, 0)
    assert lines == tracing.traceparent_line(values[0], values[1], values[3], values[4])
    for bound in (0, tracing.sample_bound(1.0)):
        trace_id, span_id, _p, flags, state, lines = tracing.start({}, [], bound)
        assert lines == tracing.traceparent_line(trace_id, span_id, flags, state)
