"""The gunicorn worker class: uvicorn with uvloop and httptools, and no headers of its own
that would duplicate the upstream's (Server) — Date is set once, by uvicorn.

Its HTTP protocol sends each answer's head and body in one write: uvicorn writes the head
on ``http.response.start`` and the body on the next message, two syscalls where one will
do, and on loopback a send() costs as much as the rest of a small request's Python.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.workers import UvicornWorker


class CorkedTransport:
    """Holds the writes made during one event-loop turn and sends them as one.

    The gateway sends an answer's start and body messages back to back, so they land in
    the same turn; a streamed body's later chunks each leave at the end of their own turn,
    so nothing waits longer than the current turn.
    """

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._held is None:
            self._held = [data]
            self._loop.call_soon(self._flush)
        else:
            self._held.append(data)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name):  # pause/resume_reading, get_extra_info, is_closing, ...
        return getattr(self._transport, name)


class CorkedHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(CorkedTransport(transport, self.loop))


class GatewayWorker(UvicornWorker):
    CONFIG_KWARGS = {
        "loop": "uvloop",
        "http": CorkedHttpToolsProtocol,
        "server_header": False,
        "date_header": True,
        # The gateway sets X-Forwarded-* itself; uvicorn's middleware would cost every request.
        "proxy_headers": False,
        "access_log": False,
    }
