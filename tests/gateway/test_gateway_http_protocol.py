"""The gateway's own HTTP/1.1 server protocol (gateway/server.py), spoken to over raw
sockets: what a client may send that ``requests`` never does."""

import json
import socket

import pytest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]


def _connect(gateway) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _request(config, method: bytes, path: bytes, *, version: bytes = b"HTTP/1.1", extra: bytes = b"") -> bytes:
    """A request to ``path`` under the configured API, with its key (and ``extra`` header lines)."""
    return b"%s %s%s %s\r\nhost: x\r\nauthorization: Bearer %s\r\n%s\r\n" % (
        method,
        config.base_path.encode(),
        path,
        version,
        config.key.encode(),
        extra,
    )


def _read_answers(sock: socket.socket, count: int) -> list[tuple[bytes, dict, bytes]]:
    """``count`` complete answers (status line, headers, body), by Content-Length or chunks."""
    buffer = b""
    answers = []
    while len(answers) < count:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            if not chunk:
                return answers
            buffer += chunk
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.split(b"\r\n")
        headers = {}
        for line in lines:
            name, _colon, value = line.partition(b":")
            headers[name.strip().lower().decode()] = value.strip().decode()
        if status_line.split()[1] == b"100":
            continue
        if "content-length" in headers:
            size = int(headers["content-length"])
            while len(buffer) < size:
                buffer += sock.recv(65536)
            body, buffer = buffer[:size], buffer[size:]
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                while b"\r\n" not in buffer:
                    buffer += sock.recv(65536)
                size_line, buffer = buffer.split(b"\r\n", 1)
                size = int(size_line, 16)
                while len(buffer) < size + 2:
                    buffer += sock.recv(65536)
                body, buffer = body + buffer[:size], buffer[size + 2 :]
                if size == 0:
                    break
        else:
            body = b""
        answers.append((status_line, headers, body))
    return answers


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, TimeoutError):
        return False


def test_pipelined_requests_are_answered_in_order_on_one_connection(gateway, configure, upstream_a):
    config = configure([upstream_a])
    sock = _connect(gateway)
    sock.sendall(b"".join(_request(config, b"GET", b"/echo?n=%d" % n) for n in range(5)))
    answers = _read_answers(sock, 5)
    sock.close()
    assert [a[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 5
    assert [json.loads(a[2])["path"] for a in answers] == [f"/echo?n={n}" for n in range(5)]


def test_a_request_that_is_not_http_gets_a_json_400_and_the_connection_is_closed(gateway):
    sock = _connect(gateway)
    sock.sendall(b"GET / HTTP/1.1\r\nhost x no colon\r\n\r\n")
    (status, headers, body) = _read_answers(sock, 1)[0]
    assert status.startswith(b"HTTP/1.1 400")
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert b'"code":"bad_request"' in body
    assert _closed_by_peer(sock)
    sock.close()


def test_expect_100_continue_gets_the_go_ahead_before_the_body_is_sent(gateway, configure, upstream_a):
    config = configure([upstream_a])
    sock = _connect(gateway)
    sock.sendall(_request(config, b"POST", b"/echo", extra=b"content-length: 5\r\nexpect: 100-continue\r\n"))
    first = sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    sock.sendall(b"hello")
    status, _headers, body = _read_answers(sock, 1)[0]
    sock.close()
    assert status == b"HTTP/1.1 200 OK" and b'"body_bytes":5' in body.replace(b" ", b"")


def test_http_1_0_gets_its_answer_and_then_the_connection_closes(gateway, configure, upstream_a):
    config = configure([upstream_a])
    sock = _connect(gateway)
    sock.sendall(_request(config, b"GET", b"/echo", version=b"HTTP/1.0"))
    status, headers, body = _read_answers(sock, 1)[0]
    assert status == b"HTTP/1.1 200 OK" and headers["connection"] == "close" and body
    assert _closed_by_peer(sock)
    sock.close()


def test_head_answers_carry_headers_and_no_body_and_keep_the_connection(gateway, configure, upstream_a):
    config = configure([upstream_a])
    sock = _connect(gateway)
    for _ in range(2):
        sock.sendall(_request(config, b"HEAD", b"/echo"))
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 200 OK") and head.endswith(b"\r\n\r\n")
    # Nothing followed either head: a body would be read here as the start of the next answer.
    sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        sock.recv(1)
    sock.close()


def test_a_chunked_upstream_answer_reaches_the_client_chunked_and_whole(gateway, configure, upstream_a):
    config = configure([upstream_a])
    sock = _connect(gateway)
    sock.sendall(_request(config, b"GET", b"/sse?n=3&interval_ms=10"))
    status, headers, body = _read_answers(sock, 1)[0]
    sock.close()
    assert status == b"HTTP/1.1 200 OK" and headers["transfer-encoding"] == "chunked"
    assert body == b"data: event 0\n\ndata: event 1\n\ndata: event 2\n\n"
