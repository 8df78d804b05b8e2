"""A small HTTP/1.1 server on asyncio + httptools for the mock provider.

A handler turns a ``Request`` into a ``Reply`` and, when the answer must be delayed, cut
or never sent, a ``Delivery``. A plain answer is written in the same call that parsed the
request (no task, one ``write``), which is what lets one process answer tens of thousands
of small completions a second; only delayed, paced or broken answers get a task.
Keep-alive and pipelining are kept (requests on one connection are answered in order).
"""

from __future__ import annotations

import asyncio
import http
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import httptools

log = logging.getLogger("portico.mock_provider")

MAX_BODY_BYTES = 64 * 1024 * 1024


@dataclass(slots=True)
class Request:
    method: str
    target: str  # path and query as sent
    path: str
    query: str
    headers: dict[bytes, bytes]  # names lower-cased; a repeated name keeps its last value
    raw_headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass(slots=True)
class Reply:
    status: int
    body: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    content_type: bytes = b"application/json"
    events: list[bytes] | None = None  # a stream: SSE events already framed, sent in order


@dataclass(slots=True)
class Delivery:
    """How an answer leaves when it is not simply written at once."""

    first_byte_delay: float = 0.0  # seconds before the head
    event_delay: float = 0.0  # seconds between stream events
    cut_after: int | None = None  # close after this many events (a non-stream answer: half its body)
    hang: bool = False  # never answer


Handler = Callable[[Request], tuple[Reply, Delivery | None]]


def _status_line(status: int) -> bytes:
    try:
        phrase = http.HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b"Overloaded" if status == 529 else b"Status"
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


STATUS_LINES = {status: _status_line(status) for status in range(100, 600)}
CLOSE = b"connection: close\r\n"
STREAM_HEAD_TAIL = b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n"
LAST_CHUNK = b"0\r\n\r\n"


def head(reply: Reply, keep_alive: bool, length: int | None) -> bytes:
    parts = [
        STATUS_LINES.get(reply.status) or _status_line(reply.status),
        b"content-type: ",
        reply.content_type,
        b"\r\n",
    ]
    for name, value in reply.headers:
        parts += [name, b": ", value, b"\r\n"]
    parts.append(STREAM_HEAD_TAIL if length is None else b"content-length: %d\r\n" % length)
    if not keep_alive:
        parts.append(CLOSE)
    parts.append(b"\r\n")
    return b"".join(parts)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def encode(reply: Reply, keep_alive: bool) -> bytes:
    """The whole answer as one write."""
    if reply.events is None:
        return head(reply, keep_alive, len(reply.body)) + reply.body
    return head(reply, keep_alive, None) + b"".join(chunk(event) for event in reply.events if event) + LAST_CHUNK


def _simple(status: int, message: str) -> bytes:
    body = b'{"error":{"message":"%s","type":"invalid_request_error"}}' % message.encode()
    return head(Reply(status, body), False, len(body)) + body


BAD_REQUEST = _simple(400, "The request is not valid HTTP/1.1.")
TOO_LARGE = _simple(413, "The request body is too large.")
INTERNAL_ERROR = _simple(500, "The mock provider failed; see its log.")


class MockHttpProtocol(asyncio.Protocol):
    __slots__ = (
        "handler",
        "loop",
        "transport",
        "parser",
        "url",
        "raw_headers",
        "body",
        "body_size",
        "pending",
        "task",
        "closed",
        "writable",
    )

    def __init__(self, handler: Handler, loop: asyncio.AbstractEventLoop) -> None:
        self.handler = handler
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.body_size = 0
        # Requests that arrived while an answer with a delivery was still being sent.
        self.pending: deque[tuple[Request, bool]] = deque()
        self.task: asyncio.Task[None] | None = None
        self.closed = False
        self.writable: asyncio.Future[None] | None = None  # set while the transport is paused

    # -- asyncio --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.task is not None:
            self.task.cancel()
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def pause_writing(self) -> None:
        self.writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse(BAD_REQUEST)
        except httptools.HttpParserError:
            self._refuse(BAD_REQUEST)
        except _TooLarge:
            self._refuse(TOO_LARGE)

    # -- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.raw_headers = []
        self.body = []
        self.body_size = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body_size += len(body)
        if self.body_size > MAX_BODY_BYTES:
            raise _TooLarge()
        self.body.append(body)

    def on_message_complete(self) -> None:
        target = self.url.decode("latin-1")
        path, _, query = target.partition("?")
        request = Request(
            method=self.parser.get_method().decode("latin-1"),
            target=target,
            path=path,
            query=query,
            headers=dict(self.raw_headers),
            raw_headers=self.raw_headers,
            body=b"".join(self.body) if len(self.body) != 1 else self.body[0],
        )
        keep_alive = self.parser.should_keep_alive()
        if self.task is not None:
            self.pending.append((request, keep_alive))
        else:
            self._serve(request, keep_alive)

    # -- answering ------------------------------------------------------------------------

    def _serve(self, request: Request, keep_alive: bool) -> None:
        assert self.transport is not None
        try:
            reply, delivery = self.handler(request)
        except Exception:
            log.exception("mock provider handler failed on %s", request.target)
            self._refuse(INTERNAL_ERROR)
            return
        if delivery is None:
            self.transport.write(encode(reply, keep_alive))
            if not keep_alive:
                self.transport.close()
            return
        self.task = self.loop.create_task(self._deliver(reply, delivery, keep_alive))

    async def _deliver(self, reply: Reply, delivery: Delivery, keep_alive: bool) -> None:
        transport = self.transport
        assert transport is not None
        try:
            if delivery.hang:
                await self.loop.create_future()  # until the connection is lost (cancelled)
            if delivery.first_byte_delay:
                await asyncio.sleep(delivery.first_byte_delay)
            if reply.events is None:
                if delivery.cut_after is not None:
                    transport.write(head(reply, keep_alive, len(reply.body)) + reply.body[: len(reply.body) // 2])
                    transport.close()
                    return
                transport.write(encode(reply, keep_alive))
            else:
                transport.write(head(reply, keep_alive, None))
                for index, event in enumerate(reply.events):
                    if delivery.cut_after is not None and index >= delivery.cut_after:
                        transport.close()  # no terminating chunk: the body never ends properly
                        return
                    if index and delivery.event_delay:
                        await asyncio.sleep(delivery.event_delay)
                    if self.closed:
                        return
                    if event:
                        transport.write(chunk(event))
                    if self.writable is not None:
                        await self.writable
                if delivery.cut_after is not None:
                    transport.close()
                    return
                transport.write(LAST_CHUNK)
            if not keep_alive:
                transport.close()
                return
        except asyncio.CancelledError:
            return
        finally:
            self.task = None
        while self.pending and self.task is None and not self.closed:
            request, keep_alive = self.pending.popleft()
            self._serve(request, keep_alive)

    def _refuse(self, answer: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(answer)
            self.transport.close()


class _TooLarge(Exception):
    pass


async def serve(handler: Handler, host: str, port: int, *, reuse_port: bool = False) -> asyncio.Server:
    loop = asyncio.get_running_loop()

    def factory() -> Any:
        return MockHttpProtocol(handler, loop)

    return await loop.create_server(factory, host, port, reuse_port=reuse_port, backlog=4096)
