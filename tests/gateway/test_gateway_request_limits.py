"""Request heads and slow clients against the real gateway (gunicorn, 2 workers), over raw
sockets to 127.0.0.1: the caps and deadlines of gateway/server.py, with small settings."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import time

import pytest
import requests
from django.conf import settings

from tests.gateway.conftest import GatewayProcess

pytestmark = [pytest.mark.gateway, pytest.mark.django_db(transaction=True)]

HEAD_TIMEOUT = 1.0
MAX_HEADER_BYTES = 4096
MAX_CONNECTIONS_PER_WORKER = 12


@pytest.fixture(scope="module")
def limited_gateway(django_db_setup, django_db_blocker, tmp_path_factory):
    process = GatewayProcess(
        settings.REDIS_URL,
        tmp_path_factory.mktemp("limited-gateway"),
        extra_env={
            "GATEWAY_HEAD_TIMEOUT": str(HEAD_TIMEOUT),
            "GATEWAY_MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
            "GATEWAY_MAX_CONNECTIONS_PER_WORKER": str(MAX_CONNECTIONS_PER_WORKER),
        },
    )
    process.start()
    yield process
    process.stop()


def connect(gateway: GatewayProcess, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until_closed(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything the gateway sends until it closes (or ``timeout`` passes: then fail)."""
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
        if not readable:
            break
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"the gateway did not close the connection within {timeout}s; it sent {data[:300]!r}")


def json_error(raw: bytes, status: int) -> str:
    """The error code of a closing JSON answer with ``status``."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(b":") for line in lines)}
    assert status_line.startswith(b"HTTP/1.1 %d " % status), raw[:300]
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"connection"] == b"close"
    assert len(body) == int(headers[b"content-length"])
    return json.loads(body)["error"]["code"]


def worker_rss_kib(gateway: GatewayProcess) -> dict[int, int]:
    assert gateway.process is not None
    pids = [int(pid) for pid in subprocess.check_output(["pgrep", "-P", str(gateway.process.pid)]).split()]
    sizes = {}
    for pid in pids:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    sizes[pid] = int(line.split()[1])
    return sizes


def test_a_60_mb_header_never_finished_is_refused_with_431_without_growing_the_worker(limited_gateway):
    before = worker_rss_kib(limited_gateway)
    sock = connect(limited_gateway)
    sock.sendall(b"GET /_portico/healthz HTTP/1.1\r\nhost: gateway.test\r\nx-big: ")
    chunk = b"a" * 65536
    sent = 0
    deadline = time.monotonic() + 10
    # Send until the gateway answers: it must, long before 60 MB (or 10 s) have gone.
    while sent < 60 * 2**20 and time.monotonic() < deadline:
        readable, writable, _ = select.select([sock], [sock], [], 1.0)
        if readable:
            break
        if writable:
            try:
                sent += sock.send(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
    raw = read_until_closed(sock)
    sock.close()
    assert json_error(raw, 431) == "headers_too_large"
    # What was sent past the cap sat in the kernel's socket buffers, never in the worker.
    assert sent < 60 * 2**20
    after = worker_rss_kib(limited_gateway)
    growth = {pid: after[pid] - before[pid] for pid in before if pid in after}
    assert growth and max(growth.values()) < 4 * 1024, growth


def test_a_client_trickling_its_head_is_closed_with_408_within_the_head_timeout(limited_gateway):
    sock = connect(limited_gateway)
    time.sleep(0.3)  # the deadline runs from the first byte, not from the connection
    started = time.monotonic()
    for byte in b"GET /_portico/healthz HTTP/1.1\r\nhost: gateway.test\r\nx-slow: " + b"a" * 100:
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            break
        try:
            sock.send(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            break
        time.sleep(0.1)  # ten bytes a second: each would have kept an idle timer from firing
    raw = read_until_closed(sock)
    closed = time.monotonic() - started
    sock.close()
    assert json_error(raw, 408) == "request_timeout"
    assert closed <= HEAD_TIMEOUT + 1.0


def test_a_20_kb_url_is_refused_with_414(limited_gateway):
    sock = connect(limited_gateway)
    sock.sendall(b"GET /%s HTTP/1.1\r\nhost: gateway.test\r\n\r\n" % (b"a" * 20_000))
    raw = read_until_closed(sock)
    sock.close()
    assert json_error(raw, 414) == "request_line_too_long"


def test_more_header_lines_than_allowed_are_refused_with_431(limited_gateway):
    sock = connect(limited_gateway)
    lines = b"".join(b"x-h%d: v\r\n" % n for n in range(101))
    sock.sendall(b"GET /_portico/healthz HTTP/1.1\r\nhost: gateway.test\r\n%s\r\n" % lines)
    raw = read_until_closed(sock)
    sock.close()
    assert json_error(raw, 431) == "headers_too_large"


def test_connections_past_the_per_worker_cap_get_503_and_are_closed_then_capacity_returns(limited_gateway):
    opened = [connect(limited_gateway, timeout=2) for _ in range(3 * MAX_CONNECTIONS_PER_WORKER)]
    time.sleep(0.5)  # a refusal is sent as the connection is accepted; the others stay silent
    answered, _, _ = select.select(opened, [], [], 0)
    for sock in answered:
        assert json_error(read_until_closed(sock), 503) == "too_many_connections"
    refused = len(answered)
    for sock in opened:
        sock.close()
    # However the kernel spread them, two workers hold at most twice the cap.
    assert refused >= len(opened) - 2 * MAX_CONNECTIONS_PER_WORKER
    time.sleep(0.2)
    assert requests.get(f"{limited_gateway.url}/_portico/healthz", timeout=5).status_code == 200
