"""A lean Redis client for the hot path: one connection per worker, many commands in
flight, replies matched in order (automatic pipelining), parsed by hiredis.

redis-py's asyncio client costs tens of microseconds per command in Python (connection
pool checkout, retry wrapper, response callbacks); the gateway's request path makes one
command per request, so that overhead was a fifth of the gateway's CPU. Errors are raised
as redis-py's exception types, so callers handle one family of errors.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, TypeAlias, cast
from urllib.parse import urlparse

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

# What a command argument may be; anything else than bytes or str is sent as str(arg).
Arg: TypeAlias = bytes | str | int | float


def _encode(args: tuple[Arg, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            value = arg
        elif isinstance(arg, str):
            value = arg.encode()
        else:
            value = str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(value), value))
    return b"".join(parts)


class _Protocol(asyncio.Protocol):
    def __init__(self, timeout: float) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.deadlines: deque[float] = deque()  # one per waiter, in the same order
        self.outgoing: list[bytes] = []
        self.flush_scheduled = False
        self.closed = False
        self.timeout = timeout
        self.watchdog: asyncio.TimerHandle | None = None

    def expect_reply(self, waiter: asyncio.Future[Any], loop: asyncio.AbstractEventLoop) -> None:
        self.waiters.append(waiter)
        self.deadlines.append(loop.time() + self.timeout)
        if self.watchdog is None:
            self.watchdog = loop.call_later(self.timeout, self._check_deadline, loop)

    def _check_deadline(self, loop: asyncio.AbstractEventLoop) -> None:
        """Replies come in order, so only the oldest waiter can be late: one timer per
        connection replaces a timeout (and a Task, with wait_for) per command."""
        self.watchdog = None
        if not self.deadlines or self.closed:
            return
        oldest = self.deadlines[0]
        if oldest > loop.time():
            self.watchdog = loop.call_later(oldest - loop.time(), self._check_deadline, loop)
            return
        # After a lost reply the connection cannot be trusted: every waiter fails, and the
        # next command opens a new connection.
        self.closed = True
        self._fail_all(RedisTimeoutError("Redis did not answer in time"))
        assert self.transport is not None  # set by connection_made, before any command
        self.transport.abort()

    def _fail_all(self, error: Exception) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)
        self.deadlines.clear()

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.outgoing and not self.closed:
            assert self.transport is not None
            self.transport.write(b"".join(self.outgoing))
        self.outgoing.clear()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream connection's transport
        self.loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            waiter = self.waiters.popleft()
            self.deadlines.popleft()
            if waiter.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                message = str(reply)
                error = NoScriptError(message) if message.startswith("NOSCRIPT") else ResponseError(message)
                waiter.set_exception(error)
            else:
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        self._fail_all(RedisConnectionError("connection to Redis lost"))


class FastRedis:
    """The handful of commands the gateway needs, over one multiplexed connection."""

    def __init__(self, url: str, *, timeout: float = 1.0, connect_timeout: float = 0.5) -> None:
        parsed = urlparse(url)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 6379
        self.db = int((parsed.path or "/0").lstrip("/") or 0)
        self.password = parsed.password
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            _transport, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _Protocol(self.timeout), self.host, self.port), self.connect_timeout
            )
        except (OSError, TimeoutError) as error:
            raise RedisConnectionError(f"cannot reach Redis at {self.host}:{self.port}: {error}") from error
        setup: list[tuple[Arg, ...]] = []
        if self.password:
            setup.append(("AUTH", self.password))
        if self.db:
            setup.append(("SELECT", self.db))
        for command in setup:
            waiter = loop.create_future()
            protocol.expect_reply(waiter, loop)
            assert protocol.transport is not None
            protocol.transport.write(_encode(command))
            await waiter
        return protocol

    async def _connection(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and not protocol.closed:
            return protocol
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
        try:
            self._protocol = await asyncio.shield(self._connecting)
        finally:
            self._connecting = None
        return self._protocol

    async def execute(self, *args: Arg) -> Any:
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connection()
        loop = protocol.loop
        waiter = loop.create_future()
        protocol.expect_reply(waiter, loop)
        # Commands issued in the same loop iteration leave in one write (one syscall).
        protocol.outgoing.append(_encode(args))
        if not protocol.flush_scheduled:
            protocol.flush_scheduled = True
            loop.call_soon(protocol.flush)
        return await waiter  # the protocol's watchdog fails it if Redis is too slow

    async def evalsha(self, sha: str, numkeys: int, *args: Arg) -> Any:
        return await self.execute("EVALSHA", sha, numkeys, *args)

    async def script_load(self, script: str) -> str:
        sha: bytes | str = await self.execute("SCRIPT", "LOAD", script)
        return sha.decode() if isinstance(sha, bytes) else sha

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self.execute("GET", key)
        return value

    async def set(self, key: str, value: Arg, ex: int | None = None) -> bytes | None:
        reply: bytes | None = (
            await self.execute("SET", key, value, "EX", ex) if ex else await self.execute("SET", key, value)
        )
        return reply

    async def incr(self, key: str) -> int:
        count: int = await self.execute("INCR", key)
        return count

    async def expire(self, key: str, seconds: int) -> int:
        applied: int = await self.execute("EXPIRE", key, seconds)
        return applied

    async def ping(self) -> bool:
        return await self.execute("PING") in (b"PONG", "PONG")

    async def aclose(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
