"""Response cache for GET/HEAD, in Redis, per API version, honouring Cache-Control.

Entries are keyed per application: the gateway tells upstreams who is calling, so an
answer may be specific to its caller, and one tenant must never receive another's.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

CACHEABLE_STATUSES = frozenset({200, 203, 204, 300, 301, 404, 405, 410, 414, 501})
# Not stored: they describe the connection, or are set per answer by the gateway.
UNSTORED_HEADERS = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"date", b"x-request-id", b"set-cookie", b"x-cache"}
)
_MAX_AGE = re.compile(rb"(?:^|,)\s*(s-maxage|max-age)\s*=\s*\"?(\d+)")


@dataclass(frozen=True, slots=True)
class CachedResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def _cache_control(headers: list[tuple[bytes, bytes]]) -> bytes:
    return b",".join(v.lower() for k, v in headers if k == b"cache-control")


class ResponseCache:
    def __init__(self, redis: aioredis.Redis, *, max_body_bytes: int = 1_048_576):
        self._redis = redis
        self.max_body_bytes = max_body_bytes

    def key_for(self, version_id: int, application_id: int, method: str, path: str, query_string: bytes) -> str:
        # HEAD is answered from the GET entry: same headers, the body is dropped.
        digest = hashlib.sha256(path.encode() + b"?" + b"&".join(sorted(query_string.split(b"&")))).hexdigest()
        return f"portico:cache:{version_id}:{application_id}:{digest[:40]}"

    def request_allows_cache(self, method: str, request_headers: list[tuple[bytes, bytes]]) -> bool:
        if method not in ("GET", "HEAD"):
            return False
        directives = _cache_control(request_headers)
        return b"no-store" not in directives and b"no-cache" not in directives

    def ttl_for(self, status: int, response_headers: list[tuple[bytes, bytes]], default_ttl: int) -> int | None:
        if status not in CACHEABLE_STATUSES:
            return None
        if any(k == b"set-cookie" for k, _ in response_headers):
            return None
        directives = _cache_control(response_headers)
        if b"no-store" in directives or b"private" in directives or b"no-cache" in directives:
            return None
        ages = dict((name, int(value)) for name, value in _MAX_AGE.findall(directives))
        ttl = ages.get(b"s-maxage", ages.get(b"max-age", default_ttl))
        return ttl if ttl > 0 else None

    async def lookup(self, key: str) -> CachedResponse | None:
        try:
            raw = await self._redis.get(key)
        except (RedisError, OSError):
            return None
        if raw is None:
            return None
        try:
            status, headers, body = orjson.loads(raw)
            return CachedResponse(
                status, [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers], body.encode("latin-1")
            )
        except (ValueError, TypeError):
            return None

    async def store(self, key: str, response: CachedResponse, ttl: int) -> None:
        if len(response.body) > self.max_body_bytes:
            return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers if k not in UNSTORED_HEADERS]
        payload = orjson.dumps([response.status, headers, response.body.decode("latin-1")])
        try:
            await self._redis.set(key, payload, ex=ttl)
        except (RedisError, OSError) as error:
            log.debug("cache store skipped: %s", error)
