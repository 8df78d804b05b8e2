"""How the gateway talks to upstreams: balancing, ejection and retries, timeouts, streaming, size."""

import collections
import contextlib
import socket
import socketserver
import threading
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


def test_a_slow_answer_times_out_on_a_kept_alive_connection_after_quick_ones(gateway, configure, upstream_a):
    """The read timeout is one timer per upstream connection, moved on by each request: it
    must still fire, on time, for the request that is slow."""
    config = configure([upstream_a], read_timeout_ms=400, total_timeout_ms=5000)
    with requests.Session() as client:  # one client connection: the same worker and upstream pool
        headers = {"Authorization": f"Bearer {config.key}"}
        for _ in range(30):
            quick = client.get(f"{gateway.url}{config.base_path}/slow?ms=20", headers=headers)
            assert quick.status_code == 200
        started = time.monotonic()
        slow = client.get(f"{gateway.url}{config.base_path}/slow?ms=3000", headers=headers)
        elapsed = time.monotonic() - started
    assert slow.status_code == 504 and slow.json()["error"]["code"] == "upstream_timeout"
    assert 0.35 < elapsed < 1.5


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


def test_chunked_body_goes_upstream_whole(gateway, configure, upstream_a):
    config = configure([upstream_a])

    def chunks():  # no Content-Length: the client sends it chunked, and so does the gateway
        for _ in range(10):
            yield b"y" * 300

    response = gateway.request("POST", f"{config.base_path}/echo", config.key, data=chunks())
    assert response.status_code == 200 and response.json()["body_bytes"] == 3000
    assert response.json()["headers"].get("Transfer-Encoding") == "chunked"


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


def test_metrics_count_every_answer_of_every_worker(gateway, configure, upstream_a):
    config = configure([upstream_a])
    statuses = [gateway.get(f"{config.base_path}/status/418", config.key).status_code for _ in range(25)]
    assert statuses == [418] * 25
    time.sleep(1.5)  # workers add their tallies to the shared values once a second
    text = requests.get(f"{gateway.url}/metrics", timeout=5).text
    counted = [line for line in text.splitlines() if line.startswith('portico_gateway_requests_total{status="418"}')]
    assert counted and float(counted[0].split()[-1]) == 25.0


def test_client_that_disconnects_mid_request_does_not_break_the_gateway(gateway, configure, upstream_a):
    config = configure([upstream_a])
    with socket.create_connection(("127.0.0.1", gateway.port)) as conn:
        conn.sendall(
            f"POST {config.base_path}/echo HTTP/1.1\r\nHost: x\r\nX-API-Key: {config.key}\r\n"
            "Content-Length: 100000\r\n\r\npartial".encode()
        )
    assert gateway.get(f"{config.base_path}/echo", config.key).status_code == 200


@contextlib.contextmanager
def blackhole():
    """An address whose TCP handshake never completes: a listener with a full backlog that
    never accepts, so connects hang (SYNs dropped) until the client's connect timeout."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(4):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for sock in [*fillers, server]:
            sock.close()


def upstream_errors(gateway, kind: str) -> float:
    prefix = f'portico_gateway_upstream_errors_total{{kind="{kind}"}}'
    for line in requests.get(f"{gateway.url}/metrics", timeout=5).text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


def test_connect_timeout_is_retried_on_another_target(gateway, configure, upstream_a):
    with blackhole() as unreachable:
        config = configure([upstream_a, unreachable], retries=1, connect_timeout_ms=200)
        statuses = [gateway.get(f"{config.base_path}/echo", config.key).status_code for _ in range(10)]
        assert statuses == [200] * 10
        assert 1 <= upstream_errors(gateway, "connect_timeout") <= 2  # then ejected, once per worker


def test_connect_timeout_on_the_only_target_gives_504(gateway, configure):
    with blackhole() as unreachable:
        config = configure([unreachable], retries=0, connect_timeout_ms=200)
        response = gateway.get(f"{config.base_path}/echo", config.key)
    assert response.status_code == 504 and response.json()["error"]["code"] == "upstream_timeout"


class _ClosesKeptAliveConnections(socketserver.BaseRequestHandler):
    """Answers the first request of a connection with keep-alive, then closes the connection
    as the next request arrives: the race between an upstream's idle timeout and reuse."""

    def handle(self):
        received = b""
        answered = False
        while chunk := self.request.recv(65536):
            received += chunk
            if b"\r\n\r\n" in received:
                if answered:
                    return
                body = b'{"upstream": "closer"}'
                self.request.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                    % (len(body), body)
                )
                answered = True
                received = b""


@pytest.fixture
def closing_upstream():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _ClosesKeptAliveConnections)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_upstream_closing_a_kept_alive_connection_costs_no_error(gateway, configure, closing_upstream):
    config = configure([closing_upstream], retries=0)
    connect_errors = upstream_errors(gateway, "connect")
    statuses = [gateway.get(f"{config.base_path}/echo", config.key).status_code for _ in range(10)]
    assert statuses == [200] * 10  # replayed on a fresh connection, although retries are off
    assert upstream_errors(gateway, "stale_connection") >= 4  # pooled connections were reused and found closed
    assert upstream_errors(gateway, "connect") == connect_errors  # and the target was not blamed for it


def test_upstream_connections_are_kept_alive_and_reused(gateway, configure, upstream_a):
    config = configure([upstream_a])
    ports = {gateway.get(f"{config.base_path}/echo", config.key).json()["peer_port"] for _ in range(20)}
    # One pooled connection per worker (2 workers) carries all twenty requests.
    assert 1 <= len(ports) <= 2, ports
