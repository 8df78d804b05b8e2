"""The plan limiter against a real Redis: exact under concurrency, and what happens without Redis."""

import asyncio
import time

import pytest
import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.limits import PlanLimiter, PlanLimits
from gateway.redisconn import FastRedis
from portal import embedded_redis
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


def _headers(decision) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in decision.headers}


def test_two_gateway_clients_share_one_exact_counter():
    """The same, through the multiplexed client the gateway's workers actually use."""

    async def scenario():
        clients = [FastRedis(settings.REDIS_URL) for _ in range(2)]
        limiters = [PlanLimiter(c) for c in clients]
        # Per minute: a per-second rate would regain a unit during any 25 ms pause (a GC) of the burst.
        decisions = await _burst(limiters, next(_ids), PlanLimits(plan_id=1, requests_per_minute=40), 120)
        for c in clients:
            await c.aclose()
        return decisions

    assert sum(d.allowed for d in run(scenario())) == 40


def test_quota_exhaustion_refuses_until_the_end_of_the_utc_day():
    async def scenario():
        client = aioredis.Redis.from_url(settings.REDIS_URL)
        limiter = PlanLimiter(client)
        decisions = [await limiter.check(next_id, PlanLimits(plan_id=1, daily_quota=3)) for _ in range(4)]
        await client.aclose()
        return decisions

    next_id = next(_ids)
    decisions = run(scenario())
    assert [d.allowed for d in decisions] == [True, True, True, False]
    refused = _headers(decisions[-1])
    assert decisions[-1].error_code == "quota_exceeded"
    seconds_to_midnight = 86400 - int(time.time()) % 86400
    assert abs(int(refused["retry-after"]) - seconds_to_midnight) <= 2
    assert abs(int(refused["ratelimit-reset"]) - seconds_to_midnight) <= 2
    assert refused["ratelimit-remaining"] == "0" and refused["ratelimit-limit"] == "3"
    assert refused["ratelimit-policy"] == '"daily";q=3;w=86400'
    assert [_headers(d)["ratelimit-remaining"] for d in decisions[:3]] == ["2", "1", "0"]


def test_rejected_requests_are_not_counted_against_other_policies():
    async def scenario():
        client = aioredis.Redis.from_url(settings.REDIS_URL)
        limiter = PlanLimiter(client)
        limits = PlanLimits(plan_id=1, requests_per_minute=2, daily_quota=100, monthly_quota=1000)
        decisions = [await limiter.check(subscription, limits) for _ in range(6)]
        used = await client.get(f"portico:rl:{subscription}:d{int(time.time()) // 86400 * 86400}")
        await client.aclose()
        return decisions, used

    subscription = next(_ids)
    decisions, used = run(scenario())
    assert [d.allowed for d in decisions] == [True, True, False, False, False, False]
    assert int(used) == 2
    state = _headers(decisions[-1])["ratelimit"]
    assert '"rpm";r=0;' in state and '"daily";r=98;' in state and '"monthly";r=998;' in state
    # The most restrictive policy is the one that refused.
    assert _headers(decisions[-1])["ratelimit-limit"] == "2"


def test_every_limit_key_expires():
    async def scenario():
        client = aioredis.Redis.from_url(settings.REDIS_URL)
        limiter = PlanLimiter(client)
        limits = PlanLimits(plan_id=1, requests_per_second=5, requests_per_minute=50, daily_quota=9, monthly_quota=99)
        await limiter.check(subscription, limits)
        ttls = [await client.ttl(k) async for k in client.scan_iter(f"portico:rl:{subscription}:*")]
        await client.aclose()
        return ttls

    subscription = next(_ids)
    ttls = run(scenario())
    assert len(ttls) == 4 and all(t > 0 for t in ttls)


def test_a_flushed_script_cache_is_reloaded():
    async def scenario():
        client = aioredis.Redis.from_url(settings.REDIS_URL)
        limiter = PlanLimiter(client)
        limits = PlanLimits(plan_id=1, requests_per_minute=10)
        first = await limiter.check(subscription, limits)
        await client.script_flush()  # as after a Redis restart
        second = await limiter.check(subscription, limits)
        await client.aclose()
        return first, second

    subscription = next(_ids)
    first, second = run(scenario())
    assert first.allowed and second.allowed
    assert _headers(second)["ratelimit-remaining"] == "8"


def test_a_dead_redis_is_not_asked_again_on_every_request():
    async def scenario():
        limiter = PlanLimiter(dead_redis())
        limits = PlanLimits(plan_id=1, requests_per_minute=1000)
        first = await limiter.check(1, limits)
        # The breaker is open: the next requests are served locally without a connection attempt.
        breaker_open = limiter._redis_down_until > time.time()
        rest = [await limiter.check(1, limits) for _ in range(50)]
        return first, breaker_open, rest

    first, breaker_open, rest = run(scenario())
    assert breaker_open
    assert first.allowed and all(d.allowed for d in rest)


def test_fast_redis_fails_every_waiting_command_when_redis_stops_answering():
    import socket

    from redis.exceptions import TimeoutError as RedisTimeoutError

    silent = socket.socket()  # accepts connections (the kernel does) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)

    async def scenario():
        client = FastRedis(f"redis://127.0.0.1:{silent.getsockname()[1]}/0", timeout=0.3)
        started = time.monotonic()
        outcomes = await asyncio.gather(client.get("a"), client.get("b"), return_exceptions=True)
        return outcomes, time.monotonic() - started

    try:
        outcomes, waited = run(scenario())
    finally:
        silent.close()
    assert [type(o) for o in outcomes] == [RedisTimeoutError, RedisTimeoutError]
    assert 0.25 <= waited < 1.0


def _evalsha_calls(client) -> int:
    return client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)


def _daily_key(subscription: int) -> str:
    return f"portico:rl:{subscription}:d{int(time.time()) // 86400 * 86400}"


def test_a_busy_subscription_far_from_its_limits_is_counted_in_blocks_not_per_request():
    import redis

    stats = redis.Redis.from_url(settings.REDIS_URL)
    subscription = next(_ids)
    limits = PlanLimits(plan_id=1, daily_quota=1_000_000)

    async def scenario():
        client = FastRedis(settings.REDIS_URL)
        limiter = PlanLimiter(client)
        decisions = []
        for _wave in range(40):
            decisions += await asyncio.gather(*(limiter.check(subscription, limits) for _ in range(50)))
        await limiter.close()  # gives back what is still reserved
        await client.aclose()
        return decisions

    before = _evalsha_calls(stats)
    decisions = run(scenario())
    calls = _evalsha_calls(stats) - before
    assert all(d.allowed for d in decisions)
    assert calls < len(decisions) / 8, f"{calls} script calls for {len(decisions)} requests"
    # Every admitted request is counted, and no unit is counted that was not used.
    assert int(stats.get(_daily_key(subscription))) == 2000


def test_reserved_units_never_exceed_the_plan_and_unused_ones_come_back_within_moments():
    import redis

    stats = redis.Redis.from_url(settings.REDIS_URL)
    subscription = next(_ids)
    limits = PlanLimits(plan_id=1, daily_quota=1000)

    async def scenario():
        clients = [FastRedis(settings.REDIS_URL) for _ in range(2)]
        limiters = [PlanLimiter(c) for c in clients]
        first = []
        for _wave in range(30):  # 1,500 requests over two workers for a quota of 1,000
            first += await _burst(limiters, subscription, limits, 50)
        counted_at_once = int(stats.get(_daily_key(subscription)))
        await asyncio.sleep(PlanLimiter.RESERVE_SECONDS * 3)  # reservations left unused go back
        later = await _burst(limiters, subscription, limits, 200)
        for c in clients:
            await c.aclose()
        return first, counted_at_once, later

    first, counted_at_once, later = run(scenario())
    assert counted_at_once <= 1000
    admitted = sum(d.allowed for d in first) + sum(d.allowed for d in later)
    assert admitted == 1000
    assert int(stats.get(_daily_key(subscription))) == 1000
    assert not later[-1].allowed and later[-1].error_code == "quota_exceeded"


def _one_after_another(subscription, limits, n):
    """The decisions for n requests checked one at a time by one limiter."""

    async def scenario():
        client = FastRedis(settings.REDIS_URL)
        limiter = PlanLimiter(client)
        decisions = [await limiter.check(subscription, limits) for _ in range(n)]
        await limiter.close()
        await client.aclose()
        return decisions

    return run(scenario())


def test_requests_admitted_from_a_reservation_report_the_remaining_count_truthfully():
    limits = PlanLimits(plan_id=1, daily_quota=100_000)
    subscription = next(_ids)

    remaining = [_headers(d)["ratelimit-remaining"] for d in _one_after_another(subscription, limits, 30)]
    assert remaining == [str(100_000 - n) for n in range(1, 31)]


def test_a_wave_of_concurrent_requests_reserves_one_block_not_one_per_request():
    import redis

    stats = redis.Redis.from_url(settings.REDIS_URL)
    subscription = next(_ids)
    limits = PlanLimits(plan_id=1, daily_quota=1_000_000)

    async def scenario():
        client = FastRedis(settings.REDIS_URL)
        limiter = PlanLimiter(client)
        await limiter.check(subscription, limits)  # now the limiter knows how much is spare
        wave = await asyncio.gather(*(limiter.check(subscription, limits) for _ in range(10)))
        counted = int(stats.get(_daily_key(subscription)))  # before any unused unit goes back
        await limiter.close()
        await client.aclose()
        return wave, counted

    wave, counted = run(scenario())
    assert all(d.allowed for d in wave)
    # 11 admitted; while one block request is on its way the others ask for themselves only.
    assert counted <= 11 + PlanLimiter.RESERVE_MAX


def test_reserved_requests_report_every_policy_of_the_plan_as_redis_decided_ones_do():
    limits = PlanLimits(plan_id=1, requests_per_minute=100_000, daily_quota=50_000)
    subscription = next(_ids)

    decisions = _one_after_another(subscription, limits, 40)
    to_midnight = 86400 - int(time.time()) % 86400
    for n, decision in enumerate(decisions, start=1):
        headers = _headers(decision)
        rpm, daily = (dict(p.split("=") for p in item.split(";")[1:]) for item in headers["ratelimit"].split(", "))
        assert headers["ratelimit"].startswith('"rpm";') and '"daily";' in headers["ratelimit"]
        assert int(daily["r"]) == 50_000 - n
        assert abs(int(daily["t"]) - to_midnight) <= 2
        assert 100_000 - n - 2 <= int(rpm["r"]) <= 100_000 and int(rpm["t"]) <= 60  # GCRA regains as time passes
        # The legacy trio follows the policy with the least left: the daily quota.
        assert headers["ratelimit-limit"] == "50000"
        assert headers["ratelimit-remaining"] == daily["r"]
        assert headers["ratelimit-reset"] == daily["t"]


def test_a_reload_with_the_same_plan_keeps_admitting_from_the_reservation_and_a_changed_plan_does_not():
    subscription = next(_ids)

    class PatientLimiter(PlanLimiter):
        # A block lives 50 ms; on a loaded machine that can pass between the last wave and
        # the checks below, which would test the clock instead of the plan comparison.
        RESERVE_SECONDS = 5.0

    async def scenario():
        client = FastRedis(settings.REDIS_URL)
        limiter = PatientLimiter(client)
        limits = PlanLimits(plan_id=1, daily_quota=1_000_000)
        for _wave in range(5):  # busy enough to be given a reserved block
            first = (await asyncio.gather(*(limiter.check(subscription, limits) for _ in range(50))))[-1]
        # A new snapshot compiles equal limits into new objects.
        same = [limiter.admit_reserved(subscription, PlanLimits(plan_id=1, daily_quota=1_000_000)) for _ in range(3)]
        changed = limiter.admit_reserved(subscription, PlanLimits(plan_id=1, daily_quota=10))
        await limiter.close()
        await client.aclose()
        return first, same, changed

    first, same, changed = run(scenario())
    assert first.allowed
    assert all(d is not None and d.allowed for d in same)
    assert changed is None  # decided by Redis under the new plan, not from units of the old one


# -- while Redis is away: quotas keep their count, rates follow the setting -----------------


class OwnRedis:
    """A Redis of the test's own, which it may stop as an outage would."""

    def __init__(self, tmp_path):
        self.port = free_port()
        self.process = embedded_redis.start(self.port, tmp_path / "redis")
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path):
    server = OwnRedis(tmp_path)
    yield server
    server.stop()


def test_an_exhausted_daily_quota_stays_exhausted_in_every_worker_after_redis_dies(own_redis):
    subscription, limits = next(_ids), PlanLimits(plan_id=1, daily_quota=3)

    async def scenario():
        clients = [FastRedis(own_redis.url) for _ in range(2)]
        first, second = (PlanLimiter(c, workers=2) for c in clients)  # two workers of one node
        before = [await first.check(subscription, limits) for _ in range(3)]
        before.append(await second.check(subscription, limits))  # the second worker reads "none left"
        own_redis.stop()
        during = [await limiter.check(subscription, limits) for limiter in (first, second) for _ in range(5)]
        return before, during

    before, during = run(scenario())
    assert [d.allowed for d in before] == [True, True, True, False]
    assert [(d.allowed, d.error_code) for d in during] == [(False, "quota_exceeded")] * 10
    assert all(_headers(d)["ratelimit-remaining"] == "0" and "retry-after" in _headers(d) for d in during)


def test_while_redis_is_away_a_worker_grants_at_most_its_share_of_the_quota_it_last_read(own_redis):
    # Small enough that no units are reserved ahead: every decision is Redis's until it dies.
    subscription, limits = next(_ids), PlanLimits(plan_id=1, daily_quota=60)

    async def scenario():
        limiter = PlanLimiter(FastRedis(own_redis.url), workers=2)
        before = [await limiter.check(subscription, limits) for _ in range(10)]  # Redis says 50 left
        own_redis.stop()
        during = [await limiter.check(subscription, limits) for _ in range(40)]
        return before, during

    before, during = run(scenario())
    assert all(d.allowed for d in before)
    # 50 left, shared by 2 workers: this one may grant 25 more, then the quota is used up for it.
    assert [d.allowed for d in during] == [True] * 25 + [False] * 15
    assert {d.error_code for d in during if not d.allowed} == {"quota_exceeded"}


def test_a_quota_this_worker_never_read_from_redis_is_refused_as_unavailable_while_redis_is_away():
    async def scenario():
        limiter = PlanLimiter(dead_redis(), on_redis_failure="open", workers=2)
        return [await limiter.check(next_id, PlanLimits(plan_id=1, requests_per_minute=100, daily_quota=5))]

    next_id = next(_ids)
    [decision] = run(scenario())
    assert not decision.allowed and decision.error_code == "limits_unavailable"
    assert _headers(decision)["retry-after"] == "1"


def test_fail_closed_refuses_plans_with_rates_but_keeps_serving_quotas_within_the_share(own_redis):
    quota_only = PlanLimits(plan_id=1, daily_quota=10)
    with_rate = PlanLimits(plan_id=2, requests_per_minute=100, daily_quota=10)
    first, second = next(_ids), next(_ids)

    async def scenario():
        limiter = PlanLimiter(FastRedis(own_redis.url), on_redis_failure="closed", workers=2)
        await limiter.check(first, quota_only)  # 9 left: a share of 4
        await limiter.check(second, with_rate)
        own_redis.stop()
        quota_decisions = [await limiter.check(first, quota_only) for _ in range(6)]
        rate_decision = await limiter.check(second, with_rate)
        return quota_decisions, rate_decision

    quota_decisions, rate_decision = run(scenario())
    assert [d.allowed for d in quota_decisions] == [True] * 4 + [False] * 2
    assert quota_decisions[-1].error_code == "quota_exceeded"
    assert not rate_decision.allowed and rate_decision.error_code == "limits_unavailable"


def test_fail_open_counts_rates_in_each_worker_but_never_past_its_quota_share(own_redis):
    tight_quota = PlanLimits(plan_id=1, requests_per_minute=3, daily_quota=5)
    ample_quota = PlanLimits(plan_id=2, requests_per_minute=3, daily_quota=1000)
    first, second = next(_ids), next(_ids)

    async def scenario():
        limiter = PlanLimiter(FastRedis(own_redis.url), on_redis_failure="open", workers=2)
        await limiter.check(first, tight_quota)  # 4 left: a share of 2
        await limiter.check(second, ample_quota)
        own_redis.stop()
        tight = [await limiter.check(first, tight_quota) for _ in range(5)]
        ample = [await limiter.check(second, ample_quota) for _ in range(5)]
        return tight, ample

    tight, ample = run(scenario())
    assert [d.allowed for d in tight] == [True, True, False, False, False]
    assert tight[2].error_code == "quota_exceeded"
    # The worker's own count of the rate starts afresh (fail-open): 3 a minute, in this worker.
    assert [d.allowed for d in ample] == [True, True, True, False, False]
    assert ample[3].error_code == "rate_limited"


def test_reserved_units_a_worker_cannot_give_back_remain_its_own_while_redis_is_away(own_redis):
    subscription, limits = next(_ids), PlanLimits(plan_id=1, daily_quota=1_000_000)

    async def scenario():
        # So many workers that a share of what is left is nothing: only held units may be used.
        limiter = PlanLimiter(FastRedis(own_redis.url), workers=10_000_000)
        limiter.RESERVE_SECONDS = 0.5  # so the block cannot go back before Redis is stopped
        for _wave in range(10):
            await asyncio.gather(*(limiter.check(subscription, limits) for _ in range(50)))
        held = limiter._reservations[subscription].units
        own_redis.stop()
        await asyncio.sleep(0.7)  # the block expires; giving it back fails
        during = [await limiter.check(subscription, limits) for _ in range(held + 20)]
        return held, during

    held, during = run(scenario())
    assert held > 1
    assert sum(d.allowed for d in during) == held
    assert during[-1].error_code == "quota_exceeded"
