"""Budgets and token limits for AI calls, enforced at the edge in Redis: requests per minute,
tokens per minute and spend per calendar period (UTC), per API key, application and tenant.

Reserve, then reconcile (TensorZero's model). LiteLLM checks a counter and increments it
after the call (#34732, #40095), so concurrent calls all see room and all pass. Here one
script call checks every policy of a call and, only when all of them admit it, counts the
request and adds the call's *estimate* (tokens from ``max_tokens`` or the route's default,
cost at the model's prices) to every counter at once; after the call one more script call
moves every counter by (actual - estimate). So the counters can never be overshot by
concurrency, only by calls whose real usage exceeded their estimate.

Counters (one per scope and meaning, shared by the policies of that scope, so two budgets
of one key with the same period count the same spend once):

- RPM: GCRA, as the gateway's plan limits (``gateway/limits.py``): a burst of the whole
  limit, then one request every 60/limit s. A request is counted when admitted, whatever
  its outcome.
- TPM: a 60 s sliding window of one-second buckets (a Redis hash, field = epoch second):
  the tokens of every call admitted in the last 60 s, estimates until reconciled, never
  exceed the limit. A call whose estimate alone exceeds the limit can never be admitted:
  it is refused without Retry-After (``x-should-retry: false``), asking for a smaller
  ``max_tokens``.
- Spend: integer micro-dollars per calendar period (daily, weekly from Monday, monthly;
  UTC), so sums never drift as floats do. A call is admitted only when what is spent plus
  its estimate fits in the limit (a budget is never overshot by an admitted estimate).

Decisions where the issue is silent:

- Unknown price. A model without a price cannot be counted against a spend budget, and a
  budget that silently lets unpriced calls through is not a budget: a call whose estimated
  cost is unknown is refused (``budget_unpriced``, 403) when any spend budget applies, and
  admitted (counting RPM/TPM) when none does. When the estimate was known but the actual
  cost is not (``reconcile(..., actual_cost=None)``), the estimate stays counted: the call
  happened and the estimate is our best bound of it.
- Redis away. Spend budgets fail closed: ``budget_unavailable`` (503, Retry-After 1).
  Request and token rates follow the gateway's ``limits_on_redis_failure`` as plan limits
  do: "open" (the default) enforces them in this worker alone (each worker admits up to
  the whole limit), "closed" refuses with ``budget_unavailable``. A failed call opens a
  one-second breaker so a dead Redis is not asked on every request. A reconcile that
  cannot reach Redis is dropped (logged): the estimate stays counted.
- Rounding. Costs become micro-dollars rounded half-even (no systematic bias over many
  tiny calls).
"""

from __future__ import annotations

import calendar
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, Protocol

from redis.exceptions import NoScriptError, RedisError

from llm.canonical import BudgetPolicy

log = logging.getLogger(__name__)

MICROS_PER_USD = Decimal(1_000_000)
KEY_PREFIX = "portico:llm:budget:"
WINDOW_SECONDS = 60  # RPM and TPM
SPEND_KEY_GRACE_SECONDS = 7 * 86400  # a finished period's spend stays readable (reports) this long
BREAKER_SECONDS = 1.0

# Refusal kinds (the gateway's error code) -> (HTTP status, canonical error kind for the
# inbound format's error shape).
REFUSAL_KINDS: dict[str, tuple[int, str]] = {
    "budget_exceeded": (429, "rate_limited"),  # with x-should-retry: false
    "token_rate_limited": (429, "rate_limited"),  # with Retry-After, or x-should-retry: false when it can never fit
    "request_rate_limited": (429, "rate_limited"),  # with Retry-After
    "budget_unpriced": (403, "permission"),  # the model has no price and a spend budget applies
    "budget_unavailable": (503, "overloaded"),  # Redis away and the policy cannot be enforced here
}


class ScriptClient(Protocol):
    """What is needed of a Redis client: the gateway's ``FastRedis`` or redis-py's asyncio one."""

    async def evalsha(self, sha: str, numkeys: int, *args: Any) -> Any: ...

    async def script_load(self, script: str) -> Any: ...


# -- money and periods -----------------------------------------------------------------------


def to_micros(usd: Decimal) -> int:
    """USD as integer micro-dollars, rounded half-even. Raises ValueError on NaN/infinity."""
    try:
        return int((usd * MICROS_PER_USD).to_integral_value(rounding=ROUND_HALF_EVEN))
    except (InvalidOperation, OverflowError, ValueError) as error:
        raise ValueError(f"not a finite amount: {usd!r}") from error


def from_micros(micros: int) -> Decimal:
    return Decimal(micros) / MICROS_PER_USD


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the calendar period (UTC) containing ``now``; a naive ``now`` is UTC."""
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    day = datetime(now.year, now.month, now.day, tzinfo=UTC)
    if period == "daily":
        return day, day + timedelta(days=1)
    if period == "weekly":  # ISO weeks: Monday 00:00 UTC
        start = day - timedelta(days=day.weekday())
        return start, start + timedelta(days=7)
    if period == "monthly":
        start = day.replace(day=1)
        days = calendar.monthrange(start.year, start.month)[1]
        return start, start + timedelta(days=days)
    raise ValueError(f"unknown budget period {period!r}")


def spend_key(policy: BudgetPolicy, period_start: datetime) -> str:
    return f"{KEY_PREFIX}{policy.scope}:{policy.scope_id}:spend:{policy.period}:{int(period_start.timestamp())}"


def spend_in_period(redis_client: Any, policy: BudgetPolicy, now: datetime) -> Decimal:
    """USD counted against ``policy``'s scope in the period containing ``now`` (reserved
    estimates of calls in flight included). ``redis_client``: a sync ``redis.Redis``."""
    start, _end = period_bounds(policy.period, now)
    raw = redis_client.get(spend_key(policy, start))
    return from_micros(int(raw)) if raw is not None else Decimal(0)


# -- the scripts ------------------------------------------------------------------------------

# KEYS: the RPM counters, then the TPM windows, then the spend counters.
# ARGV[1] now (ms), [2] number of RPM keys, [3] number of TPM keys, [4] estimated tokens,
# [5] estimated cost (micro-dollars, an integer string), then per RPM key its limit, per TPM
# key its limit, per spend key its limit (micro-dollars) and its expiry (epoch s).
# Checks everything, writes only when everything admits.
# Returns {admitted 0/1, refused key index (1-based, 0 = none), wait ms (-1 = never)}.
RESERVE_SCRIPT = """
local now = tonumber(ARGV[1])
local nrpm = tonumber(ARGV[2])
local ntpm = tonumber(ARGV[3])
local tokens = tonumber(ARGV[4])
local cost = tonumber(ARGV[5])
local second = math.floor(now / 1000)
local refused = 0
local wait = 0
local writes = {}
local function refuse(i, w)
  -- A refusal that waiting cannot cure (-1) wins; else the longest wait.
  if refused == 0 or (wait ~= -1 and (w == -1 or w > wait)) then refused = i; wait = w end
end
local a = 6
for i = 1, #KEYS do
  if i <= nrpm then
    local limit = tonumber(ARGV[a]); a = a + 1
    if limit <= 0 then
      refuse(i, -1)
    else
      local interval = 60000 / limit
      local tat = tonumber(redis.call('GET', KEYS[i]) or now)
      if tat < now then tat = now end
      local new_tat = tat + interval
      if new_tat - 60000 > now then refuse(i, new_tat - 60000 - now) else writes[i] = new_tat end
    end
  elseif i <= nrpm + ntpm then
    local limit = tonumber(ARGV[a]); a = a + 1
    local flat = redis.call('HGETALL', KEYS[i])
    local used = 0
    local buckets = {}
    for j = 1, #flat, 2 do
      local s = tonumber(flat[j])
      if s <= second - 60 then
        redis.call('HDEL', KEYS[i], flat[j])
      else
        local v = tonumber(flat[j + 1])
        used = used + v
        buckets[#buckets + 1] = {s, v}
      end
    end
    if tokens > limit then
      refuse(i, -1)
    elseif used + tokens > limit then
      table.sort(buckets, function(x, y) return x[1] < y[1] end)
      local excess = used + tokens - limit
      local w = 1000
      for _, b in ipairs(buckets) do
        excess = excess - b[2]
        if excess <= 0 then w = (b[1] + 60) * 1000 - now; break end
      end
      refuse(i, w)
    else
      writes[i] = true
    end
  else
    local limit = tonumber(ARGV[a]); a = a + 2
    local spent = tonumber(redis.call('GET', KEYS[i]) or 0)
    if spent + cost > limit then refuse(i, -1) else writes[i] = true end
  end
end
if refused ~= 0 then return {0, refused, math.ceil(wait)} end
a = 6
for i = 1, #KEYS do
  if i <= nrpm then
    redis.call('SET', KEYS[i], writes[i], 'PX', math.ceil(writes[i] - now) + 1000)
    a = a + 1
  elseif i <= nrpm + ntpm then
    if tokens > 0 then
      redis.call('HINCRBY', KEYS[i], second, ARGV[4])
      redis.call('PEXPIRE', KEYS[i], 61000)
    end
    a = a + 1
  else
    if cost ~= 0 then
      redis.call('INCRBY', KEYS[i], ARGV[5])
      redis.call('EXPIREAT', KEYS[i], ARGV[a + 1])
    end
    a = a + 2
  end
end
return {1, 0, 0}
"""

# KEYS: the TPM windows, then the spend counters of a reservation.
# ARGV[1] now (ms), [2] number of TPM keys, [3] the reservation's second, [4] token change,
# [5] cost change (micro-dollars, integer string), then per spend key its expiry (epoch s).
# A bucket still in the window is moved (never below 0); once it left the window, only
# extra tokens are counted, in the current second. A spend counter is moved wherever it is.
RECONCILE_SCRIPT = """
local now = tonumber(ARGV[1])
local ntpm = tonumber(ARGV[2])
local reserved = tonumber(ARGV[3])
local tokens = tonumber(ARGV[4])
local cost = tonumber(ARGV[5])
local second = math.floor(now / 1000)
for i = 1, #KEYS do
  if i <= ntpm then
    if tokens ~= 0 then
      if reserved > second - 60 then
        if redis.call('HINCRBY', KEYS[i], reserved, ARGV[4]) <= 0 then redis.call('HDEL', KEYS[i], reserved) end
        redis.call('PEXPIRE', KEYS[i], 61000)
      elseif tokens > 0 then
        redis.call('HINCRBY', KEYS[i], second, ARGV[4])
        redis.call('PEXPIRE', KEYS[i], 61000)
      end
    end
  elseif cost ~= 0 then
    local spent = redis.call('INCRBY', KEYS[i], ARGV[5])
    if spent < 0 then redis.call('SET', KEYS[i], 0) end
    redis.call('EXPIREAT', KEYS[i], ARGV[5 + i - ntpm])
  end
end
return 1
"""


# -- decisions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a call may not go ahead, with what the gateway needs to answer it."""

    kind: str  # a key of REFUSAL_KINDS: the error code
    scope: str  # key | application | tenant
    scope_id: int
    budget_id: int
    message: str
    retry_after: int | None = None  # seconds; None = retrying will not help

    @property
    def status(self) -> int:
        return REFUSAL_KINDS[self.kind][0]

    @property
    def error_kind(self) -> str:
        """The canonical error kind, for the inbound format's error shape."""
        return REFUSAL_KINDS[self.kind][1]

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        if self.retry_after is None:
            return [(b"x-should-retry", b"false")]
        return [(b"retry-after", b"%d" % self.retry_after)]


@dataclass(slots=True)
class Reservation:
    """What a call counted before it ran; give it to ``Budgets.reconcile`` once it ended."""

    est_tokens: int
    est_cost_micros: int  # 0 when no spend budget applies (nothing was counted)
    second: int  # the TPM bucket the estimate went into (epoch s)
    tpm_keys: tuple[str, ...] = ()
    spend_keys: tuple[str, ...] = ()
    spend_expiries: tuple[int, ...] = ()
    local: bool = False  # counted in this worker's memory while Redis was away
    reconciled: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class _Counter:
    kind: str  # rpm | tpm | spend
    key: str
    limit: int  # requests, tokens or micro-dollars: the smallest of the policies sharing it
    policy: BudgetPolicy  # the policy whose limit that is (named in a refusal)
    expire_at: int = 0  # spend: epoch s


def _counters(policies: Iterable[BudgetPolicy], now: float) -> list[_Counter]:
    """Distinct counters in script order (RPM, TPM, spend), each with its tightest limit."""
    found: dict[str, _Counter] = {}
    moment = datetime.fromtimestamp(now, UTC)

    def add(kind: str, key: str, limit: int, policy: BudgetPolicy, expire_at: int = 0) -> None:
        known = found.get(key)
        if known is None or limit < known.limit:
            found[key] = _Counter(kind, key, limit, policy, expire_at)

    for policy in policies:
        base = f"{KEY_PREFIX}{policy.scope}:{policy.scope_id}:"
        if policy.requests_per_minute is not None:
            add("rpm", base + "rpm", max(0, policy.requests_per_minute), policy)
        if policy.tokens_per_minute is not None:
            add("tpm", base + "tpm", max(0, policy.tokens_per_minute), policy)
        if policy.spend_limit_usd is not None:
            start, end = period_bounds(policy.period, moment)
            limit = max(0, to_micros(policy.spend_limit_usd))
            add("spend", spend_key(policy, start), limit, policy, int(end.timestamp()) + SPEND_KEY_GRACE_SECONDS)
    order = {"rpm": 0, "tpm": 1, "spend": 2}
    return sorted(found.values(), key=lambda c: order[c.kind])


def _refusal(counter: _Counter, wait_ms: float, est_tokens: int, est_cost_micros: int) -> Refusal:
    policy = counter.policy
    who = (policy.scope, policy.scope_id, policy.budget_id)
    retry_after = max(1, math.ceil(wait_ms / 1000)) if wait_ms >= 0 else None
    if counter.kind == "rpm":
        message = f"Rate limit of {counter.limit} requests per minute reached for this {policy.scope}."
        return Refusal("request_rate_limited", *who, message, retry_after)
    if counter.kind == "tpm":
        if retry_after is None:
            message = (
                f"This request may use up to {est_tokens} tokens, more than the {counter.limit} tokens per minute "
                f"allowed for this {policy.scope}; lower max_tokens."
            )
        else:
            message = f"Rate limit of {counter.limit} tokens per minute reached for this {policy.scope}."
        return Refusal("token_rate_limited", *who, message, retry_after)
    message = (
        f"The {policy.period} budget of ${from_micros(counter.limit)} for this {policy.scope} is used up "
        f"(this request is estimated at ${from_micros(est_cost_micros)})."
    )
    return Refusal("budget_exceeded", *who, message, None)


class _LocalWindows:
    """RPM and TPM in this worker's memory while Redis is away: the scripts' rules for rate
    counters (spend is never decided here)."""

    MAX_KEYS = 100_000  # an outage must not grow memory without bound

    def __init__(self) -> None:
        self.tats: dict[str, float] = {}
        self.windows: dict[str, dict[int, int]] = {}

    def reserve(self, counters: Sequence[_Counter], now_ms: int, tokens: int) -> tuple[int, float]:
        """(refused index 1-based or 0, wait ms or -1), counting when admitted."""
        second = now_ms // 1000
        refused, wait = 0, 0.0
        tats: dict[str, float] = {}

        def refuse(i: int, w: float) -> None:
            nonlocal refused, wait
            if refused == 0 or (wait != -1 and (w == -1 or w > wait)):
                refused, wait = i, w

        for i, counter in enumerate(counters, start=1):
            if counter.kind == "rpm":
                interval = 60000 / counter.limit if counter.limit else math.inf
                tat = max(self.tats.get(counter.key, now_ms), now_ms)
                new_tat = tat + interval
                if new_tat - 60000 > now_ms:
                    refuse(i, new_tat - 60000 - now_ms if interval != math.inf else -1)
                else:
                    tats[counter.key] = new_tat
            else:
                window = self.windows.setdefault(counter.key, {})
                for s in [s for s in window if s <= second - 60]:
                    del window[s]
                used = sum(window.values())
                if tokens > counter.limit:
                    refuse(i, -1)
                elif used + tokens > counter.limit:
                    excess, w = used + tokens - counter.limit, 1000.0
                    for s in sorted(window):
                        excess -= window[s]
                        if excess <= 0:
                            w = (s + 60) * 1000 - now_ms
                            break
                    refuse(i, w)
        if refused:
            return refused, wait
        if len(self.tats) + len(self.windows) > self.MAX_KEYS:
            self.tats.clear()
            self.windows.clear()
        self.tats.update(tats)
        for counter in counters:
            if counter.kind == "tpm" and tokens > 0:
                window = self.windows.setdefault(counter.key, {})
                window[second] = window.get(second, 0) + tokens
        return 0, 0.0

    def reconcile(self, keys: Sequence[str], reserved: int, tokens: int, now: float) -> None:
        second = int(now)
        for key in keys:
            window = self.windows.get(key)
            if window is None or tokens == 0:
                continue
            if reserved > second - 60:
                left = window.get(reserved, 0) + tokens
                if left > 0:
                    window[reserved] = left
                else:
                    window.pop(reserved, None)
            elif tokens > 0:
                window[second] = window.get(second, 0) + tokens


class Budgets:
    """Reserve-and-reconcile against a call's budget policies; one per worker."""

    def __init__(self, redis: ScriptClient | Any, *, on_redis_failure: str | None = None) -> None:
        """``on_redis_failure`` ("open" | "closed", for RPM/TPM only: spend always fails
        closed) defaults to the gateway's ``limits_on_redis_failure`` setting."""
        if on_redis_failure is None:
            from gateway.settings import gateway_settings

            on_redis_failure = gateway_settings().limits_on_redis_failure
        if on_redis_failure not in ("open", "closed"):
            raise ValueError("on_redis_failure is 'open' or 'closed'")
        self._redis: Any = redis
        self._on_failure = on_redis_failure
        self._shas: dict[str, str] = {}
        self._local = _LocalWindows()
        self._redis_down_until = 0.0

    async def _eval(self, script: str, keys: Sequence[str], args: Sequence[int | str]) -> Any:
        sha = self._shas.get(script)
        if sha is None:
            sha = self._shas[script] = _text(await self._redis.script_load(script))
        try:
            return await self._redis.evalsha(sha, len(keys), *keys, *args)
        except NoScriptError:  # Redis restarted and lost its script cache
            sha = self._shas[script] = _text(await self._redis.script_load(script))
            return await self._redis.evalsha(sha, len(keys), *keys, *args)

    async def reserve(
        self,
        policies: Iterable[BudgetPolicy],
        est_tokens: int,
        est_cost: Decimal | None,
        *,
        now: float | None = None,
    ) -> Reservation | Refusal:
        """Check every policy and, only when all admit, count the request and the estimate.
        ``est_cost`` in USD, None when the model has no price. ``now``: epoch s (tests)."""
        now = time.time() if now is None else now
        now_ms = int(now * 1000)
        est_tokens = max(0, int(est_tokens))
        counters = _counters(policies, now)
        if not counters:
            return Reservation(est_tokens, 0, now_ms // 1000)
        spend = [c for c in counters if c.kind == "spend"]
        est_micros = 0
        if spend:
            unknown = est_cost is None or not est_cost.is_finite()
            if unknown:
                policy = spend[0].policy
                return Refusal(
                    "budget_unpriced",
                    policy.scope,
                    policy.scope_id,
                    policy.budget_id,
                    "This model has no price, so it cannot be used under a spend budget; "
                    "ask the operator to set the model's prices.",
                )
            assert est_cost is not None
            est_micros = max(0, to_micros(est_cost))
        tpm_keys = tuple(c.key for c in counters if c.kind == "tpm")
        reservation = Reservation(
            est_tokens,
            est_micros,
            now_ms // 1000,
            tpm_keys,
            tuple(c.key for c in spend),
            tuple(c.expire_at for c in spend),
        )
        result: list[Any] | None = None
        if time.time() >= self._redis_down_until:
            args: list[int | str] = [
                now_ms,
                sum(1 for c in counters if c.kind == "rpm"),
                len(tpm_keys),
                est_tokens,
                str(est_micros),
            ]
            for c in counters:
                args += [c.limit, c.expire_at] if c.kind == "spend" else [c.limit]
            try:
                result = await self._eval(RESERVE_SCRIPT, [c.key for c in counters], args)
            except (RedisError, OSError) as error:
                self._redis_down_until = time.time() + BREAKER_SECONDS
                log.warning("budgets: Redis unreachable (%s)", error)
        if result is None:
            return self._reserve_locally(counters, reservation, now_ms)
        admitted, refused, wait = int(result[0]), int(result[1]), float(result[2])
        if admitted:
            return reservation
        return _refusal(counters[refused - 1], wait, est_tokens, est_micros)

    def _reserve_locally(
        self, counters: list[_Counter], reservation: Reservation, now_ms: int
    ) -> Reservation | Refusal:
        blocking = next((c for c in counters if c.kind == "spend"), None)
        if blocking is None and self._on_failure == "closed":
            blocking = counters[0]
        if blocking is not None:
            policy = blocking.policy
            return Refusal(
                "budget_unavailable",
                policy.scope,
                policy.scope_id,
                policy.budget_id,
                "Budgets cannot be checked right now; try again shortly.",
                1,
            )
        refused, wait = self._local.reserve(counters, now_ms, reservation.est_tokens)
        if refused:
            return _refusal(counters[refused - 1], wait, reservation.est_tokens, 0)
        reservation.local = True
        return reservation

    async def reconcile(
        self,
        reservation: Reservation,
        actual_tokens: int,
        actual_cost: Decimal | None,
        *,
        now: float | None = None,
    ) -> None:
        """Move every counter the reservation touched by (actual - estimate). A failed call
        is reconciled with 0 tokens and Decimal(0); ``actual_cost`` None (unknown) leaves the
        estimated cost counted. Reconciling twice does nothing the second time."""
        if reservation.reconciled:
            return
        reservation.reconciled = True
        now = time.time() if now is None else now
        token_delta = max(0, int(actual_tokens)) - reservation.est_tokens
        cost_delta = 0
        if reservation.spend_keys and actual_cost is not None and actual_cost.is_finite():
            cost_delta = max(0, to_micros(actual_cost)) - reservation.est_cost_micros
        if reservation.local:
            self._local.reconcile(reservation.tpm_keys, reservation.second, token_delta, now)
            return
        keys = [*reservation.tpm_keys, *reservation.spend_keys]
        if not keys or (token_delta == 0 and cost_delta == 0):
            return
        args: list[int | str] = [
            int(now * 1000),
            len(reservation.tpm_keys),
            reservation.second,
            token_delta,
            str(cost_delta),
            *reservation.spend_expiries,
        ]
        try:
            await self._eval(RECONCILE_SCRIPT, keys, args)
        except (RedisError, OSError) as error:
            self._redis_down_until = time.time() + BREAKER_SECONDS
            log.warning(
                "budgets: could not reconcile (%s tokens, %s micro-dollars): %s", token_delta, cost_delta, error
            )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
