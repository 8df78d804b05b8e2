"""The response cache against a real Redis: what may be stored, for how long, for whom."""

import asyncio

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
        key = cache.key_for(1, 1, "GET", "/v1/items", b"a=1")
        headers = JSON + [(b"x-request-id", b"abc"), (b"etag", b'"v1"')]
        await cache.store(key, CachedResponse(200, headers, b'{"ok": true}'), 30)
        return await cache.lookup(key), await cache._redis.ttl(key)

    hit, ttl = run(_with_cache(scenario))
    assert hit == CachedResponse(200, JSON + [(b"etag", b'"v1"')], b'{"ok": true}')
    assert 0 < ttl <= 30


def test_entries_are_keyed_per_application_and_query():
    cache = ResponseCache(aioredis.Redis())
    base = cache.key_for(1, 1, "GET", "/v1/items", b"a=1&b=2")
    assert cache.key_for(1, 2, "GET", "/v1/items", b"a=1&b=2") != base  # another tenant's application
    assert cache.key_for(2, 1, "GET", "/v1/items", b"a=1&b=2") != base  # another version
    assert cache.key_for(1, 1, "GET", "/v1/items", b"a=2") != base
    assert cache.key_for(1, 1, "GET", "/v1/items", b"b=2&a=1") == base  # same query, other order
    assert cache.key_for(1, 1, "HEAD", "/v1/items", b"a=1&b=2") == base  # HEAD reads the GET entry


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
        key = cache.key_for(1, 1, "GET", "/big", b"")
        await cache.store(key, CachedResponse(200, JSON, b"x" * 101), 30)
        return await cache.lookup(key)

    assert run(_with_cache(scenario, max_body_bytes=100)) is None


def test_binary_bodies_survive_the_round_trip():
    body = bytes(range(256)) * 4

    async def scenario(cache):
        key = cache.key_for(1, 1, "GET", "/bin", b"")
        await cache.store(key, CachedResponse(200, [(b"content-type", b"application/octet-stream")], body), 30)
        return await cache.lookup(key)

    assert run(_with_cache(scenario)).body == body


def test_a_dead_redis_is_a_miss_and_store_does_not_raise():
    async def scenario():
        dead = aioredis.Redis(port=free_port(), socket_connect_timeout=0.1, retry=Retry(NoBackoff(), 0))
        cache = ResponseCache(dead)
        key = cache.key_for(1, 1, "GET", "/x", b"")
        await cache.store(key, CachedResponse(200, JSON, b"{}"), 30)
        return await cache.lookup(key)

    assert run(scenario()) is None


def test_a_corrupt_entry_is_a_miss():
    async def scenario(cache):
        key = cache.key_for(9, 9, "GET", "/corrupt", b"")
        await cache._redis.set(key, b"garbage", ex=30)
        return await cache.lookup(key)

    assert run(_with_cache(scenario)) is None
