"""Raw HTTP/1.1 over sockets, for tests whose point is bytes that ``requests`` would never
send or would quietly normalise: a client side (``RawClient``: send bytes, read one whole
answer by Content-Length or chunks, and tell an answer cut short from one that hangs) and a
hand-written upstream (``RawUpstream``: a thread with a listening socket on 127.0.0.1 whose
answers are whatever bytes the test writes).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gateway.calllog import records_of

CALL_STREAM = "portico:calls"


def _b(value: str | bytes | int) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("latin-1")


def build_request(
    method: str | bytes,
    target: str | bytes,
    headers: Iterable[tuple[str | bytes, str | bytes | int]] = (),
    body: bytes = b"",
    *,
    host: str | bytes | None = "gateway.test",
) -> bytes:
    """One request, byte for byte as given: header names keep their case, nothing is added
    but a Host line first (unless ``host`` is None). No Content-Length is computed."""
    lines = [b"%s %s HTTP/1.1\r\n" % (_b(method), _b(target))]
    if host is not None:
        lines.append(b"Host: %s\r\n" % _b(host))
    lines += [b"%s: %s\r\n" % (_b(name), _b(value)) for name, value in headers]
    return b"".join(lines) + b"\r\n" + body


@dataclass(repr=False)
class RawResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]  # (lower-case name, value), in order, repeats kept
    body: bytes
    complete: bool  # the whole message arrived (by its Content-Length, chunks, or EOF framing)
    eof: bool = False  # the peer closed the connection while (or right after) this was read
    timed_out: bool = False  # nothing more arrived within the timeout, message incomplete
    head: bytes = b""

    def __repr__(self) -> str:
        state = "complete" if self.complete else "eof" if self.eof else "timed out" if self.timed_out else "partial"
        return f"<{self.status} {self.reason} ({state}) {dict(self.headers)} {self.body[:300]!r}>"

    def header(self, name: str) -> str | None:
        values = self.values(name)
        return values[0] if values else None

    def values(self, name: str) -> list[str]:
        name = name.lower()
        return [v for n, v in self.headers if n == name]

    def json(self):
        return json.loads(self.body)

    @property
    def error_code(self) -> str | None:
        try:
            return self.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            return None


class RawClient:
    """One client connection to ``port`` (from ``source`` when given, e.g. "127.0.0.2")."""

    def __init__(self, port: int, source: str | None = None, timeout: float = 5.0):
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=timeout, source_address=(source, 0) if source else None
        )
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buffer = b""
        self.eof = False

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> bool:
        """Read more into the buffer. False on EOF (or reset); TimeoutError past ``deadline``."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def _take(self, n: int) -> bytes:
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def read_response(self, *, head_request: bool = False, timeout: float | None = None) -> RawResponse:
        """The next final answer (1xx ones are skipped). Never raises on a short or hanging
        answer: ``complete`` says whether it all arrived, ``eof``/``timed_out`` why not."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        response = RawResponse(0, "", [], b"", complete=False)
        try:
            while True:
                while b"\r\n\r\n" not in self.buffer:
                    if not self._fill(deadline):
                        response.eof = True
                        response.body = self.buffer
                        return response
                end = self.buffer.index(b"\r\n\r\n")
                head = self._take(end + 4)
                status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
                _version, status, *reason = status_line.split(" ", 2)
                response.head = head
                response.status = int(status)
                response.reason = reason[0] if reason else ""
                response.headers = []
                for line in lines:
                    name, _colon, value = line.partition(":")
                    response.headers.append((name.strip().lower(), value.strip()))
                if not 100 <= response.status < 200:
                    break
            self._read_body(response, head_request, deadline)
        except TimeoutError:
            response.timed_out = True
        response.eof = response.eof or self.eof
        return response

    def _read_body(self, response: RawResponse, head_request: bool, deadline: float) -> None:
        if head_request or response.status in (204, 304):
            response.complete = True
            return
        transfer = (response.header("transfer-encoding") or "").lower()
        length = response.header("content-length")
        if "chunked" in transfer:
            while True:
                while b"\r\n" not in self.buffer:
                    if not self._fill(deadline):
                        response.body += self.buffer
                        return
                size_line = self.buffer[: self.buffer.index(b"\r\n")]
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                while len(self.buffer) < len(size_line) + 2 + size + 2:
                    if not self._fill(deadline):
                        response.body += self.buffer[len(size_line) + 2 :][:size]
                        return
                self._take(len(size_line) + 2)
                response.body += self._take(size)
                self._take(2)
                if size == 0:
                    response.complete = True
                    return
        elif length is not None:
            size = int(length)
            while len(self.buffer) < size:
                if not self._fill(deadline):
                    response.body = self._take(len(self.buffer))
                    return
            response.body = self._take(size)
            response.complete = True
        else:  # delimited by the connection's end
            while self._fill(deadline):
                pass
            response.body = self._take(len(self.buffer))
            response.complete = True

    def read_extra(self, wait: float = 0.3) -> bytes:
        """Whatever else arrives within ``wait`` seconds (or until EOF), after an answer."""
        deadline = time.monotonic() + wait
        try:
            while self._fill(deadline):
                pass
        except (TimeoutError, OSError):
            pass
        return self._take(len(self.buffer))

    def closed_by_peer(self, wait: float = 2.0) -> bool:
        self.read_extra(wait)
        return self.eof


def exchange(port: int, data: bytes, *, source: str | None = None, head_request: bool = False, timeout=5.0):
    """Send ``data`` on a new connection and read one answer."""
    with RawClient(port, source, timeout) as client:
        client.send(data)
        return client.read_response(head_request=head_request)


def find_call_record(redis_client, request_id: str, timeout: float = 10.0) -> dict:
    """The call-log record of ``request_id`` from the Redis stream (waits for the flush)."""
    deadline = time.monotonic() + timeout
    while True:
        for _id, fields in redis_client.xrange(CALL_STREAM):
            for record in records_of(fields):
                if record["request_id"] == request_id:
                    return record
        if time.monotonic() > deadline:
            raise AssertionError(f"no call record for request {request_id} within {timeout}s")
        time.sleep(0.05)


# -- a hand-written upstream -----------------------------------------------------------------


@dataclass
class UpstreamRequest:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    connection: int  # which accepted connection (0, 1, ...) carried it
    index: int  # its position on that connection (0 for the first)


Handler = Callable[[socket.socket, UpstreamRequest], bool]


@dataclass
class RawUpstream:
    """An upstream on 127.0.0.1 that reads request heads (and Content-Length bodies) and lets
    ``handler(sock, request)`` write any bytes back; the handler returns False to stop
    serving that connection (which is then closed). ``requests`` lists what arrived."""

    handler: Handler
    requests: list[UpstreamRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> RawUpstream:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                sock, _peer = self.listener.accept()
            except OSError:
                return
            with self._lock:
                number = self.connections
                self.connections += 1
                self._socks.append(sock)
            threading.Thread(target=self._serve, args=(sock, number), daemon=True).start()

    def _serve(self, sock: socket.socket, number: int) -> None:
        buffer = b""
        index = 0
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                request_line, *lines = head.decode("latin-1").split("\r\n")
                method, target, _version = request_line.split(" ", 2)
                headers = []
                for line in lines:
                    name, _colon, value = line.partition(":")
                    headers.append((name.strip().lower(), value.strip()))
                length = int(next((v for n, v in headers if n == "content-length"), "0"))
                while len(buffer) < length:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buffer += data
                body, buffer = buffer[:length], buffer[length:]
                request = UpstreamRequest(method, target, headers, body, number, index)
                with self._lock:
                    self.requests.append(request)
                index += 1
                if not self.handler(sock, request):
                    return
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                sock.close()

    def stop(self) -> None:
        self._stopped = True
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            for sock in self._socks:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()


def http_response(body: bytes, status: str = "200 OK", headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A complete Content-Length answer."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return b"HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s" % (
        status.encode(),
        len(body),
        extra.encode(),
        body,
    )
