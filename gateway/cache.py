"""Response cache for GET/HEAD, in Redis, per API version, honouring Cache-Control.

Entries are keyed per application: the gateway tells upstreams who is calling, so an
answer may be specific to its caller, and one tenant must never receive another's.

An entry lives at most the route's TTL, whatever the upstream's ``max-age`` says, and each
API version holds at most ``cache_max_entries_per_version`` entries: a sorted set per
version indexes its entries by expiry time, updated by the same script call that stores an
entry, which also drops the entries closest to expiry (the oldest, for equal TTLs) past
the cap. So no subscriber can fill Redis by asking for many distinct URLs.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from gateway.redisconn import FastRedis
from gateway.settings import gateway_settings

log = logging.getLogger(__name__)

CACHEABLE_STATUSES = frozenset({200, 203, 204, 300, 301, 404, 405, 410, 414, 501})
# Not stored: they describe the connection, or are set per answer by the gateway.
UNSTORED_HEADERS = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"date", b"x-request-id", b"set-cookie", b"x-cache"}
)
_MAX_AGE = re.compile(rb"(?:^|,)\s*(s-maxage|max-age)\s*=\s*\"?(\d+)")

KEY_PREFIX = "portico:cache:"
INDEX_PREFIX = "portico:cache:idx:"  # + version id: never an entry key (those have digits there)

# KEYS[1] = the entry, KEYS[2] = its version's index. ARGV: payload, ttl (s), now (epoch s,
# fractional), most entries the version may hold. One call: store, index, evict.
STORE_SCRIPT = """
local ttl = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)  -- entries gone by expiry
redis.call('ZADD', KEYS[2], now + ttl, KEYS[1])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[4])
if over > 0 then
  for _, key in ipairs(redis.call('ZRANGE', KEYS[2], 0, over - 1)) do redis.call('UNLINK', key) end
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, over - 1)
end
-- The index lives as long as its longest-lived entry.
if redis.call('TTL', KEYS[2]) < ttl + 1 then redis.call('EXPIRE', KEYS[2], ttl + 1) end
return over > 0 and over or 0
"""


@dataclass(frozen=True, slots=True)
class CachedResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def _cache_control(headers: list[tuple[bytes, bytes]]) -> bytes:
    return b",".join(v.lower() for k, v in headers if k == b"cache-control")


def index_key_for(key: str) -> str:
    """The index of the API version an entry key belongs to."""
    return INDEX_PREFIX + key[len(KEY_PREFIX) :].split(":", 1)[0]


class ResponseCache:
    def __init__(
        self,
        redis: aioredis.Redis | FastRedis,
        *,
        max_body_bytes: int | None = None,
        max_entries_per_version: int | None = None,
    ) -> None:
        """Bounds default to the settings ``cache_max_body_bytes`` and
        ``cache_max_entries_per_version``."""
        settings = gateway_settings()
        self._redis = redis
        self.max_body_bytes = settings.cache_max_body_bytes if max_body_bytes is None else max_body_bytes
        self.max_entries_per_version = (
            settings.cache_max_entries_per_version if max_entries_per_version is None else max_entries_per_version
        )
        self._store_sha: str | None = None

    def key_for(self, version_id: int, application_id: int, path: str, query_string: bytes) -> str:
        """One key for GET and HEAD: HEAD is answered from the GET entry, without the body."""
        digest = hashlib.sha256(path.encode() + b"?" + b"&".join(sorted(query_string.split(b"&")))).hexdigest()
        return f"{KEY_PREFIX}{version_id}:{application_id}:{digest[:40]}"

    def request_allows_cache(self, method: str, request_headers: list[tuple[bytes, bytes]]) -> bool:
        if method not in ("GET", "HEAD"):
            return False
        directives = _cache_control(request_headers)
        return b"no-store" not in directives and b"no-cache" not in directives

    def ttl_for(self, status: int, response_headers: list[tuple[bytes, bytes]], route_ttl: int) -> int | None:
        """Seconds to keep the answer: the upstream's ``s-maxage`` or ``max-age`` may shorten
        the route's TTL, never lengthen it; None when it must not be stored."""
        if status not in CACHEABLE_STATUSES:
            return None
        if any(k == b"set-cookie" for k, _ in response_headers):
            return None
        directives = _cache_control(response_headers)
        if b"no-store" in directives or b"private" in directives or b"no-cache" in directives:
            return None
        ages = {name: int(value) for name, value in _MAX_AGE.findall(directives)}
        ttl = ages.get(b"s-maxage", ages.get(b"max-age", route_ttl))
        if ttl > route_ttl:
            ttl = route_ttl
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
        """One script call (one round trip; two more once after Redis lost its scripts)."""
        if len(response.body) > self.max_body_bytes or ttl <= 0:
            return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers if k not in UNSTORED_HEADERS]
        payload = orjson.dumps([response.status, headers, response.body.decode("latin-1")])
        args: list[Any] = [key, index_key_for(key), payload, ttl, repr(time.time()), self.max_entries_per_version]
        try:
            if self._store_sha is None:
                self._store_sha = await self._redis.script_load(STORE_SCRIPT)
            try:
                await self._redis.evalsha(self._store_sha, 2, *args)
            except NoScriptError:  # Redis restarted and lost its script cache
                self._store_sha = await self._redis.script_load(STORE_SCRIPT)
                await self._redis.evalsha(self._store_sha, 2, *args)
        except (RedisError, OSError) as error:
            log.debug("cache store skipped: %s", error)
