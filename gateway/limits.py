"""Plan limits: per-subscription rates (GCRA) and calendar quotas, checked and counted
atomically in Redis before the request is proxied.

One EVALSHA per request checks every policy of the plan and counts the request only when
all of them admit it, so bursts never overshoot and rejected requests cost the client
nothing (the complaints against Kong #5311 and Tyk #1876). The counters are shared by every
worker and node (Tyk #1244). Each policy is reported as itself in the headers of
draft-ietf-httpapi-ratelimit-headers-11 (Tyk #2261).

While Redis is away each worker decides alone (``_LocalLimiter``, the Lua below rewritten
in Python): rates per worker (or 503 when ``limits_on_redis_failure`` is "closed"), quotas
only within this worker's share of what Redis last said was left (see ``PlanLimiter``).
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import math
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from gateway.redisconn import FastRedis
from gateway.settings import gateway_settings

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

# KEYS: one per policy. ARGV[1] = now (ms), ARGV[2] = number of rate policies, ARGV[3] = units
# wanted (1 = this request; more = this request and a reservation); then per rate policy:
# period_ms, limit; then per quota policy: limit, expire_at (epoch s).
# The decision for this request is the same whatever is wanted; extra units are granted only
# from what every policy has to spare after it.
# Returns {admitted(0/1), refused policy index (1-based, 0 = none), wait_ms, units granted,
# then per policy: remaining, reset_ms} (Redis truncates each number to an integer).
#
# _LocalLimiter.run below is this script in Python, line for line and with the same names:
# change one, change the other (tests/test_local_limiter_matches_lua.py holds them equal).
LIMIT_SCRIPT = """
local now = tonumber(ARGV[1])
local nrate = tonumber(ARGV[2])
local extra = tonumber(ARGV[3]) - 1
local refused = 0
local wait = 0
local writes = {}
local if_counted = {}
local if_refused = {}
local resets = {}
local a = 4
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
      writes[i] = {'rate', new_tat, interval}
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
if refused ~= 0 then extra = 0 end
for i = 1, #KEYS do
  if if_counted[i] < extra then extra = if_counted[i] end
end
local out = {refused == 0 and 1 or 0, refused, wait, refused == 0 and 1 + extra or 0}
for i = 1, #KEYS do
  -- A refused request is not counted, so every policy reports what it had before it.
  if refused == 0 then
    out[#out + 1] = if_counted[i] - extra
    if writes[i][1] == 'rate' then resets[i] = resets[i] + math.ceil(extra * writes[i][3]) end
  else
    out[#out + 1] = if_refused[i]
  end
  out[#out + 1] = resets[i]
end
if refused == 0 then
  for i, w in pairs(writes) do
    if w[1] == 'rate' then
      local tat = w[2] + extra * w[3]
      redis.call('SET', KEYS[i], tat, 'PX', math.ceil(tat - now) + 1000)
    else
      if redis.call('INCRBY', KEYS[i], 1 + extra) == 1 + extra then redis.call('EXPIREAT', KEYS[i], w[2] + 3600) end
    end
  end
end
return out
"""

# Gives unused reserved units back: the same KEYS and ARGV layout, ARGV[3] = units.
# A rate's theoretical arrival time moves back by their intervals; a quota counter goes down
# (only while its window's key still exists). Mirrored by _LocalLimiter.give_back.
RETURN_SCRIPT = """
local now = tonumber(ARGV[1])
local nrate = tonumber(ARGV[2])
local units = tonumber(ARGV[3])
local a = 4
for i = 1, #KEYS do
  if i <= nrate then
    local period = tonumber(ARGV[a]); local limit = tonumber(ARGV[a + 1])
    local tat = tonumber(redis.call('GET', KEYS[i]))
    if tat then
      local back = tat - units * period / limit
      if back > now then
        redis.call('SET', KEYS[i], back, 'PX', math.ceil(back - now) + 1000)
      else
        redis.call('DEL', KEYS[i])
      end
    end
  elseif redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('DECRBY', KEYS[i], units)
  end
  a = a + 2
end
return units
"""


class _LocalLimiter:
    """LIMIT_SCRIPT and RETURN_SCRIPT in Python over this process's memory: the per-worker
    stand-in while Redis is away. ``state`` holds what the script's keys hold in Redis (a
    rate's theoretical arrival time, a quota's used count; a missing key is 0 / now, as in
    Redis). Only ``PlanLimiter`` decides which keys may be used here and seeds the quotas'
    counts from Redis's answers (its share rule); this class only mirrors the scripts.

    Lua arrays are 1-based; the lists here hold policy i at index i - 1. Lua numbers in the
    reply become integers truncated toward zero, as ``int()`` does."""

    # Kept small: a full table is cleared, which only makes quotas fail closed until Redis answers.
    MAX_KEYS = 200_000

    def __init__(self) -> None:
        self.state: dict[str, float] = {}

    def run(self, keys: list[str], args: list[int]) -> list[int]:
        """LIMIT_SCRIPT, same names, same steps."""
        state = self.state
        now = float(args[0])
        nrate = int(args[1])
        extra = int(args[2]) - 1
        refused = 0
        wait = 0.0
        writes: dict[int, tuple[str, float, float]] = {}
        if_counted: list[float] = []
        if_refused: list[float] = []
        resets: list[float] = []
        a = 3  # ARGV[4]
        for i, key in enumerate(keys, start=1):
            if i <= nrate:
                period, limit = float(args[a]), float(args[a + 1])
                a += 2
                interval = period / limit
                tat = state.get(key, now)
                if tat < now:
                    tat = now
                new_tat = tat + interval
                if_refused.append(math.floor((period - (tat - now)) / interval))
                if new_tat - period > now:
                    if refused == 0:
                        refused, wait = i, new_tat - period - now
                    if_counted.append(0)
                    resets.append(math.ceil(tat - now))
                else:
                    writes[i] = ("rate", new_tat, interval)
                    if_counted.append(math.floor((period - (new_tat - now)) / interval))
                    resets.append(math.ceil(new_tat - now))
            else:
                limit, expire_at = float(args[a]), float(args[a + 1])
                a += 2
                used = state.get(key, 0)
                if_refused.append(limit - used)
                if used >= limit:
                    if refused == 0:
                        refused, wait = i, expire_at * 1000 - now
                    if_counted.append(0)
                else:
                    writes[i] = ("quota", expire_at, 0.0)
                    if_counted.append(limit - used - 1)
                resets.append(expire_at * 1000 - now)
        if refused != 0:
            extra = 0
        for counted in if_counted:
            if counted < extra:
                extra = int(counted)
        out = [1 if refused == 0 else 0, refused, int(wait), 1 + extra if refused == 0 else 0]
        for i in range(len(keys)):
            # A refused request is not counted, so every policy reports what it had before it.
            if refused == 0:
                out.append(int(if_counted[i] - extra))
                if writes[i + 1][0] == "rate":
                    resets[i] = resets[i] + math.ceil(extra * writes[i + 1][2])
            else:
                out.append(int(if_refused[i]))
            out.append(int(resets[i]))
        if refused == 0:
            for i, w in writes.items():
                if w[0] == "rate":
                    state[keys[i - 1]] = w[1] + extra * w[2]  # SET ... PX: expiry is Redis's concern
                else:
                    state[keys[i - 1]] = state.get(keys[i - 1], 0) + 1 + extra  # INCRBY
            if len(state) > self.MAX_KEYS:  # an outage should not grow memory without bound
                state.clear()
        return out

    def give_back(self, keys: list[str], args: list[int]) -> int:
        """RETURN_SCRIPT, same names, same steps."""
        state = self.state
        now = float(args[0])
        nrate = int(args[1])
        units = int(args[2])
        a = 3  # ARGV[4]
        for i, key in enumerate(keys, start=1):
            if i <= nrate:
                period, limit = float(args[a]), float(args[a + 1])
                tat = state.get(key)
                if tat is not None:
                    back = tat - units * period / limit
                    if back > now:
                        state[key] = back
                    else:
                        del state[key]
            elif key in state:  # EXISTS
                state[key] -= units
            a += 2
        return units


@dataclass(frozen=True, slots=True)
class _Policy:
    name: str
    kind: str  # rate | quota
    limit: int
    window: int  # seconds
    # Header pieces, made once rather than on every request.
    name_bytes: bytes = field(init=False, repr=False, compare=False)
    limit_bytes: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "name_bytes", self.name.encode())
        object.__setattr__(self, "limit_bytes", b"%d" % self.limit)


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

    limits: PlanLimits
    policies: list[tuple[_Policy, str, int]]
    keys: list[str]
    rate_count: int
    policy_args: list[int]  # after now, rate_count and units in the scripts' ARGV
    policy_header: tuple[bytes, bytes]
    valid_until: float  # the next UTC midnight: quota windows move then
    # Per quota policy: (its index in the script's answer, its key, its limit).
    quotas: tuple[tuple[int, str, int], ...] = ()


def _prepare(subscription_id: int, limits: PlanLimits, now: float) -> _Prepared:
    policies = _policies(limits, now)
    args: list[int] = []
    for policy, _suffix, end in policies:
        args += [policy.window * 1000, policy.limit] if policy.kind == "rate" else [policy.limit, end]
    items = ", ".join(f'"{p.name}";q={p.limit};w={p.window}' for p, _s, _e in policies)
    keys = [f"portico:rl:{subscription_id}:{suffix}" for _p, suffix, _e in policies]
    return _Prepared(
        limits,
        policies,
        keys,
        sum(1 for p, _s, _e in policies if p.kind == "rate"),
        args,
        (b"ratelimit-policy", items.encode()),
        (now // 86400 + 1) * 86400,
        tuple((i, keys[i], p.limit) for i, (p, _s, _e) in enumerate(policies) if p.kind == "quota"),
    )


def _headers(
    prepared: _Prepared,
    remaining: list[int],
    resets_ms: list[float],
    refused_index: int = 0,
    wait_ms: float = 0.0,
) -> list[tuple[bytes, bytes]]:
    """The draft's RateLimit (every policy) and the legacy trio (the refusing policy, else the
    one with the least left)."""
    items = []
    chosen: _Policy | None = None
    chosen_left = chosen_reset = 0
    for index, ((policy, _suffix, _end), left, reset_ms) in enumerate(
        zip(prepared.policies, remaining, resets_ms, strict=True), start=1
    ):
        if left < 0:
            left = 0
        reset = math.ceil(reset_ms / 1000)
        if reset < 0:
            reset = 0
        items.append(b'"%s";r=%d;t=%d' % (policy.name_bytes, left, reset))
        if refused_index:
            take = refused_index == index
        else:
            take = chosen is None or left < chosen_left or (left == chosen_left and reset > chosen_reset)
        if take:
            chosen, chosen_left, chosen_reset = policy, left, reset
    assert chosen is not None  # a plan with limits has at least one policy
    headers = [
        prepared.policy_header,
        (b"ratelimit", b", ".join(items)),
        (b"ratelimit-limit", chosen.limit_bytes),
        (b"ratelimit-remaining", b"%d" % chosen_left),
        (b"ratelimit-reset", b"%d" % chosen_reset),
    ]
    if refused_index:
        headers.append((b"retry-after", b"%d" % max(1, math.ceil(wait_ms / 1000))))
    return headers


def _block_headers(prepared: _Prepared, reservation: _Reservation, now: float) -> list[tuple[bytes, bytes]]:
    """``_headers`` for a request admitted from a reserved block, with what does not change
    within the block made once by ``_Reservation.keep``: every policy has what Redis left it
    plus the units this worker holds, so the policy with the least left stays the same."""
    held = reservation.units
    elapsed_ms = (now - reservation.taken_at) * 1000
    values: list[int] = []
    for left, reset_ms in reservation.left_and_resets:
        reset = math.ceil((reset_ms - elapsed_ms) / 1000)
        values += (left + held, reset if reset > 0 else 0)
    chosen = reservation.chosen
    return [
        prepared.policy_header,
        (b"ratelimit", reservation.items_format % tuple(values)),
        reservation.limit_header,
        (b"ratelimit-remaining", b"%d" % values[chosen]),
        (b"ratelimit-reset", b"%d" % values[chosen + 1]),
    ]


class _Reservation:
    """A worker's units taken ahead for one subscription, and what it knows of the demand."""

    __slots__ = (
        "units",
        "prepared",
        "expires",
        "left_and_resets",
        "items_format",
        "chosen",
        "limit_header",
        "taken_at",
        "spare",
        "asking",
        "demand",
        "since",
        "era",
    )

    def __init__(self, now: float) -> None:
        self.units = 0  # reserved and not yet used
        self.prepared: _Prepared | None = None  # the keys the units were counted under
        self.expires = 0.0
        # Per policy, as Redis left it after the last grant: (remaining, reset in ms).
        self.left_and_resets: list[tuple[int, float]] = []
        # The block's header pieces (see _block_headers).
        self.items_format = b""
        self.chosen = 0  # index into the header values of the policy with the least left
        self.limit_header: tuple[bytes, bytes] = (b"ratelimit-limit", b"")
        self.taken_at = 0.0
        self.spare = 0  # the smallest remaining of any policy at the last answer from Redis
        # Set while one call asks Redis for a block: the others wait for it instead of asking too.
        self.asking: asyncio.Future[None] | None = None
        self.demand = 0  # requests since ``since``
        self.since = now
        self.era = 0  # which grant the expiry timer belongs to

    def keep(self, prepared: _Prepared, units: int, remaining: list[int], resets_ms: list[float], now: float) -> None:
        self.units += units
        self.prepared = prepared
        self.taken_at = now
        self.left_and_resets = list(zip(remaining, resets_ms, strict=True))
        self.items_format = b", ".join(b'"%s";r=%%d;t=%%d' % policy.name_bytes for policy, _s, _e in prepared.policies)
        # The least left; on a tie the one that resets last (as _headers chooses).
        index = min(range(len(remaining)), key=lambda i: (remaining[i], -math.ceil(resets_ms[i] / 1000)))
        self.chosen = 2 * index
        self.limit_header = (b"ratelimit-limit", prepared.policies[index][0].limit_bytes)


def _configured_workers() -> int:
    """Gunicorn workers on this node, as gateway/gunicorn.conf.py reads them."""
    raw = os.environ.get("GATEWAY_WORKERS", "").strip()
    try:
        return max(1, int(raw)) if raw else max(1, os.cpu_count() or 1)
    except ValueError:
        return 1  # gunicorn would not have started with it; be as careful as one worker can


class PlanLimiter:
    """Check-and-count a request against its subscription's plan.

    A busy subscription far from its limits would cost a Redis round trip per request for a
    decision that is never in doubt. So while every policy has plenty to spare, a worker
    reserves a small block of units in the same script call (counted in Redis at once, so
    the plan is never exceeded across workers) and admits the next requests from it. The
    block is at most 1/RESERVE_SHARE of what is left and what the worker expects to use in
    RESERVE_SECONDS; units still unused then go back to Redis. Near a limit the blocks
    shrink to nothing and every request is decided in Redis, one by one.

    While Redis is away (a failed call opens a BREAKER_SECONDS breaker) the worker decides
    with ``_LocalLimiter``. Rates are enforced per worker ("open") or refused with 503
    ``limits_unavailable`` ("closed"). Quotas never fail open: every answer from Redis
    leaves, per quota key, ``limit - remaining // workers`` as the local used count, so this
    worker may grant at most its share of what Redis last said was left (plus reserved
    units it could not give back: they were counted as its own); an exhausted quota stays
    exhausted, and a quota this worker never read from Redis in the current window is
    refused with 503 ``limits_unavailable``.
    """

    BREAKER_SECONDS = 1.0
    RESERVE_SHARE = 32
    RESERVE_MAX = 64
    RESERVE_SECONDS = 0.05

    def __init__(
        self,
        redis: aioredis.Redis | FastRedis,
        *,
        on_redis_failure: str | None = None,
        workers: int | None = None,
    ) -> None:
        """``on_redis_failure`` defaults to the setting ``limits_on_redis_failure``;
        ``workers`` (the gateway's workers on this node, among whom a quota's remainder is
        shared while Redis is away) to ``GATEWAY_WORKERS``, as gunicorn reads it."""
        if on_redis_failure is None:
            on_redis_failure = gateway_settings().limits_on_redis_failure
        if on_redis_failure not in ("open", "closed"):
            raise ValueError("on_redis_failure is 'open' or 'closed'")
        self._redis = redis
        self._on_failure = on_redis_failure
        self._workers = workers if workers is not None and workers >= 1 else _configured_workers()
        self._shas: dict[str, str] = {}
        self._local = _LocalLimiter()
        self._redis_down_until = 0.0
        # By subscription id: hashing the PlanLimits dataclass on every request cost more
        # than the rest of the lookup.
        self._prepared: dict[int, _Prepared] = {}
        self._reservations: dict[int, _Reservation] = {}
        self._returns: set[asyncio.Task[None]] = set()

    async def _eval(self, script: str, keys: list[str], args: list[int]) -> list[Any]:
        sha = self._shas.get(script)
        if sha is None:
            sha = self._shas[script] = await self._redis.script_load(script)
        try:
            result: list[Any] = await self._redis.evalsha(sha, len(keys), *keys, *args)
        except NoScriptError:  # Redis restarted and lost its script cache
            sha = self._shas[script] = await self._redis.script_load(script)
            result = await self._redis.evalsha(sha, len(keys), *keys, *args)
        return result

    def _units_to_ask(self, reservation: _Reservation, now: float) -> int:
        if reservation.spare < 2 * self.RESERVE_SHARE:
            return 1
        rate = reservation.demand / max(now - reservation.since, 0.001)
        units = int(min(self.RESERVE_MAX, reservation.spare // self.RESERVE_SHARE, rate * self.RESERVE_SECONDS))
        return units if units > 1 else 1

    def admit_reserved(self, subscription_id: int, limits: PlanLimits) -> LimitDecision | None:
        """The decision for a request this worker's reserved block covers, decided without
        leaving the caller; None when Redis has to decide (``check``). Most requests of a
        busy subscription far from its limits end here, so it allocates as little as it can."""
        if limits.unlimited:
            return ALLOW_UNLIMITED
        reservation = self._reservations.get(subscription_id)
        if reservation is None or not reservation.units:
            return None
        prepared = reservation.prepared
        if prepared is None:
            return None
        if prepared.limits is not limits:
            if prepared.limits != limits:
                return None
            # The same plan in a newer snapshot: adopt its object, so that the next requests
            # compare by identity (the dataclass comparison showed in profiles after reloads).
            adopted = replace(prepared, limits=limits)
            if self._prepared.get(subscription_id) is prepared:
                self._prepared[subscription_id] = adopted
            prepared = reservation.prepared = adopted
        now = time.time()
        if now >= reservation.expires:
            return None
        reservation.units -= 1
        reservation.demand += 1
        return LimitDecision(True, _block_headers(prepared, reservation, now))

    async def check(self, subscription_id: int, limits: PlanLimits) -> LimitDecision:
        decision = self.admit_reserved(subscription_id, limits)
        if decision is not None:
            return decision
        now = time.time()
        prepared = self._prepared.get(subscription_id)
        if (
            prepared is None
            or now >= prepared.valid_until
            or (prepared.limits is not limits and prepared.limits != limits)
        ):
            if len(self._prepared) > 100_000:
                self._give_back_all()
                self._prepared.clear()
                self._reservations.clear()
            fresh = self._prepared[subscription_id] = _prepare(subscription_id, limits, now)
            if prepared is not None:
                self._forget_windows(prepared, fresh)
            prepared = fresh
        reservation = self._reservations.get(subscription_id)
        if reservation is None:
            reservation = self._reservations[subscription_id] = _Reservation(now)
        reservation.demand += 1
        while True:
            if reservation.units:
                if now < reservation.expires and reservation.prepared is prepared:
                    reservation.units -= 1
                    return LimitDecision(True, _block_headers(prepared, reservation, now))
                self._give_back(reservation)
            if reservation.asking is None:
                break
            # A block is on its way: wait for it (as long as our own round trip would take)
            # rather than ask Redis alongside it.
            await reservation.asking
            now = time.time()

        units = self._units_to_ask(reservation, now)
        reservation.demand, reservation.since = 0, now
        args = [int(now * 1000), prepared.rate_count, units, *prepared.policy_args]
        result = None
        if now >= self._redis_down_until:
            waiter = None
            if units > 1:
                waiter = reservation.asking = asyncio.get_running_loop().create_future()
            try:
                result = await self._eval(LIMIT_SCRIPT, prepared.keys, args)
            except (RedisError, OSError) as error:
                # Stop asking a dead Redis on every request: a breaker keeps the outage cheap.
                self._redis_down_until = time.time() + self.BREAKER_SECONDS
                log.warning("plan limits: Redis unreachable (%s); deciding in this worker", error)
            finally:
                if waiter is not None:
                    # Waiters resume next loop turn, after this call has kept the block.
                    reservation.asking = None
                    waiter.set_result(None)
        if result is not None:
            self._remember(prepared, result)
        else:
            result = self._decide_locally(prepared, args)
            if result is None:
                return LimitDecision(
                    False,
                    [(b"retry-after", b"1")],
                    "limits_unavailable",
                    "Plan limits cannot be checked right now; try again shortly.",
                )

        admitted, refused, wait, granted = int(result[0]), int(result[1]), float(result[2]), int(result[3])
        remaining = [int(r) for r in result[4::2]]
        resets_ms = [float(t) for t in result[5::2]]
        reservation.spare = min(remaining, default=0)
        if granted > 1:
            self._keep(prepared, reservation, granted - 1, remaining, resets_ms)
            remaining = [r + granted - 1 for r in remaining]
        headers = _headers(prepared, remaining, resets_ms, refused, wait)
        if admitted:
            return LimitDecision(True, headers)
        policy = prepared.policies[refused - 1][0]
        if policy.kind == "rate":
            return LimitDecision(
                False, headers, "rate_limited", f"Rate limit of {policy.limit} requests per {policy.window}s exceeded."
            )
        return LimitDecision(False, headers, "quota_exceeded", f"The {policy.name} quota of {policy.limit} is used up.")

    # -- while Redis is away ----------------------------------------------------------------

    def _remember(self, prepared: _Prepared, result: list[Any]) -> None:
        """After every answer from Redis (block requests included): per quota, this worker's
        share of what Redis says is left, as the used count ``_LocalLimiter`` would start
        from. A few dict stores, on the path that has just waited for Redis anyway."""
        state = self._local.state
        workers = self._workers
        for index, key, limit in prepared.quotas:
            left = int(result[4 + 2 * index])
            state[key] = limit - (left // workers if left > 0 else 0)
        if len(state) > _LocalLimiter.MAX_KEYS:
            state.clear()  # quotas fail closed until Redis answers again: the safe direction

    def _decide_locally(self, prepared: _Prepared, args: list[int]) -> list[int] | None:
        """The script's answer from this worker's memory, or None when the plan cannot be
        enforced here (a rate under the "closed" policy, a quota never read from Redis)."""
        if prepared.rate_count and self._on_failure == "closed":
            return None
        state = self._local.state
        for _index, key, _limit in prepared.quotas:
            if key not in state:
                return None
        args[2] = 1  # no reservations from a stand-in
        return self._local.run(prepared.keys, args)

    def _forget_windows(self, old: _Prepared, new: _Prepared) -> None:
        """A subscription's quota windows turned (or its plan changed): the old windows' local
        counts will not be asked for again."""
        state = self._local.state
        for _index, key, _limit in old.quotas:
            if key not in new.keys:
                state.pop(key, None)

    # -- reservations ---------------------------------------------------------------------

    def _keep(
        self, prepared: _Prepared, reservation: _Reservation, units: int, remaining: list[int], resets_ms: list[float]
    ) -> None:
        now = time.time()
        reservation.keep(prepared, units, remaining, resets_ms, now)
        # Quota windows turn at UTC midnight: a unit counted in one day is not spent in the next.
        reservation.expires = min(now + self.RESERVE_SECONDS, prepared.valid_until)
        reservation.era += 1
        asyncio.get_running_loop().call_later(reservation.expires - now, self._expire, reservation, reservation.era)

    def _expire(self, reservation: _Reservation, era: int) -> None:
        if reservation.era == era and reservation.units:
            self._give_back(reservation)

    def _give_back(self, reservation: _Reservation) -> None:
        units, reservation.units = reservation.units, 0
        prepared = reservation.prepared
        if prepared is None or not units:
            return
        now = time.time()
        args = [int(now * 1000), prepared.rate_count, units, *prepared.policy_args]
        if now < self._redis_down_until:
            # Counted in Redis as this worker's and not used: this worker may still use them.
            self._local.give_back(prepared.keys, args)
            return
        task = asyncio.get_running_loop().create_task(self._return_units(prepared.keys, args))
        self._returns.add(task)
        task.add_done_callback(self._returns.discard)

    def _give_back_all(self) -> None:
        for reservation in self._reservations.values():
            if reservation.units:
                self._give_back(reservation)

    async def _return_units(self, keys: list[str], args: list[int]) -> None:
        try:
            await self._eval(RETURN_SCRIPT, keys, args)
        except (RedisError, OSError) as error:
            # The units stay counted in Redis, as this worker's: it may use them while Redis is away.
            self._redis_down_until = time.time() + self.BREAKER_SECONDS
            self._local.give_back(keys, args)
            log.warning("plan limits: could not give back %s reserved units (%s)", args[2], error)

    async def close(self) -> None:
        """Give every reserved unit back (at shutdown), so none is lost to a quota."""
        self._give_back_all()
        if self._returns:
            await asyncio.gather(*self._returns, return_exceptions=True)
