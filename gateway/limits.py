"""Plan limits: per-subscription rates (GCRA) and calendar quotas, checked and counted
atomically in Redis before the request is proxied.

One EVALSHA per request checks every policy of the plan and counts the request only when
all of them admit it, so bursts never overshoot and rejected requests cost the client
nothing (the complaints against Kong #5311 and Tyk #1876). The counters are shared by every
worker and node (Tyk #1244). Each policy is reported as itself in the headers of
draft-ietf-httpapi-ratelimit-headers-11 (Tyk #2261).
"""

from __future__ import annotations

import calendar
import logging
import math
import time
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from gateway.redisconn import FastRedis

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PlanLimits:
    plan_id: int
    requests_per_second: int | None = None
    requests_per_minute: int | None = None
    daily_quota: int | None = None  # calendar day, UTC
    monthly_quota: int | None = None  # calendar month, UTC

    @property
    def unlimited(self) -> bool:
        return not (self.requests_per_second or self.requests_per_minute or self.daily_quota or self.monthly_quota)


@dataclass(slots=True)
class LimitDecision:
    allowed: bool
    headers: list[tuple[bytes, bytes]]
    error_code: str | None = None
    message: str | None = None


ALLOW_UNLIMITED = LimitDecision(True, [])

# KEYS: one per policy. ARGV[1] = now (ms), ARGV[2] = number of rate policies; then per rate
# policy: period_ms, limit; then per quota policy: limit, expire_at (epoch s).
# Returns {admitted(0/1), refused policy index (1-based, 0 = none), then per policy: remaining, reset_ms}.
LIMIT_SCRIPT = """
local now = tonumber(ARGV[1])
local nrate = tonumber(ARGV[2])
local refused = 0
local wait = 0
local writes = {}
local if_counted = {}
local if_refused = {}
local resets = {}
local a = 3
for i = 1, #KEYS do
  if i <= nrate then
    local period = tonumber(ARGV[a]); local limit = tonumber(ARGV[a + 1]); a = a + 2
    local interval = period / limit
    local tat = tonumber(redis.call('GET', KEYS[i]) or now)
    if tat < now then tat = now end
    local new_tat = tat + interval
    if_refused[i] = math.floor((period - (tat - now)) / interval)
    if new_tat - period > now then
      if refused == 0 then refused = i; wait = new_tat - period - now end
      if_counted[i] = 0
      resets[i] = math.ceil(tat - now)
    else
      writes[i] = {'rate', new_tat}
      if_counted[i] = math.floor((period - (new_tat - now)) / interval)
      resets[i] = math.ceil(new_tat - now)
    end
  else
    local limit = tonumber(ARGV[a]); local expire_at = tonumber(ARGV[a + 1]); a = a + 2
    local used = tonumber(redis.call('GET', KEYS[i]) or 0)
    if_refused[i] = limit - used
    if used >= limit then
      if refused == 0 then refused = i; wait = expire_at * 1000 - now end
      if_counted[i] = 0
    else
      writes[i] = {'quota', expire_at}
      if_counted[i] = limit - used - 1
    end
    resets[i] = expire_at * 1000 - now
  end
end
local out = {refused == 0 and 1 or 0, refused, wait}
for i = 1, #KEYS do
  -- A refused request is not counted, so every policy reports what it had before it.
  out[#out + 1] = refused == 0 and if_counted[i] or if_refused[i]
  out[#out + 1] = resets[i]
end
if refused == 0 then
  for i, w in pairs(writes) do
    if w[1] == 'rate' then
      redis.call('SET', KEYS[i], w[2], 'PX', math.ceil(w[2] - now) + 1000)
    else
      if redis.call('INCR', KEYS[i]) == 1 then redis.call('EXPIREAT', KEYS[i], w[2] + 3600) end
    end
  end
end
return out
"""


@dataclass(frozen=True, slots=True)
class _Policy:
    name: str
    kind: str  # rate | quota
    limit: int
    window: int  # seconds


def _policies(limits: PlanLimits, now: float) -> list[tuple[_Policy, str, int]]:
    """(policy, key suffix, window end epoch for quotas) in script order: rates first."""
    found = []
    if limits.requests_per_second:
        found.append((_Policy("rps", "rate", limits.requests_per_second, 1), "s", 0))
    if limits.requests_per_minute:
        found.append((_Policy("rpm", "rate", limits.requests_per_minute, 60), "m", 0))
    day = time.gmtime(now)
    if limits.daily_quota:
        start = calendar.timegm((day.tm_year, day.tm_mon, day.tm_mday, 0, 0, 0))
        found.append((_Policy("daily", "quota", limits.daily_quota, 86400), f"d{start}", start + 86400))
    if limits.monthly_quota:
        start = calendar.timegm((day.tm_year, day.tm_mon, 1, 0, 0, 0))
        days = calendar.monthrange(day.tm_year, day.tm_mon)[1]
        found.append(
            (_Policy("monthly", "quota", limits.monthly_quota, days * 86400), f"M{start}", start + days * 86400)
        )
    return found


@dataclass(frozen=True, slots=True)
class _Prepared:
    """What a subscription's check sends and says that does not change within a day."""

    policies: list
    keys: list[str]
    args_after_now: list
    policy_header: tuple[bytes, bytes]
    valid_until: float  # the next UTC midnight: quota windows move then


def _prepare(subscription_id: int, limits: PlanLimits, now: float) -> _Prepared:
    policies = _policies(limits, now)
    args: list = [sum(1 for p, _s, _e in policies if p.kind == "rate")]
    for policy, _suffix, end in policies:
        args += [policy.window * 1000, policy.limit] if policy.kind == "rate" else [policy.limit, end]
    items = ", ".join(f'"{p.name}";q={p.limit};w={p.window}' for p, _s, _e in policies)
    return _Prepared(
        policies,
        [f"portico:rl:{subscription_id}:{suffix}" for _p, suffix, _e in policies],
        args,
        (b"ratelimit-policy", items.encode()),
        (now // 86400 + 1) * 86400,
    )


def _headers(prepared: _Prepared, remaining_and_reset, refused_index: int, wait_ms: float) -> list:
    state_items, tightest = [], None
    for i, (policy, _suffix, _end) in enumerate(prepared.policies):
        remaining = max(0, int(remaining_and_reset[2 * i]))
        reset = max(0, math.ceil(float(remaining_and_reset[2 * i + 1]) / 1000))
        state_items.append(f'"{policy.name}";r={remaining};t={reset}')
        rank = (remaining, -reset)
        if refused_index == i + 1 or (refused_index == 0 and (tightest is None or rank < tightest[0])):
            tightest = (rank, policy, remaining, reset)
            if refused_index == i + 1:
                tightest = ((-1, 0), policy, remaining, reset)
    headers = [prepared.policy_header, (b"ratelimit", ", ".join(state_items).encode())]
    if tightest:
        _rank, policy, remaining, reset = tightest
        headers += [
            (b"ratelimit-limit", str(policy.limit).encode()),
            (b"ratelimit-remaining", str(remaining).encode()),
            (b"ratelimit-reset", str(reset).encode()),
        ]
    if refused_index:
        headers.append((b"retry-after", str(max(1, math.ceil(wait_ms / 1000))).encode()))
    return headers


class _LocalLimiter:
    """Per-worker stand-in used while Redis is unreachable (fail-open). Same GCRA, same
    quotas, but counted in this process only: with N workers a client may get up to N
    times its plan during an outage, which beats refusing every paying client."""

    def __init__(self):
        self._state: dict[str, float] = {}

    def run(self, keys: list[str], args: list) -> list:
        """The Lua script's logic, in Python, over this process's memory."""
        now = float(args[0])
        nrate = int(args[1])
        refused, wait, writes, if_counted, if_refused, resets, a = 0, 0.0, {}, [], [], [], 2
        for i, key in enumerate(keys, start=1):
            if i <= nrate:
                period, limit = float(args[a]), float(args[a + 1])
                a += 2
                interval = period / limit
                tat = max(self._state.get(key, now), now)
                new_tat = tat + interval
                if_refused.append(math.floor((period - (tat - now)) / interval))
                if new_tat - period > now:
                    if not refused:
                        refused, wait = i, new_tat - period - now
                    if_counted.append(0)
                    resets.append(math.ceil(tat - now))
                else:
                    writes[key] = new_tat
                    if_counted.append(math.floor((period - (new_tat - now)) / interval))
                    resets.append(math.ceil(new_tat - now))
            else:
                limit, expire_at = int(args[a]), int(args[a + 1])
                a += 2
                used = self._state.get(key, 0)
                if_refused.append(limit - used)
                if used >= limit:
                    if not refused:
                        refused, wait = i, expire_at * 1000 - now
                    if_counted.append(0)
                else:
                    writes[key] = used + 1
                    if_counted.append(limit - used - 1)
                resets.append(expire_at * 1000 - now)
        if not refused:
            self._state.update(writes)
            if len(self._state) > 100_000:  # an outage should not grow memory without bound
                self._state.clear()
        remaining = if_refused if refused else if_counted
        out = [0 if refused else 1, refused, wait]
        for r, t in zip(remaining, resets, strict=True):
            out += [r, t]
        return out


class PlanLimiter:
    """Check-and-count a request against its subscription's plan."""

    BREAKER_SECONDS = 1.0

    def __init__(self, redis: aioredis.Redis, *, on_redis_failure: str = "open"):
        if on_redis_failure not in ("open", "closed"):
            raise ValueError("on_redis_failure is 'open' or 'closed'")
        self._redis = redis
        self._on_failure = on_redis_failure
        self._sha: str | None = None
        self._local = _LocalLimiter()
        self._redis_down_until = 0.0
        self._prepared: dict[tuple[int, PlanLimits], _Prepared] = {}

    async def _eval(self, keys: list[str], args: list) -> list:
        if self._sha is None:
            self._sha = await self._redis.script_load(LIMIT_SCRIPT)
        try:
            return await self._redis.evalsha(self._sha, len(keys), *keys, *args)
        except NoScriptError:  # Redis restarted and lost its script cache
            self._sha = await self._redis.script_load(LIMIT_SCRIPT)
            return await self._redis.evalsha(self._sha, len(keys), *keys, *args)

    async def check(self, subscription_id: int, limits: PlanLimits) -> LimitDecision:
        if limits.unlimited:
            return ALLOW_UNLIMITED
        now = time.time()
        prepared = self._prepared.get((subscription_id, limits))
        if prepared is None or now >= prepared.valid_until:
            if len(self._prepared) > 100_000:
                self._prepared.clear()
            prepared = self._prepared[(subscription_id, limits)] = _prepare(subscription_id, limits, now)
        policies, keys = prepared.policies, prepared.keys
        args = [int(now * 1000), *prepared.args_after_now]

        result = None
        if now >= self._redis_down_until:
            try:
                result = await self._eval(keys, args)
            except (RedisError, OSError) as error:
                # Stop asking a dead Redis on every request: a breaker keeps the outage cheap.
                self._redis_down_until = time.time() + self.BREAKER_SECONDS
                log.warning("plan limits: Redis unreachable (%s); policy is fail-%s", error, self._on_failure)
        if result is None:
            if self._on_failure == "closed":
                return LimitDecision(
                    False,
                    [(b"retry-after", b"1")],
                    "limits_unavailable",
                    "Rate limits cannot be checked right now; try again shortly.",
                )
            result = self._local.run(keys, args)

        admitted, refused, wait = int(result[0]), int(result[1]), float(result[2])
        headers = _headers(prepared, result[3:], refused, wait)
        if admitted:
            return LimitDecision(True, headers)
        policy = policies[refused - 1][0]
        if policy.kind == "rate":
            return LimitDecision(
                False, headers, "rate_limited", f"Rate limit of {policy.limit} requests per {policy.window}s exceeded."
            )
        return LimitDecision(False, headers, "quota_exceeded", f"The {policy.name} quota of {policy.limit} is used up.")


# INCR that gives a new counter its expiry in the same step, so none lives forever.
COUNT_IN_WINDOW = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


class AuthFailureLimiter:
    """Slows down key guessing: after ``max_failures`` failed auths from one address in a
    window, that address is refused for the rest of the window. The success path costs a
    dict lookup; only failures touch Redis (a shared counter)."""

    def __init__(self, redis: FastRedis, *, max_failures: int = 20, window_seconds: int = 60):
        self._redis = redis
        self.max_failures = max_failures
        self.window = window_seconds
        self._blocked_until: dict[str, float] = {}

    def is_blocked(self, client_ip: str) -> bool:
        until = self._blocked_until.get(client_ip)
        if until is None:
            return False
        if until > time.monotonic():
            return True
        del self._blocked_until[client_ip]
        return False

    async def record_failure(self, client_ip: str) -> bool:
        """Count one failed auth; True when it is over the allowance, so the caller answers 429
        at once (exact across workers: the counter is shared, the local block only saves calls).
        The window opens at the address's first failure, so no boundary lets a burst through."""
        key = f"portico:authfail:{client_ip}"
        try:
            count = int(await self._redis.execute("EVAL", COUNT_IN_WINDOW, 1, key, self.window))
        except (RedisError, OSError):
            return False
        if count >= self.max_failures:
            if len(self._blocked_until) > 10_000:
                self._blocked_until.clear()
            self._blocked_until[client_ip] = time.monotonic() + self.window
        return count > self.max_failures
