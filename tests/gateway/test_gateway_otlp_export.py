"""Spans over OTLP from the real gateway to a loopback receiver: a sampled call's span carries
the client's trace and parent and the span id the upstream saw, with one child per step; the
sampling is parent-based (ratio 0 here, so only a client's sampled flag exports anything);
nothing secret is in a span; shutdown flushes what is queued. Without an endpoint the
OpenTelemetry SDK is not loaded at all."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from django.conf import settings

from tests.gateway.conftest import ROOT, GatewayProcess
from tests.gateway.otlp_receiver import OtlpReceiver
from tests.gateway.rawhttp import build_request, exchange

pytestmark = [pytest.mark.gateway, pytest.mark.django_db(transaction=True)]

PARENT = "00f067aa0ba902b7"
SERVER, CLIENT, INTERNAL = 2, 3, 1  # opentelemetry.proto Span.SpanKind values
STATUS_ERROR = 2


@pytest.fixture(scope="module")
def receiver():
    otlp = OtlpReceiver()
    otlp.url = otlp.start()
    yield otlp
    otlp.stop()


@pytest.fixture(scope="module")
def gateway(django_db_setup, django_db_blocker, tmp_path_factory, receiver):
    process = GatewayProcess(
        settings.REDIS_URL,
        tmp_path_factory.mktemp("gateway-otlp"),
        extra_env={
            "GATEWAY_OTLP_ENDPOINT": receiver.url,
            "GATEWAY_TRACE_SAMPLE_RATIO": "0",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
    )
    process.start()
    yield process
    process.stop()


def traced_get(gateway, config, trace_id, flags="01", path="/echo", key=True):
    headers = [("traceparent", f"00-{trace_id}-{PARENT}-{flags}")]
    if key:
        headers.append(("Authorization", f"Bearer {config.key}"))
    return exchange(gateway.port, build_request("GET", f"{config.base_path}{path}", headers))


def trace(n: int) -> str:
    return f"{n:032x}"


def test_a_sampled_call_exports_its_span_and_one_child_per_step(gateway, configure, upstream_a, receiver):
    config = configure([upstream_a])
    trace_id = trace(0xA11CE)
    answer = traced_get(gateway, config, trace_id, path="/echo/secret-id-123?token=s3cret")
    assert answer.status == 200
    upstream_parent = next(v for n, v in answer.json()["header_list"] if n == "traceparent").split("-")[2]

    spans = receiver.wait_for(trace_id, 5)
    (root,) = [s for s in spans if s.kind == SERVER]
    assert root.span_id == upstream_parent  # the upstream's parent is the gateway's call span
    assert root.parent_span_id == PARENT  # under the client's span
    assert root.name == f"GET {config.base_path}"
    assert root.resource["service.name"] == "portico-gateway"
    attributes = root.attributes
    assert attributes["http.request.method"] == "GET"
    assert attributes["url.path"] == config.base_path
    assert attributes["http.response.status_code"] == 200
    assert attributes["portico.api_id"] == config.api.pk
    assert attributes["portico.version_id"] == config.version.pk
    assert attributes["portico.application_id"] == config.application.pk
    assert attributes["portico.request_id"] == answer.header("x-request-id")

    steps = {s.name: s for s in spans if s is not root}
    assert set(steps) == {"auth", "limits", "upstream", "relay"}
    assert all(s.parent_span_id == root.span_id for s in steps.values())
    assert len({s.span_id for s in spans}) == len(spans)
    assert steps["upstream"].kind == CLIENT and steps["auth"].kind == INTERNAL
    order = [steps[name] for name in ("auth", "limits", "upstream", "relay")]
    assert root.start <= order[0].start
    for before, after in zip(order, order[1:], strict=False):
        assert before.start <= before.end == after.start
    assert order[-1].end <= root.end
    assert root.end - root.start < 5e9  # nanoseconds, in the call's own time

    everything = repr([(s.name, s.attributes, s.resource) for s in spans])
    for secret in (config.key, config.key.split(".")[-1], "secret-id-123", "s3cret"):
        assert secret not in everything


def test_an_unsampled_parent_or_a_new_trace_at_ratio_zero_exports_nothing(gateway, configure, upstream_a, receiver):
    config = configure([upstream_a])
    unsampled = trace(0xB0B)
    assert traced_get(gateway, config, unsampled, flags="00").status == 200
    started = exchange(
        gateway.port, build_request("GET", f"{config.base_path}/echo", [("Authorization", f"Bearer {config.key}")])
    )
    started_trace = next(v for n, v in started.json()["header_list"] if n == "traceparent").split("-")[1]
    # A sampled call on each worker afterwards: once theirs have arrived, the others' would have.
    barriers = [trace(0xC0FFEE + i) for i in range(4)]
    for barrier in barriers:
        assert traced_get(gateway, config, barrier).status == 200
    for barrier in barriers:
        assert receiver.wait_for(barrier, 5)
    time.sleep(0.5)
    assert receiver.of_trace(unsampled) == []
    assert receiver.of_trace(started_trace) == []


def test_a_refused_call_and_a_failed_upstream_are_marked_on_their_spans(gateway, configure, upstream_a, receiver):
    config = configure([upstream_a])
    refused, failed = trace(0x401), trace(0x503)
    assert traced_get(gateway, config, refused, key=False).status == 401
    assert traced_get(gateway, config, failed, path="/status/503").status == 503

    spans = receiver.wait_for(refused, 2)
    (root,) = [s for s in spans if s.kind == SERVER]
    assert root.attributes["http.response.status_code"] == 401
    assert root.attributes["error.type"] == "missing_api_key"
    assert root.status_code != STATUS_ERROR  # a client's mistake is not the server span's error
    (auth,) = [s for s in spans if s.name == "auth"]  # it ended where it was refused
    assert auth.attributes["error.type"] == "missing_api_key"

    spans = receiver.wait_for(failed, 5)
    (root,) = [s for s in spans if s.kind == SERVER]
    assert root.attributes["http.response.status_code"] == 503
    assert root.status_code == STATUS_ERROR


def test_shutdown_exports_the_spans_still_queued(configure, upstream_a, receiver, tmp_path):
    # Its own gateway, whose processor would wait a minute before an export.
    slow = GatewayProcess(
        settings.REDIS_URL,
        tmp_path,
        extra_env={
            "GATEWAY_OTLP_ENDPOINT": receiver.url,
            "GATEWAY_TRACE_SAMPLE_RATIO": "0",
            "OTEL_BSP_SCHEDULE_DELAY": "60000",
        },
    )
    slow.start()
    try:
        config = configure([upstream_a])
        slow.wait_for_config()
        queued = trace(0x5107)
        assert traced_get(slow, config, queued).status == 200
        time.sleep(0.5)
        assert receiver.of_trace(queued) == []
    finally:
        slow.stop()
    assert len(receiver.wait_for(queued, 5, timeout=5)) == 5


def test_without_an_endpoint_the_sdk_is_never_imported():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GATEWAY_OTLP"))}
    script = (
        "import sys, asyncio\n"
        "from gateway.app import Gateway\n"
        "gateway = Gateway()\n"
        "assert gateway.spans is None\n"
        "print(sorted(m for m in sys.modules if m.startswith(PREFIXES)))\n"
    )
    # redis-py imports OpenTelemetry's *metrics* SDK when it is installed (redis.observability,
    # off unless configured); the tracing SDK and the exporter are what the gateway would load.
    script = "PREFIXES = ('opentelemetry.sdk.trace', 'opentelemetry.exporter', 'gateway.otlp')\n" + script
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
