"""The portal's cache: Django's Redis backend, with a per-process fallback while Redis is away.

The cache holds counters for abuse limits (django-ratelimit: log-in, sign-up, password
reset, key and token issuing, invitations; the API throttle). While Redis is unreachable,
refusing everyone or answering 500 would be the greater harm, and letting every request
through would open the door to brute force for as long as the outage lasts. So whatever
Redis cannot serve is served by a small in-memory cache of this process instead: counters
keep their windows (django-ratelimit's keys name their window and expire with it), and as
each process counts on its own, a limit of N allows at most N per portal process.

After a failure Redis is left alone for ``RETRY_SECONDS`` (a Redis that times out would
otherwise cost every request a socket timeout per counter); each outage is logged once.
"""

import logging
import time
from collections.abc import Callable
from typing import Any

from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
RETRY_SECONDS = 5.0
# One store per process (LocMemCache instances of one name share it, across threads); bounded,
# culling a third when full, so a flood of distinct keys cannot grow it without end.
FALLBACK_NAME = "portico-redis-fallback"
FALLBACK_OPTIONS = {"OPTIONS": {"MAX_ENTRIES": 20_000, "CULL_FREQUENCY": 3}}
# Only for a counter Redis lost between django-ratelimit's add and incr: longer than any window.
ORPHAN_COUNTER_SECONDS = 2 * 86400


class FailOverRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self.fallback = LocMemCache(FALLBACK_NAME, FALLBACK_OPTIONS)
        self._skip_redis_until = 0.0

    def _either(self, operation: str, on_redis: Callable[[], Any], on_fallback: Callable[[], Any]) -> Any:
        if time.monotonic() >= self._skip_redis_until:
            try:
                return on_redis()
            except UNREACHABLE as error:
                log.warning("Redis is unreachable (%s: %s); this process counts on its own for now", operation, error)
                self._skip_redis_until = time.monotonic() + RETRY_SECONDS
        return on_fallback()

    def add(self, key: str, value: Any, timeout: Any = None, version: int | None = None) -> bool:
        return self._either(
            "add",
            lambda: super(FailOverRedisCache, self).add(key, value, timeout, version),
            lambda: self.fallback.add(key, value, timeout, version),
        )

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        return self._either(
            "get",
            lambda: super(FailOverRedisCache, self).get(key, default, version),
            lambda: self.fallback.get(key, default, version),
        )

    def set(self, key: str, value: Any, timeout: Any = None, version: int | None = None) -> None:
        return self._either(
            "set",
            lambda: super(FailOverRedisCache, self).set(key, value, timeout, version),
            lambda: self.fallback.set(key, value, timeout, version),
        )

    def incr(self, key: str, delta: int = 1, version: int | None = None) -> int:
        return self._either(
            "incr",
            lambda: super(FailOverRedisCache, self).incr(key, delta, version),
            lambda: self._fallback_incr(key, delta, version),
        )

    def _fallback_incr(self, key: str, delta: int, version: int | None) -> int:
        try:
            return self.fallback.incr(key, delta, version)
        except ValueError:  # counted in Redis until now: start again here
            self.fallback.add(key, delta, ORPHAN_COUNTER_SECONDS, version)
            return delta

    def delete(self, key: str, version: int | None = None) -> bool:
        return self._either(
            "delete",
            lambda: super(FailOverRedisCache, self).delete(key, version),
            lambda: self.fallback.delete(key, version),
        )

    def get_many(self, keys: list[str], version: int | None = None) -> dict[str, Any]:
        return self._either(
            "get_many",
            lambda: super(FailOverRedisCache, self).get_many(keys, version),
            lambda: self.fallback.get_many(keys, version),
        )
