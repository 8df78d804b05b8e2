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
from urllib.parse import urlparse

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


def _encode(args: tuple) -> bytes:
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
    def __init__(self):
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.waiters: deque[asyncio.Future] = deque()
        self.outgoing: list[bytes] = []
        self.flush_scheduled = False
        self.closed = False

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.outgoing and not self.closed:
            self.transport.write(b"".join(self.outgoing))
        self.outgoing.clear()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            waiter = self.waiters.popleft()
            if waiter.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                message = str(reply)
                error = NoScriptError(message) if message.startswith("NOSCRIPT") else ResponseError(message)
                waiter.set_exception(error)
            else:
                waiter.set_result(reply)

    def connection_lost(self, exc) -> None:
        self.closed = True
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(RedisConnectionError("connection to Redis lost"))


class FastRedis:
    """The handful of commands the gateway needs, over one multiplexed connection."""

    def __init__(self, url: str, *, timeout: float = 1.0, connect_timeout: float = 0.5):
        parsed = urlparse(url)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 6379
        self.db = int((parsed.path or "/0").lstrip("/") or 0)
        self.password = parsed.password
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future | None = None

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            _transport, protocol = await asyncio.wait_for(
                loop.create_connection(_Protocol, self.host, self.port), self.connect_timeout
            )
        except (OSError, TimeoutError) as error:
            raise RedisConnectionError(f"cannot reach Redis at {self.host}:{self.port}: {error}") from error
        setup = []
        if self.password:
            setup.append(("AUTH", self.password))
        if self.db:
            setup.append(("SELECT", self.db))
        for command in setup:
            waiter = loop.create_future()
            protocol.waiters.append(waiter)
            protocol.transport.write(_encode(command))
            await asyncio.wait_for(waiter, self.timeout)
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

    async def execute(self, *args):
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connection()
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        protocol.waiters.append(waiter)
        # Commands issued in the same loop iteration leave in one write (one syscall).
        protocol.outgoing.append(_encode(args))
        if not protocol.flush_scheduled:
            protocol.flush_scheduled = True
            loop.call_soon(protocol.flush)
        try:
            return await asyncio.wait_for(waiter, self.timeout)
        except TimeoutError as error:
            # Replies are matched by order: after a lost one the connection cannot be trusted.
            protocol.transport.abort()
            raise RedisTimeoutError("Redis did not answer in time") from error

    async def evalsha(self, sha: str, numkeys: int, *args):
        return await self.execute("EVALSHA", sha, numkeys, *args)

    async def script_load(self, script: str) -> str:
        sha = await self.execute("SCRIPT", "LOAD", script)
        return sha.decode() if isinstance(sha, bytes) else sha

    async def get(self, key: str):
        return await self.execute("GET", key)

    async def set(self, key: str, value, ex: int | None = None):
        return await self.execute("SET", key, value, "EX", ex) if ex else await self.execute("SET", key, value)

    async def incr(self, key: str) -> int:
        return await self.execute("INCR", key)

    async def expire(self, key: str, seconds: int):
        return await self.execute("EXPIRE", key, seconds)

    async def ping(self) -> bool:
        return await self.execute("PING") in (b"PONG", "PONG")

    async def aclose(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
