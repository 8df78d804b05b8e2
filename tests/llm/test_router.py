"""Routing state: weighted split, cool-downs, key rotation, fallbacks, bounded retries."""

import asyncio
import json
import os
from collections import Counter

import pytest
import redis.asyncio as aioredis

from llm.canonical import AiConfig, AiRoute, ModelTarget, ProviderError, ProviderKey
from llm.router import COOL_DOWN_AFTER, COOL_DOWN_SECONDS, DEFAULT_REST_SECONDS, KEY_STATE_HASH, Router, falls_back


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def target(model_id: int, *keys: ProviderKey, provider_id: int | None = None) -> ModelTarget:
    return ModelTarget(
        model_id=model_id,
        provider_id=provider_id if provider_id is not None else model_id,
        provider_kind="openai",
        base_url="http://127.0.0.1:9100/openai/v1",
        upstream_model=f"model-{model_id}",
        keys=keys or (ProviderKey(model_id * 100, "sk-test"),),
    )


def route(targets, fallbacks=(), retries=1, alias="chat") -> AiRoute:
    return AiRoute(
        alias=alias,
        route_id=1,
        api_id=1,
        version_id=1,
        state="published",
        targets=tuple(targets),
        fallbacks=tuple(fallbacks),
        retries=retries,
    )


def error(kind: str, retry_after: float | None = None) -> ProviderError:
    return ProviderError(kind, kind, retry_after=retry_after)


def first_pick(router: Router, r: AiRoute) -> ModelTarget:
    attempts = router.attempts(r)
    chosen, _key = next(attempts)
    attempts.report(None)
    return chosen


# -- weighted split ------------------------------------------------------------------------


def test_a_70_30_split_is_exact_over_a_thousand_calls():
    a, b = target(1), target(2)
    router, r = Router(), route([(70, a), (30, b)])
    picks = Counter(first_pick(router, r).model_id for _ in range(1000))
    assert abs(picks[1] / 1000 - 0.70) <= 0.02 and abs(picks[2] / 1000 - 0.30) <= 0.02
    assert picks == {1: 700, 2: 300}  # smooth weighted round-robin is exact, not only within tolerance


def test_the_split_interleaves_rather_than_running_in_blocks():
    router, r = Router(), route([(70, target(1)), (30, target(2))])
    picks = [first_pick(router, r).model_id for _ in range(10)]
    assert picks.count(2) == 3 and "2, 2" not in ", ".join(map(str, picks))


def test_retries_do_not_skew_the_split():
    a, b = target(1), target(2)
    router, r = Router(), route([(1, a), (1, b)], retries=1)
    firsts = []
    for _ in range(100):
        attempts = router.attempts(r)
        chosen, _key = next(attempts)
        firsts.append(chosen.model_id)
        attempts.report(error("invalid_request"))  # the client's error: no retry, no cool-down
        attempts = router.attempts(r)
        first, _ = next(attempts)
        firsts.append(first.model_id)
        attempts.report(error("server"))
        second, _ = next(attempts)  # the retry goes to the other target
        assert second.model_id != first.model_id
        attempts.report(None)
        router._health.clear()  # keep cool-downs out of this test
    assert Counter(firsts) == {1: 100, 2: 100}


def test_a_zero_weight_target_is_never_chosen_first():
    router, r = Router(), route([(1, target(1)), (0, target(2))], retries=0)
    assert {first_pick(router, r).model_id for _ in range(20)} == {1}


# -- cool-down ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["server", "overloaded", "timeout", "connection"])
def test_a_target_failing_in_a_row_cools_down_and_recovers(kind):
    clock = Clock()
    a, b = target(1), target(2)
    router, r = Router(clock=clock), route([(1, a), (1, b)], retries=0)
    key_a = a.keys[0]
    for _ in range(COOL_DOWN_AFTER):
        router.report(a, key_a, error(kind))
    assert router.cooling(a)
    assert {first_pick(router, r).model_id for _ in range(10)} == {2}
    clock.now += COOL_DOWN_SECONDS + 0.001
    assert not router.cooling(a)
    assert {first_pick(router, r).model_id for _ in range(10)} == {1, 2}


def test_a_success_ends_the_failure_run():
    a = target(1)
    router = Router()
    for _ in range(COOL_DOWN_AFTER - 1):
        router.report(a, a.keys[0], error("server"))
    router.report(a, a.keys[0], None)
    for _ in range(COOL_DOWN_AFTER - 1):
        router.report(a, a.keys[0], error("server"))
    assert not router.cooling(a)


def test_when_every_target_cools_down_they_are_tried_anyway():
    a, f = target(1), target(2)
    router, r = Router(), route([(1, a)], fallbacks=[f])
    for t in (a, f):
        for _ in range(COOL_DOWN_AFTER):
            router.report(t, t.keys[0], error("connection"))
    attempts = router.attempts(r)
    assert next(attempts)[0] is a


# -- keys --------------------------------------------------------------------------------------


def test_a_rejected_key_is_disabled_until_the_next_config_reload():
    k1, k2 = ProviderKey(1, "one", priority=0), ProviderKey(2, "two", priority=1)
    a = target(1, k1, k2)
    router, r = Router(), route([(1, a)])
    attempts = router.attempts(r)
    assert next(attempts) == (a, k1)
    attempts.report(error("authentication"))
    assert next(attempts) == (a, k2)  # same target, next key
    attempts.report(None)
    assert [router.key_for(a) for _ in range(3)] == [k2, k2, k2]
    router.reload(AiConfig(routes={"chat": r}))
    assert router.key_for(a) == k1


def test_a_forbidden_key_is_disabled_too():
    k1, k2 = ProviderKey(1, "one"), ProviderKey(2, "two", priority=5)
    a = target(1, k1, k2)
    router = Router()
    router.report(a, k1, error("permission"))
    assert router.key_for(a) == k2


def test_a_rate_limited_key_rests_until_its_reset():
    clock = Clock()
    k1, k2 = ProviderKey(1, "one", priority=0), ProviderKey(2, "two", priority=1)
    a = target(1, k1, k2)
    router = Router(clock=clock)
    router.report(a, k1, error("rate_limited", retry_after=12))
    assert router.key_for(a) == k2
    clock.now += 11.9
    assert router.key_for(a) == k2
    clock.now += 0.2
    assert router.key_for(a) == k1
    assert not router.cooling(a)  # other keys may serve: the target itself is fine


def test_a_rate_limited_key_without_a_reset_rests_thirty_seconds_and_hostile_resets_are_bounded():
    clock = Clock()
    k1, k2 = ProviderKey(1, "one"), ProviderKey(2, "two", priority=1)
    a = target(1, k1, k2)
    router = Router(clock=clock)
    router.report(a, k1, error("rate_limited"))
    clock.now += DEFAULT_REST_SECONDS - 0.1
    assert router.key_for(a) == k2
    clock.now += 0.2
    assert router.key_for(a) == k1
    router.report(a, k1, error("rate_limited", retry_after=1e12))
    clock.now += 3600.1
    assert router.key_for(a) == k1
    router.report(a, k1, error("rate_limited", retry_after=float("nan")))
    assert router.key_for(a) == k2
    router.report(a, k1, error("rate_limited", retry_after=-5))
    assert router.key_for(a) == k1


def test_keys_of_equal_priority_take_turns_and_better_priorities_come_first():
    keys = ProviderKey(1, "a", priority=0), ProviderKey(2, "b", priority=0), ProviderKey(3, "c", priority=1)
    a = target(1, *keys)
    router = Router()
    assert [router.key_for(a).id for _ in range(4)] == [1, 2, 1, 2]
    router.report(a, keys[0], error("authentication"))
    router.report(a, keys[1], error("rate_limited"))
    assert router.key_for(a).id == 3


def test_a_target_whose_keys_all_rest_is_skipped_for_the_fallback():
    a, f = target(1), target(2)
    router, r = Router(), route([(1, a)], fallbacks=[f], retries=3)
    attempts = router.attempts(r)
    assert next(attempts)[0] is a
    attempts.report(error("rate_limited", retry_after=60))
    assert next(attempts)[0] is f


# -- fallbacks and bounds --------------------------------------------------------------------


def test_fallbacks_follow_the_chain_in_order_after_bounded_retries():
    a, b, f1, f2 = target(1), target(2), target(3), target(4)
    router, r = Router(), route([(2, a), (1, b)], fallbacks=[f1, f2], retries=2)
    attempts = router.attempts(r)
    tried = []
    for chosen, _key in attempts:
        tried.append(chosen.model_id)
        attempts.report(error("server"))
    # retries + 1 on the weighted list (the untried target before the first again), then the chain.
    assert tried == [1, 2, 1, 3, 4]


def test_a_cooling_fallback_is_skipped():
    a, f1, f2 = target(1), target(2), target(3)
    router, r = Router(), route([(1, a)], fallbacks=[f1, f2], retries=0)
    for _ in range(COOL_DOWN_AFTER):
        router.report(f1, f1.keys[0], error("timeout"))
    attempts = router.attempts(r)
    assert next(attempts)[0] is a
    attempts.report(error("timeout"))
    assert next(attempts)[0] is f2


@pytest.mark.parametrize("kind", ["invalid_request", "not_found"])
def test_the_clients_own_errors_neither_fall_back_nor_count(kind):
    a, f = target(1), target(2)
    router, r = Router(), route([(1, a)], fallbacks=[f], retries=3)
    attempts = router.attempts(r)
    next(attempts)
    for _ in range(COOL_DOWN_AFTER):
        attempts.report(error(kind))
    assert list(attempts) == []
    assert not router.cooling(a) and router.key_for(a) == a.keys[0]
    assert not falls_back(error(kind))


def test_a_success_ends_the_attempts():
    router, r = Router(), route([(1, target(1))], fallbacks=[target(2)])
    attempts = router.attempts(r)
    next(attempts)
    attempts.report(None)
    assert list(attempts) == []


def test_a_context_length_error_falls_back_without_retrying_that_target():
    small, large = target(1), target(2)
    router, r = Router(), route([(1, small)], fallbacks=[large], retries=3)
    attempts = router.attempts(r)
    assert next(attempts)[0] is small
    attempts.report(error("context_length"))
    assert next(attempts)[0] is large
    assert not router.cooling(small)


def test_a_route_without_usable_keys_has_no_attempts():
    bare = ModelTarget(1, 1, "openai", "http://127.0.0.1:9100/openai/v1", "m", keys=())
    assert list(Router().attempts(route([(1, bare)]))) == []


def test_reporting_before_any_attempt_is_a_programming_error():
    with pytest.raises(RuntimeError):
        Router().attempts(route([(1, target(1))])).report(None)


def test_a_reload_keeps_the_split_for_unchanged_targets_and_forgets_removed_ones():
    clock = Clock()
    a, b = target(1), target(2)
    router, r = Router(clock=clock), route([(1, a), (1, b)])
    assert first_pick(router, r) is a
    for _ in range(COOL_DOWN_AFTER):
        router.report(b, b.keys[0], error("server"))
    router.reload(AiConfig(routes={"chat": route([(1, a), (1, b)])}))  # equal, newer objects
    assert router.cooling(b)
    router._health.clear()
    assert first_pick(router, r) is b  # the turn went on where it was
    router.reload(AiConfig(routes={"chat": route([(1, a)])}))
    assert 2 not in router._health and "chat" not in router._splits


# -- telling the control plane ------------------------------------------------------------------


def test_a_disabled_or_resting_key_is_reported_to_redis_off_the_request_path():
    k1, k2 = ProviderKey(987_001, "one"), ProviderKey(987_002, "two")
    a = target(1, k1, k2)

    async def scenario():
        client = aioredis.Redis.from_url(os.environ["REDIS_URL"])
        router = Router(redis=client)
        router.report(a, k1, error("authentication"))
        router.report(a, k2, error("rate_limited", retry_after=10))
        await router.flush_reports()
        states = {k: json.loads(await client.hget(KEY_STATE_HASH, str(k))) for k in (k1.id, k2.id)}
        await client.aclose()
        return states

    states = asyncio.run(scenario())
    assert states[k1.id]["state"] == "disabled" and states[k1.id]["reason"] == "authentication"
    assert states[k2.id]["state"] == "rate_limited" and states[k2.id]["until"] > states[k2.id]["at"]


def test_a_report_to_an_unreachable_redis_changes_nothing_for_the_worker():
    from portal.embedded_redis import free_port

    k1, k2 = ProviderKey(1, "one"), ProviderKey(2, "two", priority=1)
    a = target(1, k1, k2)

    async def scenario():
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        dead = aioredis.Redis(port=free_port(), socket_connect_timeout=0.1, retry=Retry(NoBackoff(), 0))
        router = Router(redis=dead)
        router.report(a, k1, error("authentication"))
        await router.flush_reports()
        return router.key_for(a)

    assert asyncio.run(scenario()) == k2
