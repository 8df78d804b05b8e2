"""The plan limiter against a real Redis: exact under concurrency, and what happens without Redis."""

import asyncio

import pytest
import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.limits import PlanLimiter, PlanLimits
from portal.embedded_redis import free_port

_ids = iter(range(10_000_000, 20_000_000))


def dead_redis():
    """A client for a port nobody listens on, configured as the gateway's is (no retries)."""
    return aioredis.Redis(port=free_port(), socket_connect_timeout=0.1, retry=Retry(NoBackoff(), 0))


def run(coro):
    return asyncio.run(coro)


async def _burst(limiters, subscription_id, limits, n):
    decisions = await asyncio.gather(*(limiters[i % len(limiters)].check(subscription_id, limits) for i in range(n)))
    return decisions


def test_two_workers_share_one_exact_counter():
    async def scenario():
        clients = [aioredis.Redis.from_url(settings.REDIS_URL) for _ in range(2)]
        limiters = [PlanLimiter(c) for c in clients]
        decisions = await _burst(limiters, next(_ids), PlanLimits(plan_id=1, requests_per_minute=50), 200)
        for c in clients:
            await c.aclose()
        return decisions

    decisions = run(scenario())
    assert sum(d.allowed for d in decisions) == 50
    assert {d.error_code for d in decisions if not d.allowed} == {"rate_limited"}


def test_unlimited_plan_needs_no_redis():
    limiter = PlanLimiter(dead_redis())
    decision = run(limiter.check(next(_ids), PlanLimits(plan_id=1)))
    assert decision.allowed and decision.headers == []


def test_fail_open_keeps_enforcing_the_plan_locally_when_redis_is_down():
    async def scenario():
        limiter = PlanLimiter(dead_redis(), on_redis_failure="open")
        return [await limiter.check(7, PlanLimits(plan_id=1, requests_per_minute=3)) for _ in range(5)]

    decisions = run(scenario())
    assert [d.allowed for d in decisions] == [True, True, True, False, False]


def test_fail_closed_refuses_with_limits_unavailable_when_redis_is_down():
    limiter = PlanLimiter(dead_redis(), on_redis_failure="closed")
    decision = run(limiter.check(8, PlanLimits(plan_id=1, requests_per_minute=3)))
    assert not decision.allowed and decision.error_code == "limits_unavailable"


def test_unknown_failure_policy_is_refused():
    with pytest.raises(ValueError):
        PlanLimiter(aioredis.Redis(), on_redis_failure="maybe")
