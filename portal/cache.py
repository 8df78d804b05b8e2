"""The portal's cache: Django's Redis backend, failing open when Redis is unreachable.

The cache only holds counters for abuse limits (django-ratelimit, the API throttle). While
Redis is away, refusing logins or answering 500 would be the greater harm, so reads miss,
writes are dropped and the limits let requests through; each outage is logged.
"""

import logging

from django.core.cache.backends.redis import RedisCache
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)


class FailOpenRedisCache(RedisCache):
    def _unreachable(self, operation: str, error: Exception, answer):
        log.warning("cache %s skipped, Redis is unreachable: %s", operation, error)
        return answer

    def add(self, key, value, timeout=None, version=None):
        try:
            return super().add(key, value, timeout, version)
        except UNREACHABLE as error:
            return self._unreachable("add", error, False)

    def get(self, key, default=None, version=None):
        try:
            return super().get(key, default, version)
        except UNREACHABLE as error:
            return self._unreachable("get", error, default)

    def set(self, key, value, timeout=None, version=None):
        try:
            return super().set(key, value, timeout, version)
        except UNREACHABLE as error:
            return self._unreachable("set", error, None)

    def incr(self, key, delta=1, version=None):
        try:
            return super().incr(key, delta, version)
        except UNREACHABLE as error:
            return self._unreachable("incr", error, None)  # django-ratelimit: count unknown → fail open

    def delete(self, key, version=None):
        try:
            return super().delete(key, version)
        except UNREACHABLE as error:
            return self._unreachable("delete", error, False)

    def get_many(self, keys, version=None):
        try:
            return super().get_many(keys, version)
        except UNREACHABLE as error:
            return self._unreachable("get_many", error, {})
