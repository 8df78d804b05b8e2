"""Plan limits, quotas and the response cache, through the real gateway with two workers."""

import concurrent.futures

import pytest
import redis as redis_lib
import requests

from portal import embedded_redis
from tests.gateway.conftest import GatewayProcess

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]


def burst(gateway, config, n, path="/echo"):
    """n requests at once, each on its own connection so both workers take part."""

    def one(_):
        return requests.get(f"{gateway.url}{config.base_path}{path}", headers={"X-API-Key": config.key}, timeout=10)

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(one, range(n)))


def test_a_limit_of_n_per_window_lets_exactly_n_through_across_both_workers(gateway, configure, upstream_a):
    config = configure([upstream_a], plan={"requests_per_minute": 25})
    responses = burst(gateway, config, 60)
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == 25 and statuses.count(429) == 35
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Remaining"] == "0" and refused.headers["RateLimit-Limit"] == "25"
    assert refused.headers["RateLimit-Policy"] == '"rpm";q=25;w=60'


def test_remaining_counts_down_truthfully(gateway, configure, upstream_a):
    config = configure([upstream_a], plan={"requests_per_minute": 5})
    remaining = [
        int(gateway.get(f"{config.base_path}/echo", config.key).headers["RateLimit-Remaining"]) for _ in range(5)
    ]
    assert remaining == [4, 3, 2, 1, 0]


def test_rejected_requests_do_not_count_against_the_quota(gateway, configure, upstream_a):
    config = configure([upstream_a], plan={"requests_per_minute": 3, "daily_quota": 5})
    statuses = [gateway.get(f"{config.base_path}/echo", config.key).status_code for _ in range(10)]
    assert statuses == [200, 200, 200] + [429] * 7
    last = gateway.get(f"{config.base_path}/echo", config.key)
    # Only the 3 admitted calls were counted against the daily quota of 5.
    assert '"daily";r=2;' in last.headers["RateLimit"]


def test_quota_exhaustion_gives_429_with_retry_after_until_the_window_ends(gateway, configure, upstream_a):
    config = configure([upstream_a], plan={"daily_quota": 3})
    statuses = [gateway.get(f"{config.base_path}/echo", config.key).status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    refused = gateway.get(f"{config.base_path}/echo", config.key)
    assert refused.json()["error"]["code"] == "quota_exceeded"
    assert 0 < int(refused.headers["Retry-After"]) <= 86400
    assert refused.headers["RateLimit-Policy"] == '"daily";q=3;w=86400'


def test_rate_and_quota_are_reported_as_separate_policies(gateway, configure, upstream_a):
    config = configure([upstream_a], plan={"requests_per_second": 100, "monthly_quota": 1000})
    response = gateway.get(f"{config.base_path}/echo", config.key)
    policies = response.headers["RateLimit-Policy"]
    assert '"rps";q=100;w=1' in policies and '"monthly";q=1000;w=' in policies
    assert '"rps";r=99;' in response.headers["RateLimit"] and '"monthly";r=999;' in response.headers["RateLimit"]


def test_cache_miss_then_hit_without_calling_the_upstream_again(gateway, configure, upstream_a):
    config = configure([upstream_a], cache_ttl_seconds=60)
    first = gateway.get(f"{config.base_path}/cache?q=1", config.key)
    second = gateway.get(f"{config.base_path}/cache?q=1", config.key)
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    assert first.json() == second.json()
    other_query = gateway.get(f"{config.base_path}/cache?q=2", config.key)
    assert other_query.headers["X-Cache"] == "MISS"


def test_no_store_and_private_answers_are_not_cached(gateway, configure, upstream_a):
    config = configure([upstream_a], cache_ttl_seconds=60)
    for directive in ("no-store", "private"):
        path = f"{config.base_path}/cache?cc={directive}"
        assert [gateway.get(path, config.key).headers["X-Cache"] for _ in range(2)] == ["MISS", "MISS"]


def test_client_no_cache_bypasses_the_cache(gateway, configure, upstream_a):
    config = configure([upstream_a], cache_ttl_seconds=60)
    gateway.get(f"{config.base_path}/cache?z=1", config.key)
    response = gateway.get(f"{config.base_path}/cache?z=1", config.key, headers={"Cache-Control": "no-cache"})
    assert response.headers["X-Cache"] == "MISS"


def test_cached_answers_are_not_shared_between_applications(gateway, configure, upstream_a):
    from portal.models import Application
    from portal.services import keys, subscriptions

    config = configure([upstream_a], cache_ttl_seconds=60)
    gateway.get(f"{config.base_path}/cache?shared=1", config.key)
    other_app = Application.objects.create(tenant=config.application.tenant, name="Other")
    subscriptions.request_subscription(other_app, config.api, config.plan, actor=config.owner)
    _key, other_secret = keys.create_api_key(other_app, actor=config.owner)
    gateway.wait_for_config()
    assert gateway.get(f"{config.base_path}/cache?shared=1", other_secret).headers["X-Cache"] == "MISS"


def test_cache_is_off_by_default(gateway, configure, upstream_a):
    config = configure([upstream_a])
    assert "X-Cache" not in gateway.get(f"{config.base_path}/cache", config.key).headers


def _on_a_new_connection(gateway, path, key):
    """One request on a connection of its own, so either worker may take it."""
    return requests.get(f"{gateway.url}{path}", headers={"X-API-Key": key}, timeout=10)


def test_an_exhausted_daily_quota_stays_exhausted_while_the_gateways_redis_is_down(configure, upstream_a, tmp_path):
    # A gateway of its own, on a Redis this test can stop.
    port = embedded_redis.free_port()
    own_redis = embedded_redis.start(port, tmp_path / "redis")
    url = f"redis://127.0.0.1:{port}/0"
    client = redis_lib.Redis.from_url(url)
    isolated = GatewayProcess(url, tmp_path)
    isolated.start()
    try:
        exhausted = configure([upstream_a], plan={"daily_quota": 3})
        never_called = configure([upstream_a], plan={"daily_quota": 1000})
        client.incr("portico:config:version")  # their versions were bumped on the session Redis
        isolated.wait_for_config(int(client.get("portico:config:version")))
        path = f"{exhausted.base_path}/echo"
        assert [_on_a_new_connection(isolated, path, exhausted.key).status_code for _ in range(3)] == [200] * 3
        # Until both workers have heard from Redis that nothing is left (a gateway-made request
        # id starts with its worker's prefix).
        workers_told = set()
        for _ in range(200):
            refused = _on_a_new_connection(isolated, path, exhausted.key)
            assert refused.status_code == 429
            workers_told.add(refused.headers["X-Request-ID"][:16])
            if len(workers_told) == 2:
                break
        assert len(workers_told) == 2

        own_redis.terminate()
        own_redis.wait(timeout=10)
        during = [_on_a_new_connection(isolated, path, exhausted.key) for _ in range(12)]
        assert [r.status_code for r in during] == [429] * 12
        assert {r.json()["error"]["code"] for r in during} == {"quota_exceeded"}
        # A quota no worker has read from Redis cannot be enforced: refused, not granted.
        unknown = _on_a_new_connection(isolated, f"{never_called.base_path}/echo", never_called.key)
        assert unknown.status_code == 503 and unknown.json()["error"]["code"] == "limits_unavailable"
    finally:
        isolated.stop()
        client.close()
        if own_redis.poll() is None:
            own_redis.terminate()
            own_redis.wait(timeout=10)
