"""How the gateway talks to upstreams: balancing, ejection and retries, timeouts, streaming, size."""

import collections
import socket
import time

import pytest
import requests

from portal.embedded_redis import free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]


def served_by(gateway, config, n):
    return collections.Counter(gateway.get(f"{config.base_path}/echo", config.key).json()["upstream"] for _ in range(n))


def test_weighted_round_robin_follows_the_weights(gateway, configure, upstream_a, upstream_b):
    config = configure([(upstream_a, 300), (upstream_b, 100)])
    counts = served_by(gateway, config, 200)
    assert counts["a"] + counts["b"] == 200
    assert 0.68 <= counts["a"] / 200 <= 0.82, counts


def test_least_connections_prefers_the_idle_target(gateway, configure, upstream_a, upstream_b):
    config = configure([upstream_a, upstream_b], load_balancing="least_connections")
    counts = served_by(gateway, config, 40)
    assert set(counts) <= {"a", "b"} and sum(counts.values()) == 40


def test_dead_target_is_ejected_and_its_gets_retried_elsewhere(gateway, configure, upstream_a):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = configure([upstream_a, dead], retries=1)
    statuses = [gateway.get(f"{config.base_path}/echo", config.key).status_code for _ in range(30)]
    assert statuses == [200] * 30
    errors = [
        line
        for line in requests.get(f"{gateway.url}/metrics", timeout=5).text.splitlines()
        if line.startswith('portico_gateway_upstream_errors_total{kind="connect"}')
    ]
    # Once ejected, the dead target is not tried again during its cool-down: at most once per worker.
    assert errors and float(errors[0].split()[-1]) <= 2


def test_post_is_not_retried_and_gets_502_when_the_target_is_down(gateway, configure):
    dead = f"http://127.0.0.1:{free_port()}"
    config = configure([dead], retries=2)
    response = gateway.request("POST", f"{config.base_path}/echo", config.key, data=b"x")
    assert response.status_code == 502 and response.json()["error"]["code"] == "upstream_unreachable"


def test_slow_upstream_gives_504(gateway, configure, upstream_a):
    config = configure([upstream_a], read_timeout_ms=300, total_timeout_ms=5000)
    started = time.monotonic()
    response = gateway.get(f"{config.base_path}/slow?ms=3000", config.key)
    assert response.status_code == 504 and response.json()["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - started < 2.5


def test_sse_events_arrive_as_the_upstream_sends_them(gateway, configure, upstream_a):
    config = configure([upstream_a])
    started = time.monotonic()
    arrivals = []
    with gateway.get(f"{config.base_path}/sse?n=4&interval_ms=400", config.key, stream=True) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        for line in response.iter_lines(chunk_size=1):
            if line.startswith(b"data:"):
                arrivals.append((time.monotonic() - started, line))
    assert [line for _t, line in arrivals] == [f"data: event {i}".encode() for i in range(4)]
    # The first event is delivered long before the upstream finishes (~1.6 s): not buffered.
    assert arrivals[0][0] < arrivals[-1][0] - 0.8


def test_request_body_over_the_limit_is_refused_with_413(gateway, configure, upstream_a):
    config = configure([upstream_a], max_request_bytes=1000)
    ok = gateway.request("POST", f"{config.base_path}/echo", config.key, data=b"x" * 1000)
    assert ok.status_code == 200 and ok.json()["body_bytes"] == 1000
    too_big = gateway.request("POST", f"{config.base_path}/echo", config.key, data=b"x" * 1001)
    assert too_big.status_code == 413 and too_big.json()["error"]["code"] == "request_too_large"


def test_chunked_body_over_the_limit_is_refused_with_413(gateway, configure, upstream_a):
    config = configure([upstream_a], max_request_bytes=1000)

    def chunks():
        for _ in range(10):
            yield b"y" * 300

    response = gateway.request("POST", f"{config.base_path}/echo", config.key, data=chunks())
    assert response.status_code == 413


def test_large_bodies_stream_through_both_ways(gateway, configure, upstream_a):
    config = configure([upstream_a], max_request_bytes=20_000_000)
    response = gateway.request("PUT", f"{config.base_path}/echo", config.key, data=b"z" * 8_000_000)
    assert response.status_code == 200 and response.json()["body_bytes"] == 8_000_000


def test_health_readiness_and_metrics(gateway, configure, upstream_a):
    config = configure([upstream_a])
    gateway.get(f"{config.base_path}/echo", config.key)
    assert requests.get(f"{gateway.url}/healthz", timeout=5).json() == {"status": "ok"}
    ready = requests.get(f"{gateway.url}/readyz", timeout=5).json()
    assert ready["status"] == "ready" and ready["redis"] is True and ready["routes"] >= 1
    text = requests.get(f"{gateway.url}/metrics", timeout=5).text
    assert 'portico_gateway_requests_total{status="200"}' in text
    assert "portico_gateway_request_duration_seconds_bucket" in text


def test_client_that_disconnects_mid_request_does_not_break_the_gateway(gateway, configure, upstream_a):
    config = configure([upstream_a])
    with socket.create_connection(("127.0.0.1", gateway.port)) as conn:
        conn.sendall(
            f"POST {config.base_path}/echo HTTP/1.1\r\nHost: x\r\nX-API-Key: {config.key}\r\n"
            "Content-Length: 100000\r\n\r\npartial".encode()
        )
    assert gateway.get(f"{config.base_path}/echo", config.key).status_code == 200
