"""The gateway's HTTP/1.1 server protocol: a lean ASGI server for uvicorn's workers.

uvicorn runs the processes (gunicorn worker class, sockets, signals, lifespan, graceful
shutdown, the Date header); this class replaces only its per-connection HTTP protocol,
plugged in through uvicorn's own ``http`` setting. On this box uvicorn's protocol cost
45 us of CPU per request before the application did anything, against 18 us for the
same socket work without it (bench: bare ASGI vs a raw httptools protocol). What it
leaves out, and why that is safe here:

- one Python object per request (no event, no flow-control object, no access log);
- the response head is written together with the first body message, so a small answer
  leaves in one ``send()``; a head whose body is not ready in the same loop turn (an SSE
  stream waiting on its upstream) still leaves at the end of that turn;
- no header validation regexes: every header the gateway sends was parsed by httptools
  (which refuses CR and LF in values) or built by the gateway itself;
- one keep-alive timer per connection that re-arms itself, not one per request;
- one task per connection that runs its requests in turn, not one task per request;
- no WebSocket upgrades (the gateway proxies HTTP only) and no ``limit_concurrency``.

Everything else an ASGI HTTP server owes its app is here: keep-alive and pipelining,
request bodies streamed with back-pressure, ``Expect: 100-continue``, HEAD, HTTP/1.0,
chunked responses when no Content-Length is given, ``http.disconnect``, write
back-pressure, and uvicorn's graceful-shutdown bookkeeping.
"""

from __future__ import annotations

import asyncio
import http
import logging
from collections import deque
from urllib.parse import unquote

import httptools

log = logging.getLogger("portico.gateway.server")

HIGH_WATER = 65536  # buffered request body above which the socket stops being read


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


STATUS_LINES = {status: _status_line(status) for status in range(100, 600)}


def _closing_error(status: int, code: str, message: str) -> bytes:
    body = b'{"error":{"code":"%s","message":"%s"}}' % (code.encode(), message.encode())
    return b"%scontent-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s" % (
        STATUS_LINES[status],
        len(body),
        body,
    )


BAD_REQUEST = _closing_error(400, "bad_request", "The request is not valid HTTP/1.1.")
INTERNAL_ERROR = _closing_error(500, "internal_error", "The gateway failed; this is logged.")
DISCONNECT = {"type": "http.disconnect"}
ASGI_VERSION = {"version": "3.0", "spec_version": "2.3"}


class _Exchange:
    """One request and its response: the ``receive`` and ``send`` of ASGI."""

    __slots__ = (
        "conn",
        "scope",
        "keep_alive",
        "expect_continue",
        "body",
        "body_size",
        "more_body",
        "waiter",
        "started",
        "complete",
        "head",
        "chunked",
        "head_only",
        "disconnected",
    )

    def __init__(self, conn: GatewayHttpProtocol, scope: dict, keep_alive: bool, expect_continue: bool):
        self.conn = conn
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.body: list[bytes] = []
        self.body_size = 0
        self.more_body = True
        self.waiter: asyncio.Future | None = None
        self.started = False
        self.complete = False
        self.head: bytes | None = None  # written with the first body message
        self.chunked = False
        self.head_only = scope["method"] == "HEAD"
        self.disconnected = False

    # -- fed by the protocol --------------------------------------------------------------

    def feed_body(self, data: bytes) -> None:
        self.body.append(data)
        self.body_size += len(data)
        if self.body_size > HIGH_WATER:
            self.conn.pause_reading()
        self._wake()

    def end_body(self) -> None:
        self.more_body = False
        self._wake()

    def lose_client(self) -> None:
        self.disconnected = True
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- ASGI -----------------------------------------------------------------------------

    async def receive(self) -> dict:
        conn = self.conn
        if self.expect_continue:
            self.expect_continue = False
            if not conn.transport.is_closing():
                conn.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while not self.body and self.more_body and not self.disconnected and not self.complete:
            conn.resume_reading()
            self.waiter = conn.loop.create_future()
            await self.waiter
        if self.disconnected or self.complete:
            return DISCONNECT
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.body.clear()
        self.body_size = 0
        conn.resume_reading()
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    async def send(self, message: dict) -> None:
        conn = self.conn
        if conn.write_paused is not None and not self.disconnected:
            await conn.write_paused
        # Closing but not yet told (connection_lost comes a loop turn later): a write would raise.
        if self.disconnected or conn.transport.is_closing():
            return
        if not self.started:
            if message["type"] != "http.response.start":
                raise RuntimeError(f"expected http.response.start, got {message['type']}")
            self.started = True
            self.expect_continue = False
            status = message["status"]
            parts = [STATUS_LINES[status], conn.default_head()]
            length_given = False
            for name, value in message.get("headers", ()):
                if name == b"content-length":
                    length_given = True
                parts += (name, b": ", value, b"\r\n")  # cheaper than formatting a line each
            if not self.keep_alive:
                parts.append(b"connection: close\r\n")
            if not length_given and not self.head_only and status != 204 and status != 304:
                self.chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
            parts.append(b"\r\n")
            self.head = b"".join(parts)
            # A body that follows in this loop turn leaves with the head; otherwise the
            # head leaves on its own at the end of the turn.
            conn.loop.call_soon(self._flush_head)
            return
        if self.complete:
            raise RuntimeError(f"unexpected {message['type']} after the response completed")
        if message["type"] != "http.response.body":
            raise RuntimeError(f"expected http.response.body, got {message['type']}")
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if self.head_only:
            out = b""
        elif self.chunked:
            out = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
            if not more:
                out += b"0\r\n\r\n"
        else:
            out = body
        head = self.head
        if head is not None:
            self.head = None
            out = head + out
        if out:
            conn.transport.write(out)
        if not more:
            self.complete = True
            self._wake()
            conn.response_complete(self)

    def _flush_head(self) -> None:
        head = self.head
        if head is not None and not self.disconnected and not self.conn.transport.is_closing():
            self.head = None
            self.conn.transport.write(head)

    async def run(self, app) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:  # a shutdown past its grace period
            self.conn.transport.close()
            raise
        except Exception as error:
            log.error("exception in the ASGI application", exc_info=error)
            self._abandon()
            return
        if not self.complete and not self.disconnected:
            log.error("the ASGI application returned without completing its response")
            self._abandon()

    def _abandon(self) -> None:
        """After an app failure: a JSON 500 if nothing was sent yet, then close."""
        transport = self.conn.transport
        if not transport.is_closing():
            if not self.started and not self.disconnected:
                transport.write(INTERNAL_ERROR)
            transport.close()


class GatewayHttpProtocol(asyncio.Protocol):
    """Per connection; the constructor is the one uvicorn calls for its ``http`` class."""

    def __init__(self, config, server_state, app_state: dict, _loop: asyncio.AbstractEventLoop | None = None):
        if not config.loaded:
            config.load()
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.app_state = app_state
        self.root_path = config.root_path
        self.keep_alive_timeout = config.timeout_keep_alive
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.server = self.client = None
        self.scheme = "http"
        self.current: _Exchange | None = None  # the request being answered
        self.parsing: _Exchange | None = None  # the request being read (the same, unless pipelined)
        # One task per connection runs its requests one after the other (see _start).
        self.runner: asyncio.Task | None = None
        self.up_next: _Exchange | None = None
        self.runner_idle: asyncio.Future | None = None
        self.pipeline: deque[_Exchange] = deque()
        self.reading_paused = False
        self.write_paused: asyncio.Future | None = None
        self.last_active = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None
        self._default_source: list | None = None
        self._default_head = b""
        # Per request, filled by the parser callbacks.
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._expect_continue = False

    # -- connection -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        self.server_state.connections.add(self)
        self.server = _address(transport.get_extra_info("sockname"))
        self.client = _address(transport.get_extra_info("peername"))
        if transport.get_extra_info("sslcontext"):
            self.scheme = "https"
        self.last_active = self.loop.time()
        self.idle_timer = self.loop.call_later(self.keep_alive_timeout, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server_state.connections.discard(self)
        self._wake_runner()  # an idle runner sees the closed transport and ends
        if self.idle_timer is not None:
            self.idle_timer.cancel()
            self.idle_timer = None
        # The request being read is always the current one or the last pipelined one.
        for exchange in (self.current, *self.pipeline):
            if exchange is not None and not exchange.complete:
                exchange.lose_client()
        self.pipeline.clear()
        if self.write_paused is not None and not self.write_paused.done():
            self.write_paused.set_result(None)
        self.write_paused = None

    def eof_received(self) -> None:
        pass  # the transport closes itself; connection_lost tells the exchanges

    def data_received(self, data: bytes) -> None:
        self.last_active = self.loop.time()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # no upgrades here: the request is answered as plain HTTP
        except httptools.HttpParserError:
            if self.current is None or self.current.complete:
                self.transport.write(BAD_REQUEST)
            self.transport.close()

    def pause_reading(self) -> None:
        if not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and not self.pipeline:
            self.reading_paused = False
            self.transport.resume_reading()

    def pause_writing(self) -> None:
        if self.write_paused is None:
            self.write_paused = self.loop.create_future()

    def resume_writing(self) -> None:
        waiter, self.write_paused = self.write_paused, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def default_head(self) -> bytes:
        """uvicorn replaces its default headers (Date) once a second; encoded once per change."""
        source = self.server_state.default_headers
        if source is not self._default_source:
            self._default_source = source
            self._default_head = b"".join(b"%s: %s\r\n" % (name, value) for name, value in source)
        return self._default_head

    def _check_idle(self) -> None:
        self.idle_timer = None
        if self.transport.is_closing():
            return
        busy = self.current is not None and not self.current.complete
        idle_for = self.loop.time() - self.last_active
        if not busy and idle_for >= self.keep_alive_timeout:
            self.transport.close()
            return
        self.idle_timer = self.loop.call_later(max(0.1, self.keep_alive_timeout - idle_for), self._check_idle)

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: close now if idle, else after the answer in flight."""
        if self.current is None or self.current.complete:
            self.transport.close()
        else:
            self.current.keep_alive = False

    # -- parser callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._expect_continue = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self._expect_continue = True
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        version = parser.get_http_version()
        url = httptools.parse_url(self._url)
        raw_path = url.path
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        root = self.root_path
        scope = {
            "type": "http",
            "asgi": ASGI_VERSION,
            "http_version": version,
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,
            "method": parser.get_method().decode("ascii"),
            "root_path": root,
            "path": root + path if root else path,
            "raw_path": root.encode() + raw_path if root else raw_path,
            "query_string": url.query or b"",
            "headers": self._headers,
            "state": self.app_state.copy(),
        }
        keep_alive = version != "1.0" and parser.should_keep_alive()
        exchange = _Exchange(self, scope, keep_alive, self._expect_continue)
        self.parsing = exchange
        if self.current is None or self.current.complete:
            self._start(exchange)
        else:
            self.pipeline.append(exchange)  # answered in order, after the one in flight
            self.pause_reading()

    def on_body(self, body: bytes) -> None:
        exchange = self.parsing
        if exchange is not None and not exchange.complete:
            exchange.feed_body(body)

    def on_message_complete(self) -> None:
        exchange = self.parsing
        if exchange is not None:
            exchange.end_body()

    # -- requests -------------------------------------------------------------------------

    def _start(self, exchange: _Exchange) -> None:
        """Hand a request to the connection's runner task, starting it for the first one.
        A task per request cost its creation, its registration in asyncio's task set and in
        uvicorn's, and a done callback; a kept-alive connection now pays them once. The
        runner is in uvicorn's task set, so graceful shutdown still waits for the request
        in flight, and it ends when the connection does."""
        self.current = exchange
        self.up_next = exchange
        if self.runner is None:
            task = self.runner = self.loop.create_task(self._run_requests())
            tasks = self.server_state.tasks
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        else:
            self._wake_runner()

    def _wake_runner(self) -> None:
        idle, self.runner_idle = self.runner_idle, None
        if idle is not None and not idle.done():
            idle.set_result(None)

    async def _run_requests(self) -> None:
        try:
            while True:
                exchange = self.up_next
                if exchange is None:
                    if self.transport.is_closing():
                        return
                    self.runner_idle = self.loop.create_future()
                    await self.runner_idle
                    continue
                self.up_next = None
                await exchange.run(self.app)
        finally:
            self.runner = None

    def response_complete(self, exchange: _Exchange) -> None:
        self.server_state.total_requests += 1
        self.last_active = self.loop.time()
        if not exchange.keep_alive:
            self.transport.close()
            return
        if self.pipeline:
            self._start(self.pipeline.popleft())
        elif self.reading_paused:
            self.resume_reading()


def _address(value) -> tuple[str, int] | None:
    if isinstance(value, tuple | list) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None
