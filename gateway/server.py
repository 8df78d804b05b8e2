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
- one timer per connection that re-arms itself, not one per request;
- one task per connection that runs its requests in turn, not one task per request;
- no WebSocket upgrades (the gateway proxies HTTP only) and no ``limit_concurrency``.

Everything else an ASGI HTTP server owes its app is here: keep-alive and pipelining,
request bodies streamed with back-pressure, ``Expect: 100-continue``, HEAD, HTTP/1.0,
chunked responses when no Content-Length is given, ``http.disconnect``, write
back-pressure, and uvicorn's graceful-shutdown bookkeeping.

Clients that send too much or too slowly (limits from ``gateway/settings.py``). Each
refusal is a JSON error with ``connection: close``, then the connection closes; while an
answer is still in flight it finishes first and nothing more is read.

- 414 ``request_line_too_long``: a request target over ``max_request_line_bytes``
  (llhttp bounds the method and version itself), refused as it grows.
- 431 ``headers_too_large``: header lines over ``max_header_bytes`` together, or more
  than ``max_header_count`` of them. httptools holds a header line until it ends, so
  counting in ``on_header`` would not stop one that never ends; heads are measured at
  the end of each read and when they end instead, which costs a request nothing and
  lets a client get at most one read (250 kB with uvloop) past a cap.
- 408 ``request_timeout``: a head not complete ``head_timeout`` after its first byte.
  Keep-alive idleness (uvicorn's ``timeout_keep_alive``) counts from the connection's
  start or its last answer; bytes do not extend it, since the first byte of a request
  switches to the head deadline. A silent idle connection is just closed.
- 503 ``too_many_connections``: a connection past ``max_connections_per_worker``,
  answered and closed as soon as it is accepted.
- 400 ``bad_request``: anything llhttp refuses, which covers the request-smuggling
  shapes (Content-Length with Transfer-Encoding, two Content-Lengths, a final coding
  other than chunked, obs-fold, whitespace before a colon, NUL/CR/LF in values, bare LF
  line ends), and a request asking for an upgrade while declaring a body: llhttp would
  skip that body and read it as the next request.
- 501 ``unsupported_transfer_coding``: a Transfer-Encoding other than plain ``chunked``
  (``gzip, chunked``): the gateway would forward the body without its coding.

An extension to ASGI's ``receive``: when the app waits for more request body and none
arrives for ``body_idle_timeout``, ``receive()`` returns ``{"type": "http.disconnect",
"reason": "body_timeout"}`` (and keeps returning it). The client is still connected:
the app answers (408 ``body_timeout``) through ``send`` as usual, and the connection
closes after that answer. An app that returns without answering gets that 408 written
for it.
"""

from __future__ import annotations

import asyncio
import http
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast
from urllib.parse import unquote

import httptools

from gateway.errors import ResponseAborted
from gateway.settings import GatewaySettings, gateway_settings

log = logging.getLogger("portico.gateway.server")

HIGH_WATER = 65536  # buffered request body above which the socket stops being read

Message = dict[str, Any]
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ServerConfig(Protocol):
    """What this protocol reads of uvicorn's ``Config``."""

    loaded: bool
    root_path: str

    @property
    def loaded_app(self) -> ASGIApp: ...

    @property
    def timeout_keep_alive(self) -> float: ...

    def load(self) -> None: ...


class ServerState(Protocol):
    """uvicorn's ``ServerState``: shared by the connections of one worker."""

    total_requests: int
    connections: set[Any]
    tasks: set[asyncio.Task[None]]
    default_headers: list[tuple[bytes, bytes]]


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
REQUEST_LINE_TOO_LONG = _closing_error(414, "request_line_too_long", "The request line is too long.")
HEADERS_TOO_LARGE = _closing_error(431, "headers_too_large", "The request headers are too large or too many.")
REQUEST_TIMEOUT = _closing_error(408, "request_timeout", "The request head did not arrive in time.")
BODY_TIMEOUT = _closing_error(408, "body_timeout", "The request body stopped arriving.")
TOO_MANY_CONNECTIONS = _closing_error(503, "too_many_connections", "The gateway has too many open connections.")
UNSUPPORTED_TRANSFER_CODING = _closing_error(
    501, "unsupported_transfer_coding", "Only the chunked transfer coding is supported."
)
DISCONNECT: Message = {"type": "http.disconnect"}
BODY_TIMEOUT_DISCONNECT: Message = {"type": "http.disconnect", "reason": "body_timeout"}
ASGI_VERSION = {"version": "3.0", "spec_version": "2.3"}

# Where the parser is in the request it reads: between requests, in a head, in a body.
_IDLE, _HEAD, _BODY = 0, 1, 2


class _Refusal(Exception):
    """Raised in a parser callback after the request was refused, to stop the parser."""


def _count_refusal(status: str) -> None:
    # Imported here, not at the top: gunicorn's master imports this module (the worker
    # class) before its on_starting hook has made the metrics directory.
    from gateway import metrics

    metrics.PROTOCOL_REFUSALS.labels(status).inc()


class _Exchange:
    """One request and its response: the ``receive`` and ``send`` of ASGI."""

    __slots__ = (
        "length_left",
        "conn",
        "scope",
        "keep_alive",
        "expect_continue",
        "body",
        "body_size",
        "more_body",
        "waiter",
        "wait_since",
        "started",
        "complete",
        "head",
        "chunked",
        "head_only",
        "disconnected",
        "timed_out",
    )

    def __init__(self, conn: GatewayHttpProtocol, scope: Scope, keep_alive: bool, expect_continue: bool):
        self.conn = conn
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.body: list[bytes] = []
        self.body_size = 0
        self.more_body = True
        self.waiter: asyncio.Future[None] | None = None
        self.wait_since = 0.0
        self.started = False
        self.complete = False
        self.head: bytes | None = None  # written with the first body message
        self.chunked = False
        self.length_left = -1  # body bytes still owed by a declared Content-Length; -1: none declared
        self.head_only = scope["method"] == "HEAD"
        self.disconnected = False
        self.timed_out = False  # the body stopped arriving while the app waited for it

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

    def time_out_body(self) -> None:
        self.timed_out = True
        self.keep_alive = False
        self._wake()

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- ASGI -----------------------------------------------------------------------------

    async def receive(self) -> Message:
        conn = self.conn
        if self.expect_continue:
            self.expect_continue = False
            if not conn.transport.is_closing():
                conn.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while not self.body and self.more_body and not self.disconnected and not self.complete and not self.timed_out:
            conn.resume_reading()
            # The body's inactivity counts from here too: the socket may have been
            # paused while the app was busy elsewhere.
            self.wait_since = conn.loop.time()
            self.waiter = conn.loop.create_future()
            await self.waiter
        if self.disconnected or self.complete:
            return DISCONNECT
        if self.timed_out:
            return BODY_TIMEOUT_DISCONNECT
        body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.body.clear()
        self.body_size = 0
        conn.resume_reading()
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    async def send(self, message: Message) -> None:
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
            status: int = message["status"]
            parts = [STATUS_LINES[status], conn.default_head()]
            length_given = False
            for name, value in message.get("headers", ()):
                if name == b"content-length":
                    length_given = True
                    if value.isdigit():
                        self.length_left = int(value)
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
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        if self.head_only:
            out = b""
        elif self.chunked:
            out = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
            if not more:
                out += b"0\r\n\r\n"
        else:
            out = body
            if self.length_left >= 0:
                self.length_left -= len(body)
                if not more and self.length_left:
                    # Fewer (or more) bytes than declared: ending here would leave the client
                    # reading the next answer as this one's rest. Send what there is, then close.
                    log.warning("answer body does not match its Content-Length; closing the connection")
                    self.keep_alive = False
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

    async def run(self, app: ASGIApp) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:  # a shutdown past its grace period
            self.conn.transport.close()
            raise
        except ResponseAborted:
            # The app could not complete an answer it had started (its upstream failed
            # mid-body) and has recorded why: close without ending the message, so the
            # client sees it incomplete rather than a short answer that looks whole.
            self.keep_alive = False
            self.conn.transport.close()
            return
        except Exception as error:
            log.error("exception in the ASGI application", exc_info=error)
            self._abandon(BODY_TIMEOUT if self.timed_out else INTERNAL_ERROR)
            return
        if not self.complete and not self.disconnected:
            if self.timed_out:  # an app that does not know the body_timeout disconnect
                self._abandon(BODY_TIMEOUT)
                return
            log.error("the ASGI application returned without completing its response")
            self._abandon(INTERNAL_ERROR)

    def _abandon(self, answer: bytes) -> None:
        """After an app failure: ``answer`` if nothing was sent yet, then close."""
        transport = self.conn.transport
        if not transport.is_closing():
            if not self.started and not self.disconnected:
                transport.write(answer)
            transport.close()


class GatewayHttpProtocol(asyncio.Protocol):
    """Per connection; the constructor is the one uvicorn calls for its ``http`` class."""

    transport: asyncio.Transport  # from connection_made on; nothing runs before it

    def __init__(
        self,
        config: ServerConfig,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        limits: GatewaySettings | None = None,
    ):
        if not config.loaded:
            config.load()
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.server_state = server_state
        self.app_state = app_state
        self.root_path = config.root_path
        self.keep_alive_timeout = config.timeout_keep_alive
        limits = limits or gateway_settings()
        self.max_target = limits.max_request_line_bytes
        self.max_header_bytes = limits.max_header_bytes
        self.max_header_count = limits.max_header_count
        self.head_timeout = limits.head_timeout
        self.body_idle_timeout = limits.body_idle_timeout
        self.max_connections = limits.max_connections_per_worker
        # The timer never sleeps longer than the shortest deadline, so a deadline that
        # starts while it sleeps is never missed and no request needs a timer of its own.
        self.tick = max(0.01, min(self.keep_alive_timeout, self.head_timeout, self.body_idle_timeout))
        self.parser = httptools.HttpRequestParser(self)
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        self.current: _Exchange | None = None  # the request being answered
        self.parsing: _Exchange | None = None  # the request being read (the same, unless pipelined)
        # One task per connection runs its requests one after the other (see _start).
        self.runner: asyncio.Task[None] | None = None
        self.up_next: _Exchange | None = None
        self.runner_idle: asyncio.Future[None] | None = None
        self.pipeline: deque[_Exchange] = deque()
        self.reading_paused = False
        self.write_paused: asyncio.Future[None] | None = None
        self.refused = False  # nothing more is read: a refusal or a body timeout
        self.idle_since = 0.0  # the connection's start or its last answer
        self.last_read = 0.0
        self.idle_timer: asyncio.TimerHandle | None = None
        self._default_source: list[tuple[bytes, bytes]] | None = None
        self._default_head = b""
        # The request being read, filled by the parser callbacks.
        self._phase = _IDLE
        self._head_began = 0.0
        self._head_fed = 0  # bytes of an unfinished head read so far (at least)
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_reads = 0  # the sizes of the earlier reads holding part of this head
        self._read_size = 0  # of the read being parsed
        self._expect_continue = False

    # -- connection -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)  # a stream server's
        if len(self.server_state.connections) >= self.max_connections:
            self.refused = True
            _count_refusal("503")
            transport.write(TOO_MANY_CONNECTIONS)
            transport.close()
            return
        self.server_state.connections.add(self)
        self.server = _address(transport.get_extra_info("sockname"))
        self.client = _address(transport.get_extra_info("peername"))
        if transport.get_extra_info("sslcontext"):
            self.scheme = "https"
        self.idle_since = self.loop.time()
        self.idle_timer = self.loop.call_later(self.tick, self._check_idle)

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
        if self.refused:
            return
        self.last_read = self.loop.time()
        while True:
            self._read_size = len(data)
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade as upgrade:
                data = data[upgrade.args[0] :]
                if self._refuse_upgrade_with_body() or not data:
                    return
                continue  # what follows a request asking for an upgrade is the next one
            except httptools.HttpParserError:
                if not self.refused:
                    self.refuse(BAD_REQUEST)
                return
            if self._phase == _HEAD:
                self._head_unfinished(len(data))
            return

    def _head_unfinished(self, size: int) -> None:
        """A read ended inside a head: count its bytes, which httptools may be holding."""
        if self._head_reads:
            fed = self._head_fed + size  # the whole read belongs to this head
        else:
            self._head_began = self.last_read
            # Where in this read the head began is not known: count what the parser
            # delivered, and the whole of the reads that follow.
            fed = len(self._url) + _header_bytes(self._headers)
        self._head_reads += size
        self._head_fed = fed
        if fed - len(self._url) > self.max_header_bytes or len(self._headers) > self.max_header_count:
            self.refuse(HEADERS_TOO_LARGE)

    def _refuse_upgrade_with_body(self) -> bool:
        """llhttp stops after a request asking for an upgrade, and skips its body. No
        upgrade is done here: that request is answered as plain HTTP, and the bytes after
        it are the next request; a body skipped would be read as one, so it is refused."""
        exchange = self.parsing
        if exchange is None or not _declares_body(exchange.scope["headers"]):
            return False
        if exchange is self.current:
            self.current = self.up_next = None  # its app has not seen it yet
        else:
            self.pipeline.pop()  # the last one read
        self.refuse(BAD_REQUEST)
        return True

    def refuse(self, answer: bytes) -> None:
        """Read nothing more: answer ``answer`` and close, or, with an answer in flight,
        close after the requests already read are answered."""
        self.refused = True
        # The app never sees these requests, so they are in no call record: count them here.
        _count_refusal(answer[9:12].decode())
        current = self.current
        if current is None or current.complete:
            self.transport.write(answer)
            self.transport.close()
            return
        parsing = self.parsing
        if parsing is not None and parsing.more_body:
            if parsing is current:  # its body will never end: its app sees a disconnect
                self.transport.close()
                return
            self.pipeline.pop()  # the last one read: its body will never end
        (self.pipeline[-1] if self.pipeline else current).keep_alive = False
        self.pause_reading()

    def pause_reading(self) -> None:
        if not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and not self.pipeline and not self.refused:
            self.reading_paused = False
            self.transport.resume_reading()
            if self._phase == _HEAD:  # the client could not send while it was paused
                self._head_began = self.loop.time()

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
        """The connection's one timer: whichever deadline applies to what it is doing."""
        self.idle_timer = None
        if self.refused or self.transport.is_closing():
            return
        now = self.loop.time()
        current = self.current
        if self._phase == _HEAD:
            left = self._head_began + self.head_timeout - now
            if self.reading_paused:
                left = self.tick  # not the client's fault; resume_reading restarts the clock
            elif left <= 0:
                self.refuse(REQUEST_TIMEOUT)
                return
        elif current is not None and not current.complete:
            left = self.tick
            if current.waiter is not None:  # its app waits for more of the body
                left = max(self.last_read, current.wait_since) + self.body_idle_timeout - now
                if left <= 0:
                    self.refused = True
                    self.pause_reading()
                    current.time_out_body()
                    return
        elif self._phase == _BODY:  # the rest of a body its app answered without reading
            left = self.last_read + self.body_idle_timeout - now
            if left <= 0:
                self.transport.close()
                return
        else:
            left = self.idle_since + self.keep_alive_timeout - now
            if left <= 0:
                self.transport.close()
                return
        self.idle_timer = self.loop.call_later(min(left, self.tick), self._check_idle)

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: close now if idle, else after the answer in flight."""
        if self.current is None or self.current.complete:
            self.transport.close()
        else:
            self.current.keep_alive = False

    # -- parser callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._phase = _HEAD
        self._url = b""
        self._headers = []
        self._head_reads = 0
        self._expect_continue = False

    def on_url(self, url: bytes) -> None:
        # Called for each read's part of the target, so a long one is refused as it grows.
        self._url += url
        if len(self._url) > self.max_target:
            self.refuse(REQUEST_LINE_TOO_LONG)
            raise _Refusal

    def on_header(self, name: bytes, value: bytes) -> None:
        # Sizes and counts are checked at the end of each read and of the head (see
        # _head_unfinished, on_headers_complete): counting here cost every request 0.5 us.
        name = name.lower()
        if name == b"expect":
            if value.lower() == b"100-continue":
                self._expect_continue = True
        elif name == b"transfer-encoding" and value.strip().lower() != b"chunked":
            # A body whose length cannot be known without the last coding being chunked is
            # refused (RFC 9112 6.3); a coding before chunked would be lost when the gateway
            # forwards the decoded body (6.1).
            last = value.rpartition(b",")[2].strip().lower()
            self.refuse(UNSUPPORTED_TRANSFER_CODING if last == b"chunked" else BAD_REQUEST)
            raise _Refusal
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._phase = _BODY
        headers = self._headers
        if len(headers) > self.max_header_count or (
            self._head_reads + self._read_size > self.max_header_bytes
            and _header_bytes(headers) > self.max_header_bytes
        ):
            self.refuse(HEADERS_TOO_LARGE)
            raise _Refusal
        parser = self.parser
        version: str = parser.get_http_version()
        url = httptools.parse_url(self._url)
        raw_path: bytes = url.path
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
            "headers": headers,
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
        self._phase = _IDLE
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
        self.idle_since = self.loop.time()
        if not exchange.keep_alive:
            self.transport.close()
            return
        if self.pipeline:
            self._start(self.pipeline.popleft())
        elif self.reading_paused:
            self.resume_reading()


def _header_bytes(headers: list[tuple[bytes, bytes]]) -> int:
    return sum(len(name) + len(value) + 4 for name, value in headers)  # ": " and CRLF


def _declares_body(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name == b"transfer-encoding" or (name == b"content-length" and value != b"0") for name, value in headers)


def _address(value: object) -> tuple[str, int] | None:
    if isinstance(value, tuple | list) and len(value) >= 2:
        return (str(value[0]), int(value[1]))
    return None
