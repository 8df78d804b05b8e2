"""The gateway's HTTP/1.1 protocol (gateway/server.py) in process: a real asyncio loop, a
transport that records what the protocol writes, and small ASGI apps written here. What
a client may send that no HTTP library would: oversized and unfinished heads, trickles,
stalled bodies, request-smuggling shapes, more connections than a worker takes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import httptools
import pytest
from uvicorn.server import ServerState

from gateway.errors import ResponseAborted
from gateway.server import GatewayHttpProtocol
from gateway.settings import GatewaySettings

LIMITS = GatewaySettings(
    max_request_line_bytes=1024,
    max_header_bytes=4096,
    max_header_count=20,
    head_timeout=0.2,
    body_idle_timeout=0.15,
    max_connections_per_worker=3,
)


class RecordingTransport(asyncio.Transport):
    """What a socket transport does that the protocol can see: it records writes, and on
    close tells the protocol a loop turn later, as asyncio's transports do."""

    def __init__(self, loop: asyncio.AbstractEventLoop, protocol: GatewayHttpProtocol):
        super().__init__()
        self.loop = loop
        self.protocol = protocol
        self.written = bytearray()
        self.closed = False
        self.closed_at: float | None = None
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50123)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "the protocol wrote after closing"
        self.written += data

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.closed_at = time.monotonic()
            self.loop.call_soon(self.protocol.connection_lost, None)

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, str]:
        assert self.headers["content-type"] == "application/json"
        return json.loads(self.body)["error"]


def parse_answers(raw: bytes) -> list[Answer]:
    """Every complete answer in ``raw`` (interim 100s left out), framed as a client would."""
    answers: list[Answer] = []

    class Collector:
        def __init__(self) -> None:
            self.headers: dict[str, str] = {}
            self.body = b""

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers[name.decode().lower()] = value.decode()

        def on_body(self, body: bytes) -> None:
            self.body += body

        def on_message_complete(self) -> None:
            status = parser.get_status_code()
            if status != 100:
                answers.append(Answer(status, self.headers, self.body))
            self.headers, self.body = {}, b""

    parser = httptools.HttpResponseParser(Collector())
    parser.feed_data(raw)
    return answers


@dataclass
class Connection:
    loop: asyncio.AbstractEventLoop
    protocol: GatewayHttpProtocol
    transport: RecordingTransport
    state: ServerState
    sent: int = 0

    def send(self, data: bytes) -> None:
        self.sent += len(data)
        self.protocol.data_received(data)

    def run(self, seconds: float = 0.0) -> None:
        """Let the loop run: the app, the protocol's timer, the transport's close."""
        self.loop.run_until_complete(asyncio.sleep(seconds))
        self.loop.run_until_complete(asyncio.sleep(0))

    def run_until_closed(self, timeout: float = 2.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.transport.closed and time.monotonic() < deadline:
            self.run(0.005)
        self.run()

    def answers(self) -> list[Answer]:
        return parse_answers(bytes(self.transport.written))

    def only_answer(self) -> Answer:
        (answer,) = self.answers()
        return answer


@dataclass
class App:
    """An ASGI app that records what it was asked and answers JSON: the method, path,
    body and header count. ``answer`` replaces it for one test."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    answer: Callable[..., Any] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.calls.append(scope)
        if self.answer is not None:
            await self.answer(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            self.messages.append(message)
            if message["type"] != "http.request":
                return
            body += message["body"]
            if not message["more_body"]:
                break
        payload = json.dumps(
            {"method": scope["method"], "path": scope["path"], "body": body.decode(), "headers": len(scope["headers"])}
        ).encode()
        await send_json(send, 200, payload)


async def send_json(send: Any, status: int, payload: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(payload))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    for task in asyncio.all_tasks(loop):
        task.cancel()
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()


@pytest.fixture
def app() -> App:
    return App()


@pytest.fixture
def connect(loop: asyncio.AbstractEventLoop, app: App) -> Callable[..., Connection]:
    shared_state = ServerState()

    def connect(limits: GatewaySettings = LIMITS, keep_alive: float = 5.0) -> Connection:
        config = SimpleNamespace(loaded=True, loaded_app=app, root_path="", timeout_keep_alive=keep_alive)
        protocol = GatewayHttpProtocol(config, shared_state, {}, _loop=loop, limits=limits)  # type: ignore[arg-type]
        transport = RecordingTransport(loop, protocol)
        protocol.connection_made(transport)
        return Connection(loop, protocol, transport, shared_state)

    return connect


def get(path: bytes = b"/", extra: bytes = b"", version: bytes = b"HTTP/1.1", method: bytes = b"GET") -> bytes:
    return b"%s %s %s\r\nhost: example.org\r\n%s\r\n" % (method, path, version, extra)


def assert_refused(conn: Connection, status: int, code: str) -> None:
    answer = conn.answers()[-1]
    assert answer.status == status
    assert answer.error()["code"] == code
    assert answer.headers["connection"] == "close"
    assert conn.transport.closed


# -- caps on the head -----------------------------------------------------------------------


def test_a_request_target_over_the_cap_is_refused_with_414_while_it_is_still_arriving(connect, app):
    conn = connect()
    conn.send(b"GET /")
    while not conn.transport.closed and conn.sent < 1_000_000:
        conn.send(b"a" * 256)
    conn.run()
    assert_refused(conn, 414, "request_line_too_long")
    assert conn.sent <= LIMITS.max_request_line_bytes + 256 + 5
    assert app.calls == []


def test_a_target_at_the_cap_is_served(connect, app):
    conn = connect()
    conn.send(get(b"/" + b"a" * (LIMITS.max_request_line_bytes - 1)))
    conn.run()
    assert conn.only_answer().status == 200 and not conn.transport.closed


def test_header_section_over_the_cap_is_refused_with_431_before_it_is_buffered(connect, app):
    # One header that never ends: httptools holds a header line until its end, so only
    # counting each read stops it; here reads of 1 kB, up to the 60 MB of the report.
    conn = connect()
    conn.send(b"GET / HTTP/1.1\r\nhost: example.org\r\nx-big: ")
    chunk = b"a" * 1024
    while not conn.transport.closed and conn.sent < 60_000_000:
        conn.send(chunk)
    conn.run()
    assert_refused(conn, 431, "headers_too_large")
    assert conn.sent <= LIMITS.max_header_bytes + 2 * len(chunk) + 64
    assert app.calls == []
    conn.send(chunk)  # what follows a refusal is not read
    assert conn.protocol._head_fed <= LIMITS.max_header_bytes + 2 * len(chunk)


def test_a_whole_head_over_the_header_cap_in_one_read_is_refused_with_431(connect, app):
    conn = connect()
    conn.send(get(extra=b"".join(b"x-h%d: %s\r\n" % (n, b"v" * 1000) for n in range(5))))
    conn.run()
    assert_refused(conn, 431, "headers_too_large")
    assert app.calls == []


def test_headers_under_the_byte_cap_are_served(connect, app):
    conn = connect()
    conn.send(get(extra=b"".join(b"x-h%d: %s\r\n" % (n, b"v" * 1000) for n in range(3))))
    conn.run()
    assert conn.only_answer().status == 200


def test_more_header_lines_than_the_cap_are_refused_with_431(connect, app):
    conn = connect()
    conn.send(get(extra=b"".join(b"x-h%d: v\r\n" % n for n in range(LIMITS.max_header_count))))  # host makes 21
    conn.run()
    assert_refused(conn, 431, "headers_too_large")
    assert app.calls == []


def test_header_lines_past_the_count_cap_are_refused_before_the_head_ends(connect, app):
    conn = connect()
    conn.send(b"GET / HTTP/1.1\r\n")
    for n in range(LIMITS.max_header_count + 5):
        if conn.transport.closed:
            break
        conn.send(b"x-h%d: v\r\n" % n)
    conn.run()
    assert_refused(conn, 431, "headers_too_large")
    assert app.calls == []


def test_exactly_the_cap_of_header_lines_is_served(connect, app):
    conn = connect()
    conn.send(get(extra=b"".join(b"x-h%d: v\r\n" % n for n in range(LIMITS.max_header_count - 1))))
    conn.run()
    assert conn.only_answer().status == 200


# -- slow heads and idle connections -------------------------------------------------------


def test_a_head_trickled_one_byte_at_a_time_gets_408_at_the_head_deadline_from_its_first_byte(connect, app):
    conn = connect(keep_alive=5.0)
    conn.run(0.1)  # the deadline counts from the request's first byte, not the connection's
    first_byte = time.monotonic()
    for byte in get():
        if conn.transport.closed:
            break
        conn.send(bytes([byte]))
        conn.run(0.02)
    assert_refused(conn, 408, "request_timeout")
    assert conn.transport.closed_at is not None
    assert LIMITS.head_timeout - 0.01 <= conn.transport.closed_at - first_byte <= LIMITS.head_timeout + 0.15
    assert app.calls == []


def test_partial_head_bytes_do_not_extend_the_keep_alive_idle_timeout(connect, app):
    limits = GatewaySettings(head_timeout=0.25, body_idle_timeout=1.0)
    conn = connect(limits, keep_alive=0.2)
    conn.send(get())
    conn.run()
    assert conn.only_answer().status == 200
    conn.run(0.15)  # a request begins 50 ms before the idle deadline
    head_began = time.monotonic()
    # A byte every 30 ms: each would have restarted the idle clock; none restarts the head's.
    for byte in get(b"/" + b"a" * 100):
        if conn.transport.closed:
            break
        conn.send(bytes([byte]))
        conn.run(0.03)
    assert_refused(conn, 408, "request_timeout")
    assert conn.transport.closed_at is not None
    assert conn.transport.closed_at - head_began <= 0.25 + 0.15


def test_a_silent_connection_is_closed_without_an_answer_after_the_keep_alive_timeout(connect, app):
    conn = connect(keep_alive=0.15)
    opened = time.monotonic()
    conn.run_until_closed()
    assert conn.transport.written == b""
    assert conn.transport.closed_at is not None
    assert 0.14 <= conn.transport.closed_at - opened <= 0.15 + 0.15


def test_keep_alive_idle_time_counts_from_the_last_answer(connect, app):
    conn = connect(keep_alive=0.15)
    conn.run(0.1)
    conn.send(get(b"/one"))
    conn.run(0.1)  # 0.2 s after the connection opened: still open, since the answer restarted it
    assert not conn.transport.closed
    conn.send(get(b"/two"))
    conn.run()
    second_answered = time.monotonic()
    conn.run_until_closed()
    assert [a.status for a in conn.answers()] == [200, 200]
    assert conn.transport.closed_at is not None
    assert 0.14 <= conn.transport.closed_at - second_answered <= 0.15 + 0.15


# -- request bodies that stop -------------------------------------------------------------


async def answer_body_timeout(scope: dict[str, Any], receive: Any, send: Any, messages: list[dict[str, Any]]) -> None:
    """What gateway/app.py does with the body_timeout disconnect: answer 408 itself."""
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] == "http.disconnect":
            if message.get("reason") == "body_timeout":
                payload = b'{"error":{"code":"body_timeout","message":"The request body stopped arriving."}}'
                await send_json(send, 408, payload)
            return
        if not message["more_body"]:
            await send_json(send, 200, b"{}")
            return


def test_a_stalled_body_wakes_the_app_with_a_body_timeout_disconnect_and_its_408_closes_the_connection(connect, app):
    messages: list[dict[str, Any]] = []
    app.answer = lambda scope, receive, send: answer_body_timeout(scope, receive, send, messages)
    conn = connect()
    conn.send(get(method=b"POST", extra=b"content-length: 10\r\n") + b"abcd")
    conn.run()
    stalled = time.monotonic()
    conn.run(0.1)
    assert not conn.transport.closed and messages[-1]["type"] == "http.request"
    conn.run_until_closed()
    assert messages == [
        {"type": "http.request", "body": b"abcd", "more_body": True},
        {"type": "http.disconnect", "reason": "body_timeout"},
    ]
    answer = conn.only_answer()
    assert answer.status == 408 and answer.error()["code"] == "body_timeout"
    assert answer.headers["connection"] == "close"
    assert conn.transport.closed_at is not None
    assert LIMITS.body_idle_timeout - 0.01 <= conn.transport.closed_at - stalled <= LIMITS.body_idle_timeout + 0.15


def test_an_app_that_returns_after_a_body_timeout_without_answering_gets_a_408_written_for_it(connect, app):
    async def give_up(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (await receive())["type"] == "http.request":
            pass

    app.answer = give_up
    conn = connect()
    conn.send(get(method=b"POST", extra=b"content-length: 10\r\n") + b"abcd")
    conn.run_until_closed()
    assert_refused(conn, 408, "body_timeout")


def test_a_slow_but_steady_body_is_not_timed_out(connect, app):
    conn = connect()
    conn.send(get(method=b"POST", extra=b"content-length: 8\r\n"))
    for byte in b"abcdefgh":  # 0.4 s in all, never 0.15 s without a byte
        conn.run(0.05)
        conn.send(bytes([byte]))
    conn.run()
    answer = conn.only_answer()
    assert answer.status == 200 and json.loads(answer.body)["body"] == "abcdefgh"
    assert not conn.transport.closed


def test_body_inactivity_counts_from_when_the_app_asks_for_more(connect, app):
    messages: list[dict[str, Any]] = []

    async def busy_first(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(0.3)  # an upstream connect, say: longer than the body idle timeout
        await answer_body_timeout(scope, receive, send, messages)

    app.answer = busy_first
    conn = connect()
    conn.send(get(method=b"POST", extra=b"content-length: 8\r\n") + b"abcd")
    conn.run(0.35)
    conn.send(b"efgh")
    conn.run()
    assert conn.only_answer().status == 200
    assert [m["type"] for m in messages] == ["http.request", "http.request"]


# -- connections per worker ---------------------------------------------------------------


def test_a_connection_past_the_per_worker_cap_gets_503_and_is_closed_at_once(connect, app):
    kept = [connect() for _ in range(LIMITS.max_connections_per_worker)]
    refused = connect()
    refused.run()
    assert_refused(refused, 503, "too_many_connections")
    assert refused.protocol not in refused.state.connections
    refused.send(get())  # nothing it sends is read
    refused.run()
    assert len(refused.answers()) == 1 and app.calls == []
    kept[0].transport.close()
    kept[0].run()
    another = connect()
    another.send(get())
    another.run()
    assert another.only_answer().status == 200


# -- request smuggling ----------------------------------------------------------------------

SMUGGLING = {
    "content_length_and_chunked": b"content-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    "chunked_and_content_length": b"transfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n0\r\n\r\n",
    "two_different_content_lengths": b"content-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
    "two_equal_content_lengths": b"content-length: 5\r\ncontent-length: 5\r\n\r\nhello",
    "content_length_list": b"content-length: 5, 5\r\n\r\nhello",
    "content_length_with_sign": b"content-length: +5\r\n\r\nhello",
    "final_coding_not_chunked": b"transfer-encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    "coding_other_than_chunked": b"transfer-encoding: gzip\r\n\r\nabc",
    "chunked_twice": b"transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    "obs_fold": b"x-a: a\r\n b\r\n\r\n",
    "obs_fold_tab": b"x-a: a\r\n\tb\r\n\r\n",
    "space_before_colon": b"transfer-encoding : chunked\r\n\r\n0\r\n\r\n",
    "tab_before_colon": b"content-length\t: 5\r\n\r\nhello",
    "nul_in_value": b"x-a: a\x00b\r\n\r\n",
    "cr_in_value": b"x-a: a\rb\r\n\r\n",
    "bare_lf_after_header": b"x-a: b\nx-b: c\r\n\r\n",
    "upgrade_with_a_body": b"connection: upgrade\r\nupgrade: websocket\r\ncontent-length: 3\r\n\r\nabc",
}


@pytest.mark.parametrize("rest", SMUGGLING.values(), ids=SMUGGLING.keys())
def test_ambiguous_framing_is_refused_with_400_and_never_reaches_the_app(connect, app, rest):
    conn = connect()
    conn.send(b"POST / HTTP/1.1\r\nhost: example.org\r\n" + rest)
    conn.run()
    assert_refused(conn, 400, "bad_request")
    assert app.calls == []


def test_a_request_line_ending_in_a_bare_lf_is_refused_with_400(connect, app):
    conn = connect()
    conn.send(b"GET / HTTP/1.1\nhost: example.org\r\n\r\n")
    conn.run()
    assert_refused(conn, 400, "bad_request")
    assert app.calls == []


def test_a_coding_before_chunked_is_refused_with_501(connect, app):
    conn = connect()
    conn.send(b"POST / HTTP/1.1\r\nhost: example.org\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n")
    conn.run()
    assert_refused(conn, 501, "unsupported_transfer_coding")
    assert app.calls == []


def test_an_upgrade_request_without_a_body_is_answered_as_plain_http_and_the_next_one_too(connect, app):
    conn = connect()
    conn.send(get(b"/one", extra=b"connection: upgrade\r\nupgrade: websocket\r\n") + get(b"/two"))
    conn.run(0.01)
    assert [json.loads(a.body)["path"] for a in conn.answers()] == ["/one", "/two"]
    assert not conn.transport.closed


def test_a_pipelined_request_refused_while_an_answer_is_in_flight_lets_that_answer_finish_then_closes(connect, app):
    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(0.05)
        await send_json(send, 200, b'{"slow":true}')

    app.answer = slow
    conn = connect()
    conn.send(get(b"/slow") + get(b"/" + b"a" * 2000))
    conn.run_until_closed()
    answer = conn.only_answer()
    assert answer.status == 200 and answer.body == b'{"slow":true}'
    assert answer.headers["connection"] == "close"
    assert [scope["path"] for scope in app.calls] == ["/slow"]


# -- what the protocol always did ------------------------------------------------------


def test_pipelined_requests_are_answered_in_order(connect, app):
    conn = connect()
    conn.send(b"".join(get(b"/%d" % n) for n in range(5)))
    conn.run(0.01)
    assert [json.loads(a.body)["path"] for a in conn.answers()] == [f"/{n}" for n in range(5)]
    assert not conn.transport.closed


def test_a_chunked_request_body_reaches_the_app_whole(connect, app):
    conn = connect()
    conn.send(get(method=b"POST", extra=b"transfer-encoding: chunked\r\n") + b"5\r\nhello\r\n")
    conn.run(0.01)
    conn.send(b"6\r\n world\r\n0\r\n\r\n")
    conn.run()
    assert json.loads(conn.only_answer().body)["body"] == "hello world"


def test_expect_100_continue_is_answered_when_the_app_asks_for_the_body(connect, app):
    conn = connect()
    conn.send(get(method=b"POST", extra=b"content-length: 5\r\nexpect: 100-continue\r\n"))
    conn.run()
    assert conn.transport.written == b"HTTP/1.1 100 Continue\r\n\r\n"
    conn.send(b"hello")
    conn.run()
    assert json.loads(conn.only_answer().body)["body"] == "hello"


def test_head_answers_carry_headers_and_no_body_and_keep_the_connection(connect, app):
    conn = connect()
    conn.send(get(method=b"HEAD"))
    conn.run()
    raw = bytes(conn.transport.written)
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n") and raw.endswith(b"\r\n\r\n")
    assert b"content-length: " in raw and raw.count(b"\r\n\r\n") == 1
    assert not conn.transport.closed


def test_http_1_0_gets_its_answer_and_then_the_connection_closes(connect, app):
    conn = connect()
    conn.send(get(version=b"HTTP/1.0"))
    conn.run_until_closed()
    answer = conn.only_answer()
    assert answer.status == 200 and answer.headers["connection"] == "close"
    assert conn.transport.closed


def test_an_answer_without_a_length_is_sent_chunked(connect, app):
    async def stream(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"one ", "more_body": True})
        await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b"two", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    app.answer = stream
    conn = connect()
    conn.send(get())
    conn.run(0.03)
    raw = bytes(conn.transport.written)
    assert raw.endswith(b"\r\n\r\n4\r\none \r\n3\r\ntwo\r\n0\r\n\r\n")
    assert b"transfer-encoding: chunked\r\n" in raw
    answer = conn.only_answer()
    assert answer.body == b"one two" and not conn.transport.closed


# -- answers the app cannot complete ----------------------------------------------------------


def test_an_aborted_chunked_answer_closes_the_connection_without_its_final_chunk(connect, app):
    async def cut_short(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ResponseAborted("upstream_truncated")

    app.answer = cut_short
    conn = connect()
    conn.send(get() + get(b"/next"))  # a pipelined request must not be answered after it
    conn.run_until_closed()
    raw = bytes(conn.transport.written)
    assert b"7\r\npartial\r\n" in raw and not raw.endswith(b"0\r\n\r\n")
    assert conn.answers() == [] and len(app.calls) == 1


def test_a_body_shorter_than_its_content_length_closes_the_connection(connect, app):
    async def short(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"100")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"only ten b"})

    app.answer = short
    conn = connect()
    conn.send(get())
    conn.run_until_closed()
    # The client reads 10 of 100 bytes and then the end of the connection: an incomplete
    # answer, never the start of a next one.
    assert conn.transport.closed and bytes(conn.transport.written).endswith(b"only ten b")
