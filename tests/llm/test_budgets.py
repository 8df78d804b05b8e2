"""Budgets against a real Redis: reserve-and-reconcile never overshoots under concurrency,
windows and periods turn when they should, refusals say what the gateway must answer."""

import asyncio
import itertools
import os
import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.redisconn import FastRedis
from llm.budgets import Budgets, Refusal, Reservation, from_micros, period_bounds, spend_in_period, to_micros
from llm.canonical import BudgetPolicy
from portal import embedded_redis
from portal.embedded_redis import free_port

REDIS_URL = os.environ["REDIS_URL"]
_ids = itertools.count(random.randrange(10**8, 10**9) * 1000)
T0 = 1_800_000_000.0  # a whole second: 2027-01-15 08:00:00 UTC


def policy(**limits) -> BudgetPolicy:
    limits.setdefault("scope", "key")
    return BudgetPolicy(scope_id=next(_ids), budget_id=next(_ids), **limits)


def run(coro):
    return asyncio.run(coro)


def dead_redis():
    return aioredis.Redis(port=free_port(), socket_connect_timeout=0.1, retry=Retry(NoBackoff(), 0))


def sync_client() -> redis.Redis:
    return redis.Redis.from_url(REDIS_URL)


async def with_budgets(scenario, workers=1, *, fast=True):
    clients = [FastRedis(REDIS_URL) if fast else aioredis.Redis.from_url(REDIS_URL) for _ in range(workers)]
    try:
        return await scenario(*[Budgets(c, on_redis_failure="open") for c in clients])
    finally:
        for c in clients:
            await c.aclose()


# -- concurrency --------------------------------------------------------------------------


@pytest.mark.parametrize("fast", [True, False], ids=["FastRedis", "redis-py"])
def test_fifty_concurrent_reservations_against_a_budget_for_ten_admit_ten_across_two_workers(fast):
    budget = policy(spend_limit_usd=Decimal("1.00"))

    async def scenario(first, second):
        workers = [first, second]
        return await asyncio.gather(*(workers[i % 2].reserve([budget], 100, Decimal("0.10")) for i in range(50)))

    outcomes = run(with_budgets(scenario, 2, fast=fast))
    assert sum(isinstance(o, Reservation) for o in outcomes) == 10
    assert {o.kind for o in outcomes if isinstance(o, Refusal)} == {"budget_exceeded"}
    with sync_client() as client:
        assert spend_in_period(client, budget, datetime.now(UTC)) == Decimal("1.00")


def test_tokens_per_minute_are_exact_under_concurrency_across_two_workers():
    limit = policy(tokens_per_minute=1000)

    async def scenario(first, second):
        workers = [first, second]
        return await asyncio.gather(*(workers[i % 2].reserve([limit], 100, None) for i in range(40)))

    outcomes = run(with_budgets(scenario, 2))
    refusals = [o for o in outcomes if isinstance(o, Refusal)]
    assert len(outcomes) - len(refusals) == 10
    assert {r.kind for r in refusals} == {"token_rate_limited"}
    assert all(1 <= r.retry_after <= 60 for r in refusals)


def test_requests_per_minute_are_exact_under_concurrency_across_two_workers():
    limit = policy(requests_per_minute=25)

    async def scenario(first, second):
        workers = [first, second]
        return await asyncio.gather(*(workers[i % 2].reserve([limit], 0, None) for i in range(60)))

    outcomes = run(with_budgets(scenario, 2))
    assert sum(isinstance(o, Reservation) for o in outcomes) == 25


# -- reconcile ---------------------------------------------------------------------------------


def test_reconciling_below_the_estimate_gives_the_difference_back():
    budget = policy(spend_limit_usd=Decimal("1.00"))

    async def scenario(budgets):
        first = await budgets.reserve([budget], 10, Decimal("0.50"))
        second = await budgets.reserve([budget], 10, Decimal("0.50"))
        third = await budgets.reserve([budget], 10, Decimal("0.40"))
        await budgets.reconcile(first, 4, Decimal("0.10"))
        fourth = await budgets.reserve([budget], 10, Decimal("0.40"))
        return first, second, third, fourth

    first, second, third, fourth = run(with_budgets(scenario))
    assert isinstance(first, Reservation) and isinstance(second, Reservation)
    assert isinstance(third, Refusal) and third.kind == "budget_exceeded"
    assert isinstance(fourth, Reservation)
    with sync_client() as client:
        assert spend_in_period(client, budget, datetime.now(UTC)) == Decimal("1.00")


def test_reconciling_above_the_estimate_counts_the_real_cost_and_refuses_the_next_call():
    budget = policy(spend_limit_usd=Decimal("1.00"))

    async def scenario(budgets):
        first = await budgets.reserve([budget], 10, Decimal("0.30"))
        await budgets.reconcile(first, 5000, Decimal("0.95"))
        return await budgets.reserve([budget], 10, Decimal("0.10"))

    after = run(with_budgets(scenario))
    assert isinstance(after, Refusal) and after.kind == "budget_exceeded"
    with sync_client() as client:
        assert spend_in_period(client, budget, datetime.now(UTC)) == Decimal("0.95")


def test_a_failed_call_reconciled_with_nothing_gives_back_its_whole_estimate():
    budget = policy(spend_limit_usd=Decimal("5"), tokens_per_minute=1000)

    async def scenario(budgets):
        first = await budgets.reserve([budget], 900, Decimal("4"), now=T0)
        refused = await budgets.reserve([budget], 900, Decimal("4"), now=T0 + 1)
        await budgets.reconcile(first, 0, Decimal(0), now=T0 + 2)
        again = await budgets.reserve([budget], 900, Decimal("4"), now=T0 + 3)
        return refused, again

    refused, again = run(with_budgets(scenario))
    assert isinstance(refused, Refusal) and isinstance(again, Reservation)


def test_reconciling_twice_counts_once():
    budget = policy(spend_limit_usd=Decimal("1"))

    async def scenario(budgets):
        reservation = await budgets.reserve([budget], 10, Decimal("0.5"))
        await budgets.reconcile(reservation, 10, Decimal("0.1"))
        await budgets.reconcile(reservation, 10, Decimal("0.1"))

    run(with_budgets(scenario))
    with sync_client() as client:
        assert spend_in_period(client, budget, datetime.now(UTC)) == Decimal("0.1")


def test_tokens_reconciled_down_free_the_window_and_up_fill_it():
    limit = policy(tokens_per_minute=1000)

    async def scenario(budgets):
        big = await budgets.reserve([limit], 800, None, now=T0)
        refused = await budgets.reserve([limit], 300, None, now=T0 + 1)
        await budgets.reconcile(big, 200, None, now=T0 + 2)
        admitted = await budgets.reserve([limit], 300, None, now=T0 + 3)  # 200 + 300 used
        await budgets.reconcile(admitted, 700, None, now=T0 + 4)  # 200 + 700 used
        last = await budgets.reserve([limit], 200, None, now=T0 + 5)
        return refused, admitted, last

    refused, admitted, last = run(with_budgets(scenario))
    assert isinstance(refused, Refusal) and isinstance(admitted, Reservation)
    assert isinstance(last, Refusal) and last.kind == "token_rate_limited"


# -- windows and periods ------------------------------------------------------------------------


def test_token_window_slides_and_retry_after_says_when_room_returns():
    limit = policy(tokens_per_minute=1000)

    async def scenario(budgets):
        await budgets.reserve([limit], 600, None, now=T0)
        await budgets.reserve([limit], 300, None, now=T0 + 20)
        early = await budgets.reserve([limit], 500, None, now=T0 + 30)  # needs the T0 bucket gone
        later = await budgets.reserve([limit], 500, None, now=T0 + 60)  # it is
        return early, later

    early, later = run(with_budgets(scenario))
    assert isinstance(early, Refusal) and early.kind == "token_rate_limited"
    assert early.retry_after == 30 and early.headers == [(b"retry-after", b"30")]
    assert early.status == 429
    assert isinstance(later, Reservation)


def test_request_rate_refusal_carries_retry_after():
    limit = policy(requests_per_minute=3)

    async def scenario(budgets):
        return [await budgets.reserve([limit], 0, None, now=T0) for _ in range(4)]

    outcomes = run(with_budgets(scenario))
    assert [isinstance(o, Reservation) for o in outcomes] == [True, True, True, False]
    refusal = outcomes[-1]
    assert refusal.kind == "request_rate_limited" and refusal.retry_after == 20  # one request per 20 s
    assert (refusal.scope, refusal.scope_id, refusal.budget_id) == ("key", limit.scope_id, limit.budget_id)


def test_an_estimate_larger_than_the_whole_token_limit_is_refused_without_retry():
    limit = policy(tokens_per_minute=1000)
    refusal = run(with_budgets(lambda b: b.reserve([limit], 1001, None)))
    assert isinstance(refusal, Refusal) and refusal.kind == "token_rate_limited"
    assert refusal.retry_after is None and refusal.headers == [(b"x-should-retry", b"false")]
    assert "max_tokens" in refusal.message


def test_exhausted_budget_refusal_says_not_to_retry():
    budget = policy(spend_limit_usd=Decimal("0.05"))
    refusal = run(with_budgets(lambda b: b.reserve([budget], 10, Decimal("0.06"))))
    assert isinstance(refusal, Refusal) and refusal.kind == "budget_exceeded"
    assert refusal.status == 429 and refusal.error_kind == "rate_limited"
    assert refusal.headers == [(b"x-should-retry", b"false")]


@pytest.mark.parametrize(
    ("period", "last_moment", "next_period"),
    [
        ("daily", datetime(2027, 3, 9, 23, 59, 59, tzinfo=UTC), datetime(2027, 3, 10, tzinfo=UTC)),
        ("weekly", datetime(2027, 3, 14, 23, 59, 59, tzinfo=UTC), datetime(2027, 3, 15, tzinfo=UTC)),  # Sun -> Mon
        ("monthly", datetime(2027, 2, 28, 23, 59, 59, tzinfo=UTC), datetime(2027, 3, 1, tzinfo=UTC)),
    ],
)
def test_spend_periods_roll_at_utc_boundaries(period, last_moment, next_period):
    budget = policy(spend_limit_usd=Decimal("1"), period=period)

    async def scenario(budgets):
        filled = await budgets.reserve([budget], 0, Decimal("1"), now=last_moment.timestamp())
        still = await budgets.reserve([budget], 0, Decimal("0.01"), now=last_moment.timestamp())
        fresh = await budgets.reserve([budget], 0, Decimal("0.25"), now=next_period.timestamp())
        return filled, still, fresh

    filled, still, fresh = run(with_budgets(scenario))
    assert isinstance(filled, Reservation) and isinstance(still, Refusal) and isinstance(fresh, Reservation)
    with sync_client() as client:
        assert spend_in_period(client, budget, last_moment) == Decimal("1")
        assert spend_in_period(client, budget, next_period) == Decimal("0.25")
        assert client.ttl(f"portico:llm:budget:key:{budget.scope_id}:spend:{period}:{int(next_period.timestamp())}") > 0


def test_period_bounds_are_utc_calendar_periods():
    moment = datetime(2028, 2, 29, 13, 5, tzinfo=UTC)  # a leap day, a Tuesday
    assert period_bounds("daily", moment) == (datetime(2028, 2, 29, tzinfo=UTC), datetime(2028, 3, 1, tzinfo=UTC))
    assert period_bounds("weekly", moment) == (datetime(2028, 2, 28, tzinfo=UTC), datetime(2028, 3, 6, tzinfo=UTC))
    assert period_bounds("monthly", moment) == (datetime(2028, 2, 1, tzinfo=UTC), datetime(2028, 3, 1, tzinfo=UTC))
    # An aware time elsewhere is the same instant in UTC; a naive one is taken as UTC.
    from datetime import timedelta, timezone

    tokyo = datetime(2028, 3, 1, 8, 0, tzinfo=timezone(timedelta(hours=9)))  # still Feb 29 in UTC
    assert period_bounds("daily", tokyo)[0] == datetime(2028, 2, 29, tzinfo=UTC)
    assert period_bounds("daily", datetime(2028, 2, 29, 23, 0))[0] == datetime(2028, 2, 29, tzinfo=UTC)
    with pytest.raises(ValueError):
        period_bounds("hourly", moment)


# -- money ------------------------------------------------------------------------------------


def test_micro_dollars_add_up_exactly_where_floats_drift():
    budget = policy(spend_limit_usd=Decimal("1"))

    async def scenario(budgets):
        for _ in range(10):
            reservation = await budgets.reserve([budget], 0, Decimal("0.07"))
            await budgets.reconcile(reservation, 0, Decimal("0.1"))
        return await budgets.reserve([budget], 0, Decimal("0.000001"))

    after = run(with_budgets(scenario))
    assert sum([0.1] * 10) != 1.0  # what floats would have counted
    assert isinstance(after, Refusal)
    with sync_client() as client:
        assert spend_in_period(client, budget, datetime.now(UTC)) == Decimal("1")


def test_costs_round_half_even_to_micro_dollars():
    assert to_micros(Decimal("0.0000005")) == 0
    assert to_micros(Decimal("0.0000015")) == 2
    assert to_micros(Decimal("12.3456789")) == 12_345_679
    assert from_micros(12_345_679) == Decimal("12.345679")
    with pytest.raises(ValueError):
        to_micros(Decimal("NaN"))


# -- unknown prices --------------------------------------------------------------------------


def test_an_unpriced_model_is_refused_under_a_spend_budget():
    budget = policy(spend_limit_usd=Decimal("10"), requests_per_minute=100)
    refusal = run(with_budgets(lambda b: b.reserve([budget], 10, None)))
    assert isinstance(refusal, Refusal) and refusal.kind == "budget_unpriced" and refusal.status == 403


def test_an_unpriced_model_is_admitted_where_only_rates_apply():
    limit = policy(requests_per_minute=100, tokens_per_minute=10_000)
    assert isinstance(run(with_budgets(lambda b: b.reserve([limit], 10, None))), Reservation)


def test_an_unknown_actual_cost_leaves_the_estimate_counted():
    budget = policy(spend_limit_usd=Decimal("1"))

    async def scenario(budgets):
        reservation = await budgets.reserve([budget], 10, Decimal("0.4"))
        await budgets.reconcile(reservation, 10, None)

    run(with_budgets(scenario))
    with sync_client() as client:
        assert spend_in_period(client, budget, datetime.now(UTC)) == Decimal("0.4")


# -- several policies -------------------------------------------------------------------------


def test_key_application_and_tenant_budgets_all_count_and_the_tightest_refuses():
    key = policy(spend_limit_usd=Decimal("10"))
    application = policy(scope="application", spend_limit_usd=Decimal("0.5"))
    tenant = policy(scope="tenant", spend_limit_usd=Decimal("100"))

    async def scenario(budgets):
        return [await budgets.reserve([key, application, tenant], 0, Decimal("0.2")) for _ in range(3)]

    outcomes = run(with_budgets(scenario))
    assert [isinstance(o, Reservation) for o in outcomes] == [True, True, False]
    assert (outcomes[-1].scope, outcomes[-1].scope_id) == ("application", application.scope_id)
    with sync_client() as client:
        for p in (key, application, tenant):
            assert spend_in_period(client, p, datetime.now(UTC)) == Decimal("0.4")


def test_two_budgets_of_one_scope_and_period_count_the_spend_once():
    loose = policy(spend_limit_usd=Decimal("10"))
    tight = BudgetPolicy(scope="key", scope_id=loose.scope_id, budget_id=next(_ids), spend_limit_usd=Decimal("1"))

    async def scenario(budgets):
        return [await budgets.reserve([loose, tight], 0, Decimal("0.4")) for _ in range(3)]

    outcomes = run(with_budgets(scenario))
    assert [isinstance(o, Reservation) for o in outcomes] == [True, True, False]
    assert outcomes[-1].budget_id == tight.budget_id
    with sync_client() as client:
        assert spend_in_period(client, loose, datetime.now(UTC)) == Decimal("0.8")


def test_a_refused_call_counts_nowhere():
    rate = policy(requests_per_minute=100, tokens_per_minute=100_000)
    budget = BudgetPolicy(scope="key", scope_id=rate.scope_id, budget_id=next(_ids), spend_limit_usd=Decimal("1"))

    async def scenario(budgets):
        refused = await budgets.reserve([rate, budget], 50_000, Decimal("2"), now=T0)
        # Had the refused call counted its 50,000 tokens, this one would not fit.
        admitted = await budgets.reserve([rate], 60_000, None, now=T0)
        return refused, admitted

    refused, admitted = run(with_budgets(scenario))
    assert isinstance(refused, Refusal) and refused.kind == "budget_exceeded"
    assert isinstance(admitted, Reservation)


def test_a_budget_refusal_wins_over_a_rate_refusal():
    """Retrying after Retry-After would only meet the exhausted budget."""
    both = policy(requests_per_minute=1, spend_limit_usd=Decimal("1"))

    async def scenario(budgets):
        await budgets.reserve([both], 0, Decimal("1"), now=T0)
        return await budgets.reserve([both], 0, Decimal("1"), now=T0)

    refusal = run(with_budgets(scenario))
    assert refusal.kind == "budget_exceeded" and refusal.retry_after is None


def test_a_zero_request_rate_refuses_without_retry():
    refusal = run(with_budgets(lambda b: b.reserve([policy(requests_per_minute=0)], 0, None)))
    assert isinstance(refusal, Refusal) and refusal.kind == "request_rate_limited" and refusal.retry_after is None


def test_no_policies_need_no_redis():
    budgets = Budgets(dead_redis(), on_redis_failure="closed")
    assert isinstance(run(budgets.reserve([policy()], 100, None)), Reservation)


def test_a_flushed_script_cache_is_reloaded():
    budget = policy(spend_limit_usd=Decimal("1"))

    async def scenario(budgets):
        first = await budgets.reserve([budget], 0, Decimal("0.5"))
        with sync_client() as client:
            client.script_flush()  # as after a Redis restart
        await budgets.reconcile(first, 0, Decimal("0.25"))
        return await budgets.reserve([budget], 0, Decimal("0.5"))

    assert isinstance(run(with_budgets(scenario)), Reservation)
    with sync_client() as client:
        assert spend_in_period(client, budget, datetime.now(UTC)) == Decimal("0.75")


# -- while Redis is away ------------------------------------------------------------------


def test_spend_budgets_fail_closed_without_redis():
    budgets = Budgets(dead_redis(), on_redis_failure="open")
    refusal = run(budgets.reserve([policy(spend_limit_usd=Decimal("10"))], 10, Decimal("0.01")))
    assert isinstance(refusal, Refusal) and refusal.kind == "budget_unavailable"
    assert refusal.status == 503 and refusal.retry_after == 1


def test_rates_are_enforced_in_the_worker_without_redis_when_open():
    limit = policy(requests_per_minute=3, tokens_per_minute=1000)

    async def scenario():
        budgets = Budgets(dead_redis(), on_redis_failure="open")
        outcomes = [await budgets.reserve([limit], 100, None, now=T0) for _ in range(4)]
        big = await budgets.reserve([limit], 800, None, now=T0 + 30)  # RPM has room again, TPM (300 used) not
        await budgets.reconcile(outcomes[0], 0, None, now=T0 + 31)
        fits = await budgets.reserve([limit], 800, None, now=T0 + 31)
        return outcomes, big, fits

    outcomes, big, fits = run(scenario())
    assert [isinstance(o, Reservation) for o in outcomes] == [True, True, True, False]
    assert outcomes[-1].kind == "request_rate_limited" and outcomes[-1].retry_after == 20
    assert isinstance(big, Refusal) and big.kind == "token_rate_limited" and big.retry_after == 30
    assert isinstance(fits, Reservation)


def test_rates_refuse_without_redis_when_closed():
    budgets = Budgets(dead_redis(), on_redis_failure="closed")
    refusal = run(budgets.reserve([policy(requests_per_minute=100)], 0, None))
    assert isinstance(refusal, Refusal) and refusal.kind == "budget_unavailable"


def test_unknown_failure_policy_is_refused():
    with pytest.raises(ValueError):
        Budgets(dead_redis(), on_redis_failure="maybe")


def test_when_redis_dies_mid_call_the_reconcile_is_dropped_and_budgets_fail_closed(tmp_path):
    port = free_port()
    own = embedded_redis.start(port, tmp_path / "redis")
    budget = policy(spend_limit_usd=Decimal("1"), requests_per_minute=100)

    async def scenario():
        client = FastRedis(f"redis://127.0.0.1:{port}/0", timeout=0.3, connect_timeout=0.2)
        budgets = Budgets(client, on_redis_failure="open")
        before = await budgets.reserve([budget], 10, Decimal("0.1"))
        own.terminate()
        own.wait(timeout=10)
        await budgets.reconcile(before, 10, Decimal("0.05"))  # logged, not raised
        during = await budgets.reserve([budget], 10, Decimal("0.1"))
        rates_only = await budgets.reserve([policy(requests_per_minute=100)], 10, None)
        await client.aclose()
        return before, during, rates_only

    try:
        before, during, rates_only = run(scenario())
    finally:
        if own.poll() is None:
            own.terminate()
            own.wait(timeout=10)
    assert isinstance(before, Reservation)
    assert isinstance(during, Refusal) and during.kind == "budget_unavailable"
    assert isinstance(rates_only, Reservation) and rates_only.local
