"""The response cache against a real Redis: what may be stored, for how long, for whom."""

import asyncio
import os

import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.cache import CachedResponse, ResponseCache
from portal.embedded_redis import free_port

JSON = [(b"content-type", b"application/json")]


def run(coro):
    return asyncio.run(coro)


async def _with_cache(scenario, **kwargs):
    client = aioredis.Redis.from_url(settings.REDIS_URL)
    try:
        return await scenario(ResponseCache(client, **kwargs))
    finally:
        await client.aclose()


def test_a_stored_answer_comes_back_whole_without_connection_headers():
    async def scenario(cache):
        key = cache.key_for(1, 1, "/v1/items", b"a=1")
        headers = JSON + [(b"x-request-id", b"abc"), (b"etag", b'"v1"')]
        await cache.store(key, CachedResponse(200, headers, b'{"ok": true}'), 30)
        return await cache.lookup(key), await cache._redis.ttl(key)

    hit, ttl = run(_with_cache(scenario))
    assert hit == CachedResponse(200, JSON + [(b"etag", b'"v1"')], b'{"ok": true}')
    assert 0 < ttl <= 30


def test_entries_are_keyed_per_application_and_query():
    cache = ResponseCache(aioredis.Redis())
    base = cache.key_for(1, 1, "/v1/items", b"a=1&b=2")
    assert cache.key_for(1, 2, "/v1/items", b"a=1&b=2") != base  # another tenant's application
    assert cache.key_for(2, 1, "/v1/items", b"a=1&b=2") != base  # another version
    assert cache.key_for(1, 1, "/v1/items", b"a=2") != base
    assert cache.key_for(1, 1, "/v1/items", b"b=2&a=1") == base  # same query, other order


def test_only_get_and_head_without_no_store_or_no_cache_may_use_the_cache():
    cache = ResponseCache(aioredis.Redis())
    assert cache.request_allows_cache("GET", []) and cache.request_allows_cache("HEAD", [])
    assert not cache.request_allows_cache("POST", [])
    assert not cache.request_allows_cache("GET", [(b"cache-control", b"no-cache")])
    assert not cache.request_allows_cache("GET", [(b"cache-control", b"max-age=0, No-Store")])


def test_ttl_honours_the_answers_cache_control():
    cache = ResponseCache(aioredis.Redis())
    assert cache.ttl_for(200, JSON, 60) == 60
    assert cache.ttl_for(200, [(b"cache-control", b"public, max-age=5")], 60) == 5
    assert cache.ttl_for(200, [(b"cache-control", b"max-age=5, s-maxage=9")], 60) == 9
    assert cache.ttl_for(200, [(b"cache-control", b"max-age=0")], 60) is None
    assert cache.ttl_for(200, [(b"cache-control", b"no-store")], 60) is None
    assert cache.ttl_for(200, [(b"cache-control", b"private, max-age=60")], 60) is None
    assert cache.ttl_for(200, [(b"set-cookie", b"session=1")], 60) is None
    assert cache.ttl_for(500, JSON, 60) is None
    assert cache.ttl_for(201, JSON, 60) is None


def test_a_body_over_the_bound_is_not_stored():
    async def scenario(cache):
        key = cache.key_for(1, 1, "/big", b"")
        await cache.store(key, CachedResponse(200, JSON, b"x" * 101), 30)
        return await cache.lookup(key)

    assert run(_with_cache(scenario, max_body_bytes=100)) is None


def test_binary_bodies_survive_the_round_trip():
    body = bytes(range(256)) * 4

    async def scenario(cache):
        key = cache.key_for(1, 1, "/bin", b"")
        await cache.store(key, CachedResponse(200, [(b"content-type", b"application/octet-stream")], body), 30)
        return await cache.lookup(key)

    assert run(_with_cache(scenario)).body == body


def test_a_dead_redis_is_a_miss_and_store_does_not_raise():
    async def scenario():
        dead = aioredis.Redis(port=free_port(), socket_connect_timeout=0.1, retry=Retry(NoBackoff(), 0))
        cache = ResponseCache(dead)
        key = cache.key_for(1, 1, "/x", b"")
        await cache.store(key, CachedResponse(200, JSON, b"{}"), 30)
        return await cache.lookup(key)

    assert run(scenario()) is None


def test_a_corrupt_entry_is_a_miss():
    async def scenario(cache):
        key = cache.key_for(9, 9, "/corrupt", b"")
        await cache._redis.set(key, b"garbage", ex=30)
        return await cache.lookup(key)

    assert run(_with_cache(scenario)) is None


def test_an_upstream_max_age_of_a_year_is_cut_to_the_routes_ttl():
    year = [(b"cache-control", b"public, max-age=31536000")]

    async def scenario(cache):
        ttl = cache.ttl_for(200, year, 60)
        key = cache.key_for(_version(), 1, "/year", b"")
        await cache.store(key, CachedResponse(200, year, b"{}"), ttl)
        return ttl, await cache._redis.ttl(key)

    ttl, stored_for = run(_with_cache(scenario))
    assert ttl == 60 and 0 < stored_for <= 60
    cache = ResponseCache(aioredis.Redis())
    assert cache.ttl_for(200, [(b"cache-control", b"s-maxage=31536000, max-age=5")], 60) == 60
    assert cache.ttl_for(200, [(b"cache-control", b"max-age=31536000")], 0) is None  # route without a TTL


_versions = iter(range(700_000_000, 800_000_000))


def _version() -> int:
    """A version id no other test stores under, so its index is this test's alone."""
    return next(_versions) + os.getpid() % 1000 * 100_000


def test_each_version_keeps_at_most_its_cap_of_entries_and_evicts_the_oldest():
    busy, quiet = _version(), _version()

    async def scenario(cache):
        quiet_key = cache.key_for(quiet, 1, "/quiet", b"")
        await cache.store(quiet_key, CachedResponse(200, JSON, b"quiet"), 60)
        keys = [cache.key_for(busy, 1, "/items", b"page=%d" % n) for n in range(8)]
        for n, key in enumerate(keys):
            await cache.store(key, CachedResponse(200, JSON, b"%d" % n), 60)
        found = [await cache.lookup(key) for key in keys]
        redis = cache._redis
        index = f"portico:cache:idx:{busy}"
        return (
            [f.body if f else None for f in found],
            await redis.zcard(index),
            await redis.exists(*keys),
            0 < await redis.ttl(index) <= 61,
            await cache.lookup(quiet_key),
        )

    bodies, indexed, existing, index_expires, quiet_entry = run(_with_cache(scenario, max_entries_per_version=3))
    assert bodies == [None] * 5 + [b"5", b"6", b"7"]
    assert indexed == 3 and existing == 3  # evicted entries are deleted, not just unindexed
    assert index_expires
    assert quiet_entry is not None and quiet_entry.body == b"quiet"  # another version's entries stay


def test_expired_entries_leave_the_index_so_they_do_not_count_against_the_cap():
    version = _version()

    async def scenario(cache):
        for n in range(3):
            key = cache.key_for(version, 1, "/short", b"n=%d" % n)
            await cache.store(key, CachedResponse(200, JSON, b""), 1)
        await asyncio.sleep(1.1)
        fresh = cache.key_for(version, 1, "/fresh", b"")
        await cache.store(fresh, CachedResponse(200, JSON, b"fresh"), 60)
        return fresh, await cache._redis.zrange(f"portico:cache:idx:{version}", 0, -1)

    fresh, indexed = run(_with_cache(scenario, max_entries_per_version=3))
    assert indexed == [fresh.encode()]
