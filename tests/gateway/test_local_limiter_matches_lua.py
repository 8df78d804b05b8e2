"""The per-worker stand-in decides as the Lua scripts do: the same seeded sequence of
requests (and returns of reserved units), at simulated times, through LIMIT_SCRIPT and
RETURN_SCRIPT in a real Redis and through ``_LocalLimiter``, gives the same answer at every
step: admitted, refused policy, wait, units granted, and every policy's remaining and reset.
"""

import random
import time

import pytest
import redis
from django.conf import settings

from gateway.limits import LIMIT_SCRIPT, RETURN_SCRIPT, PlanLimits, _LocalLimiter, _prepare

# One subscription per plan: rates alone, quotas alone, everything at once, and a plan roomy
# enough for blocks of units (units > 1) to be granted in full.
PLANS = [
    PlanLimits(plan_id=1, requests_per_second=3),
    PlanLimits(plan_id=2, requests_per_minute=7, daily_quota=20),
    PlanLimits(plan_id=3, requests_per_second=5, requests_per_minute=40, daily_quota=60, monthly_quota=200),
    PlanLimits(plan_id=4, daily_quota=15, monthly_quota=25),
    PlanLimits(plan_id=5, requests_per_minute=1000, daily_quota=5000),
]
# Simulated time runs far faster than the test, so no Redis key's real expiry comes before
# its simulated end; six-hour jumps cross UTC midnights (new quota windows).
STEPS_MS = [0, 0, 1, 13, 90, 333, 1000, 7000, 61_000]
UNITS = [1, 1, 1, 1, 2, 3, 8, 40]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_local_limiter_gives_the_lua_scripts_answers_for_the_same_sequence(seed):
    rng = random.Random(seed)
    client = redis.Redis.from_url(settings.REDIS_URL)
    limit_script, return_script = client.register_script(LIMIT_SCRIPT), client.register_script(RETURN_SCRIPT)
    local = _LocalLimiter()
    base = rng.randrange(10**9, 2 * 10**9) * 10  # subscription ids no other test uses
    now_ms = int(time.time() * 1000)
    seen = {"granted_blocks": 0, "refused_rate": 0, "refused_quota": 0, "returns": 0, "windows": set()}
    keys_used: set[str] = set()
    try:
        for step in range(1500):
            now_ms += 21_600_000 if rng.random() < 0.004 else rng.choice(STEPS_MS)
            index = rng.randrange(len(PLANS))
            prepared = _prepare(base + index, PLANS[index], now_ms / 1000)
            keys_used.update(prepared.keys)
            seen["windows"].update(k for k in prepared.keys if k.rsplit(":", 1)[1][0] == "d")
            units = rng.choice(UNITS)
            args = [now_ms, prepared.rate_count, units, *prepared.policy_args]
            if rng.random() < 0.12:
                args[2] = rng.randint(1, 5)
                in_redis = return_script(keys=prepared.keys, args=args)
                in_process = local.give_back(prepared.keys, args)
                seen["returns"] += 1
            else:
                in_redis = limit_script(keys=prepared.keys, args=args)
                in_process = local.run(prepared.keys, args)
                if in_redis[3] > 1:
                    seen["granted_blocks"] += 1
                if in_redis[1]:
                    kind = prepared.policies[in_redis[1] - 1][0].kind
                    seen[f"refused_{kind}"] += 1
            assert in_process == in_redis, f"step {step}: plan {index + 1}, args {args}"

        # What each key holds agrees too (rate keys whose time has passed may have expired in Redis).
        for key in keys_used:
            value = local.state.get(key)
            if value is None or (key[-1] in "sm" and value <= now_ms):
                continue
            assert float(client.get(key)) == value, key
    finally:
        client.delete(*keys_used)
        client.close()

    # The sequence went through every branch worth comparing.
    assert seen["granted_blocks"] > 10 and seen["refused_rate"] > 10 and seen["refused_quota"] > 10
    assert seen["returns"] > 50 and len(seen["windows"]) > 2
