"""Budgets and token limits through the real gateway (gunicorn, 2 workers), in the session's
Redis: reserve an estimate before the call, reconcile with the real usage after it, so
concurrent calls on both workers can never overshoot a budget.

The estimates are computed here with the gateway's own rules (the openai inbound parse,
``llm.tokens`` and ``llm.pricing``) so each test can choose limits that admit an exact
number of calls. Concurrent calls each get their own client (their own connection), so
the kernel spreads them over both workers; a barrier releases them together.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import openai
import orjson
import pytest

from llm import pricing, tokens
from llm.budgets import KEY_PREFIX, from_micros, spend_in_period, to_micros
from llm.canonical import BudgetPolicy, Prices, Usage
from llm.inbound import FORMATS
from portal.services import keys as key_services
from tests.llm.conftest import Budget, Target, user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

# Output dominates the price, and the mock's answer ("Mock openai answer to: ...") is longer
# than MAX_TOKENS tokens, so every admitted call really uses its whole completion estimate:
# its real cost is within a few input tokens of what was reserved for it.
SPEND_PRICES = {"input_price": Decimal("1"), "output_price": Decimal("200")}
MAX_TOKENS = 5
PROMPT = "Tell me everything about budgets please"


def estimate(route_default_max_tokens: int = 1024, **body: Any) -> tuple[int, int]:
    """(tokens, cost in micro-dollars at SPEND_PRICES) the gateway reserves for this body."""
    request = FORMATS["openai"].parse_chat(orjson.dumps(body))
    prompt = tokens.estimate_prompt_tokens(request)
    completion = tokens.estimate_max_completion(request, route_default_max_tokens)
    cost = pricing.estimate_cost(prompt, completion, prices(SPEND_PRICES))
    assert cost is not None
    return prompt + completion, to_micros(cost)


def prices(spec: dict[str, Decimal]) -> Prices:
    return Prices(spec.get("input_price"), spec.get("output_price"), spec.get("cached_input_price"))


def burst(route, n: int, **params: Any) -> list[tuple[str, Any]]:
    """``n`` calls at once, each on its own connection: ("ok", completion) or ("refused", error)."""
    barrier = threading.Barrier(n)

    def one(_i: int) -> tuple[str, Any]:
        client = route.openai(timeout=20)
        barrier.wait()
        try:
            return "ok", client.chat.completions.create(model=route.alias, messages=user(PROMPT), **params)
        except openai.RateLimitError as error:
            return "refused", error

    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(one, range(n)))


def ok(results: list[tuple[str, Any]]) -> list[Any]:
    return [value for outcome, value in results if outcome == "ok"]


def refused(results: list[tuple[str, Any]]) -> list[openai.RateLimitError]:
    return [value for outcome, value in results if outcome == "refused"]


def wait_for(read, expected, timeout: float = 5.0):
    """Poll ``read()`` until it gives ``expected`` (reconciliation follows the answer)."""
    deadline = time.monotonic() + timeout
    value = read()
    while value != expected and time.monotonic() < deadline:
        time.sleep(0.05)
        value = read()
    return value


def tpm_used(redis_client, scope: str, scope_id: int) -> int:
    window = redis_client.hgetall(f"{KEY_PREFIX}{scope}:{scope_id}:tpm")
    return sum(int(v) for v in window.values())


# -- spend: 50 concurrent calls against a budget that admits 10 --------------------------------


def test_fifty_concurrent_calls_against_a_spend_budget_for_ten_admit_ten_and_reconcile_to_real_cost(
    ai_route, mock_llm, redis_client, call_record
):
    body = {"model": "x", "messages": user(PROMPT), "max_tokens": MAX_TOKENS}
    _tokens, reserved = estimate(**body)
    # Ten reservations fit, an eleventh does not, and ten real costs (each above 95 % of its
    # reservation) leave no room for another reservation after reconciliation either.
    limit = from_micros(10 * reserved + reserved // 2)
    route = ai_route([Target("openai", prices=SPEND_PRICES)], budgets=[Budget("key", spend_limit_usd=limit)])
    # Admitted calls stay in flight while the others arrive: only the reservation stops them.
    mock_llm.faults("slow_first_byte", match={"model": route.target.upstream}, times=-1, ms=400)

    results = burst(route, 50, max_tokens=MAX_TOKENS)

    answered, refusals = ok(results), refused(results)
    assert len(answered) <= 10
    assert len(answered) == 10 and len(refusals) == 40
    for error in refusals:
        assert error.status_code == 429 and error.code == "budget_exceeded"
        assert error.response.headers["x-should-retry"] == "false"
        assert "retry-after" not in error.response.headers
    assert len(mock_llm.requests(model=route.target.upstream)) == 10, "a refused call never reaches the provider"
    for completion in answered:
        assert completion.choices[0].finish_reason == "length"
        assert completion.usage.completion_tokens == MAX_TOKENS

    # Reconciled: what Redis counts is the sum of the admitted calls' real costs, each
    # rounded to micro-dollars as it was counted.
    real = sum(
        to_micros(
            pricing.cost(
                Usage(c.usage.prompt_tokens, c.usage.completion_tokens, c.usage.prompt_tokens_details.cached_tokens),
                prices(SPEND_PRICES),
            )
        )
        for c in answered
    )
    assert real < 10 * reserved, "the real cost is below the estimate, so reconciliation moves the counter"
    (budget,) = route.budgets
    policy = BudgetPolicy("key", route.api_key.pk, budget.pk, "monthly", limit)
    spent = wait_for(lambda: spend_in_period(redis_client, policy, datetime.now(UTC)), from_micros(real))
    assert spent == from_micros(real)
    wait_for(lambda: sum(r["status"] == 200 for r in call_record.all_of(route.key_prefix)), 10)
    recorded = [r for r in call_record.all_of(route.key_prefix) if r["status"] == 200]
    assert len(recorded) == 10
    assert sum(to_micros(Decimal(r["cost"])) for r in recorded) == real

    # Nothing left: one more call is refused too.
    with pytest.raises(openai.RateLimitError) as raised:
        route.openai().chat.completions.create(model=route.alias, messages=user(PROMPT), max_tokens=MAX_TOKENS)
    assert raised.value.code == "budget_exceeded"


def test_a_tenants_spend_budget_is_shared_by_its_applications_and_spares_other_tenants(ai_route, mock_llm):
    body = {"model": "x", "messages": user(PROMPT), "max_tokens": MAX_TOKENS}
    _tokens, reserved = estimate(**body)
    limit = from_micros(reserved + reserved // 2)  # one call
    route = ai_route([Target("openai", prices=SPEND_PRICES)], budgets=[Budget("tenant", spend_limit_usd=limit)])
    sibling = ai_route.another_caller(route, tenant=route.tenant)
    stranger = ai_route.another_caller(route)

    route.openai().chat.completions.create(model=route.alias, messages=user(PROMPT), max_tokens=MAX_TOKENS)
    for caller in (sibling, route):
        with pytest.raises(openai.RateLimitError) as raised:
            caller.openai().chat.completions.create(model=route.alias, messages=user(PROMPT), max_tokens=MAX_TOKENS)
        assert raised.value.code == "budget_exceeded"
    answer = stranger.openai().chat.completions.create(model=route.alias, messages=user(PROMPT), max_tokens=MAX_TOKENS)
    assert answer.choices[0].finish_reason == "length"
    assert len(mock_llm.requests(model=route.target.upstream)) == 2


# -- tokens and requests per minute ----------------------------------------------------------------


def test_a_tokens_per_minute_budget_admits_exactly_what_fits_across_both_workers(
    ai_route, mock_llm, redis_client, call_record
):
    max_tokens = 40  # more than the mock's answer: the real usage is below the estimate
    per_call, _cost = estimate(model="x", messages=user(PROMPT), max_tokens=max_tokens)
    limit = 3 * per_call + per_call // 2
    route = ai_route(budgets=[Budget("key", tokens_per_minute=limit)])
    mock_llm.faults("slow_first_byte", match={"model": route.target.upstream}, times=-1, ms=800)

    results = burst(route, 12, max_tokens=max_tokens)

    answered, refusals = ok(results), refused(results)
    assert (len(answered), len(refusals)) == (3, 9)
    for error in refusals:
        assert error.status_code == 429 and error.code == "token_rate_limited"
        assert 1 <= int(error.response.headers["retry-after"]) <= 60
    used = answered[0].usage.total_tokens
    assert all(c.usage.total_tokens == used for c in answered) and used < per_call
    # Reconciled: the window holds the real tokens of the admitted calls.
    window = wait_for(lambda: tpm_used(redis_client, "key", route.api_key.pk), 3 * used)
    assert window == 3 * used

    # Then it admits what fits by the real usage (one call at a time, each reconciled before
    # the next), and refuses the first call that does not fit.
    mock_llm.reset()
    fits, counted = 0, 3 * used
    while counted + per_call <= limit:
        fits, counted = fits + 1, counted + used
    assert fits >= 1
    counted = 3 * used
    for _ in range(fits):
        route.openai().chat.completions.create(model=route.alias, messages=user(PROMPT), max_tokens=max_tokens)
        counted += used
        assert wait_for(lambda: tpm_used(redis_client, "key", route.api_key.pk), counted) == counted
    with pytest.raises(openai.RateLimitError) as raised:
        route.openai().chat.completions.create(model=route.alias, messages=user(PROMPT), max_tokens=max_tokens)
    assert raised.value.code == "token_rate_limited" and "retry-after" in raised.value.response.headers
    assert len(mock_llm.requests(model=route.target.upstream)) == fits

    # A call whose estimate alone exceeds the limit can never fit: no Retry-After.
    with pytest.raises(openai.RateLimitError) as raised:
        route.openai().chat.completions.create(model=route.alias, messages=user(PROMPT), max_tokens=limit)
    assert raised.value.code == "token_rate_limited"
    assert raised.value.response.headers.get("x-should-retry") == "false"


def test_a_requests_per_minute_budget_admits_exactly_its_limit_across_both_workers(ai_route, mock_llm):
    route = ai_route(budgets=[Budget("key", requests_per_minute=4)])

    results = burst(route, 12)

    answered, refusals = ok(results), refused(results)
    assert (len(answered), len(refusals)) == (4, 8)
    for error in refusals:
        assert error.code == "request_rate_limited"
        assert 1 <= int(error.response.headers["retry-after"]) <= 60
    assert len(mock_llm.requests(model=route.target.upstream)) == 4


def test_a_streamed_call_is_reconciled_with_its_real_usage_the_client_did_not_ask_for(ai_route, mock_llm, redis_client):
    route = ai_route(budgets=[Budget("key", tokens_per_minute=10_000)])

    stream = route.openai().chat.completions.create(
        model=route.alias, messages=user(PROMPT), max_tokens=40, stream=True
    )
    assert all(chunk.usage is None for chunk in stream)

    (request,) = mock_llm.requests(model=route.target.upstream)
    said = mock_llm.answer_for(request)
    real = said.prompt_tokens + said.completion_tokens
    assert wait_for(lambda: tpm_used(redis_client, "key", route.api_key.pk), real) == real


def test_a_call_that_fails_on_every_target_gives_its_reservation_back(ai_route, mock_llm, redis_client):
    _tokens, reserved = estimate(model="x", messages=user(PROMPT), max_tokens=MAX_TOKENS)
    limit = from_micros(reserved + reserved // 2)  # room for one call
    route = ai_route([Target("openai", prices=SPEND_PRICES)], budgets=[Budget("key", spend_limit_usd=limit)], retries=0)
    (budget,) = route.budgets
    policy = BudgetPolicy("key", route.api_key.pk, budget.pk, "monthly", limit)
    mock_llm.faults("status", match={"model": route.target.upstream}, times=2, status=500)

    for _ in range(2):  # each failed call is admitted again: nothing was spent
        with pytest.raises(openai.InternalServerError):
            route.openai().chat.completions.create(model=route.alias, messages=user(PROMPT), max_tokens=MAX_TOKENS)
        assert wait_for(lambda: spend_in_period(redis_client, policy, datetime.now(UTC)), Decimal(0)) == 0

    answer = route.openai().chat.completions.create(model=route.alias, messages=user(PROMPT), max_tokens=MAX_TOKENS)
    assert answer.choices[0].finish_reason == "length"


# -- each scope is enforced ----------------------------------------------------------------------


def second_key(gateway, route):
    """Another API key of the route's application."""
    _key, secret = key_services.create_api_key(route.application, actor=route.owner)
    gateway.wait_for_config()
    return secret


def call(route, api_key: str | None = None) -> str:
    """ "ok" or the refusal's code."""
    try:
        route.openai(api_key=api_key or route.key).chat.completions.create(model=route.alias, messages=user("Hi"))
    except openai.RateLimitError as error:
        return str(error.code)
    return "ok"


def test_a_keys_budget_limits_that_key_only(ai_route, gateway):
    route = ai_route(budgets=[Budget("key", requests_per_minute=2)])
    other_key = second_key(gateway, route)

    assert [call(route) for _ in range(3)] == ["ok", "ok", "request_rate_limited"]
    assert [call(route, other_key) for _ in range(3)] == ["ok", "ok", "ok"]


def test_an_applications_budget_is_shared_by_its_keys_only(ai_route, gateway):
    route = ai_route(budgets=[Budget("application", requests_per_minute=3)])
    other_key = second_key(gateway, route)
    sibling_app = ai_route.another_caller(route, tenant=route.tenant)

    outcomes = [call(route), call(route, other_key), call(route), call(route, other_key), call(route)]
    assert outcomes == ["ok", "ok", "ok", "request_rate_limited", "request_rate_limited"]
    assert [call(sibling_app) for _ in range(3)] == ["ok", "ok", "ok"]


def test_a_tenants_budget_is_shared_by_its_applications_only(ai_route):
    route = ai_route(budgets=[Budget("tenant", requests_per_minute=3)])
    sibling_app = ai_route.another_caller(route, tenant=route.tenant)
    stranger = ai_route.another_caller(route)

    outcomes = [call(route), call(sibling_app), call(route), call(sibling_app), call(route)]
    assert outcomes == ["ok", "ok", "ok", "request_rate_limited", "request_rate_limited"]
    assert [call(stranger) for _ in range(3)] == ["ok", "ok", "ok"]


def test_concurrent_calls_that_fall_back_to_a_pricier_model_never_overshoot_a_spend_budget(
    ai_route, mock_llm, redis_client
):
    cheap = {"input_price": Decimal("1"), "output_price": Decimal("2")}
    _tokens, reserved = estimate(model="x", messages=user(PROMPT), max_tokens=MAX_TOKENS)  # at SPEND_PRICES
    limit = from_micros(10 * reserved + reserved // 2)  # ten calls, if each is reserved at the fallback's price
    route = ai_route(
        [Target("openai", prices=cheap)],
        fallbacks=[Target("openai", prices=SPEND_PRICES)],
        budgets=[Budget("key", spend_limit_usd=limit)],
        retries=0,
    )
    mock_llm.faults("status", match={"model": route.target.upstream}, times=-1, status=500)
    mock_llm.faults("slow_first_byte", match={"model": route.fallbacks[0].upstream}, times=-1, ms=400)

    results = burst(route, 30, max_tokens=MAX_TOKENS)

    answered = ok(results)
    assert all(r.status_code == 429 and r.code == "budget_exceeded" for r in refused(results))
    (budget,) = route.budgets
    policy = BudgetPolicy("key", route.api_key.pk, budget.pk, "monthly", limit)
    real = sum(
        to_micros(pricing.cost(Usage(c.usage.prompt_tokens, c.usage.completion_tokens), prices(SPEND_PRICES)))
        for c in answered
    )
    spent = wait_for(lambda: spend_in_period(redis_client, policy, datetime.now(UTC)), from_micros(real))
    assert spent == from_micros(real)
    assert spent <= limit, f"{len(answered)} calls admitted at the cheap target's estimate spent {spent} > {limit}"
