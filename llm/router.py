"""Which upstream model and which credential to try next for a call, per worker.

For a route (``AiRoute``) a call's attempts are, in order:

1. ``route.retries + 1`` attempts on the weighted targets. The first is chosen by smooth
   weighted round-robin (nginx's), shared by every call of the route in this worker, so an
   A/B split converges exactly (70/30 over 10 calls is 7/3, not "about"). Retries prefer a
   target this call has not tried yet (the heaviest), else the first one again with its
   next usable key. Retries do not move the round-robin, so they do not skew the split.
2. Then each fallback of the chain once, in order.

Targets cooling down, and targets without a usable key, are skipped. When every target of
the route is cooling down, cool-downs are ignored (the gateway's balancers call this panic
mode): refusing every call for the rest of a cool-down after a burst of errors is worse
than trying.

Within a target, keys go by priority (lower first); keys of equal priority take turns; a
key resting after a 429 or disabled after a 401/403 is skipped.

``report`` after every attempt:

- success: the target's failure run ends;
- ``authentication`` / ``permission``: the key is disabled in this worker until the next
  config reload (``reload``). The control plane learns of it through Redis when a client
  is given: the hash ``portico:llm:key_state`` gets ``{key id: {"state": "disabled",
  "reason", "at"}}`` (and ``"rate_limited"`` with ``"until"`` for 429s), written by a task
  off the request path; the beat task ``llm.sync_key_states`` (``llm/key_states.py``) writes
  it into ``ProviderKey.state``;
- ``rate_limited``: the key rests until its ``retry_after`` (30 s when the provider did not
  say, capped at an hour);
- ``server``, ``overloaded``, ``timeout``, ``connection``: count toward the target's
  cool-down: COOL_DOWN_AFTER (3) failures in a row cool it down for COOL_DOWN_SECONDS (30 s);
- ``context_length``: falls back, but this call does not retry that target;
- ``invalid_request``, ``not_found``, and anything not in ``FALLBACK_KINDS``: nothing
  changes, and the call stops (the client's own error is answered as is).

Pure Python: no I/O except the optional Redis report.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from llm.canonical import FALLBACK_KINDS, AiConfig, AiRoute, ModelTarget, ProviderError, ProviderKey

log = logging.getLogger(__name__)

COOL_DOWN_AFTER = 3  # failures in a row
COOL_DOWN_SECONDS = 30.0
DEFAULT_REST_SECONDS = 30.0  # a 429 without a reset
MAX_REST_SECONDS = 3600.0  # a hostile or broken Retry-After must not bench a key for days
COOLING_KINDS = frozenset({"server", "overloaded", "timeout", "connection"})
KEY_STATE_HASH = "portico:llm:key_state"


def falls_back(outcome: ProviderError | None) -> bool:
    """Whether a call goes on to its next attempt after this outcome."""
    return outcome is not None and outcome.kind in FALLBACK_KINDS


@dataclass(slots=True)
class _TargetHealth:
    failures: int = 0  # in a row
    cooling_until: float = 0.0


@dataclass(slots=True)
class _Split:
    """Smooth weighted round-robin state of one route's targets."""

    targets: tuple[tuple[int, ModelTarget], ...]
    current: list[int]


class Router:
    """Routing and resilience state of one worker. ``clock`` is ``time.monotonic`` unless a
    test gives its own; ``redis`` (FastRedis or redis-py asyncio), when given, receives key
    state changes for the control plane."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, redis: Any = None) -> None:
        self._clock = clock
        self._redis = redis
        self._splits: dict[str, _Split] = {}
        self._health: dict[int, _TargetHealth] = {}  # by model id
        self._disabled: set[int] = set()  # key ids
        self._resting: dict[int, float] = {}  # key id -> until (clock)
        self._turns: dict[tuple[int, int], int] = {}  # (provider id, priority) -> next turn
        self._reports: set[asyncio.Task[None]] = set()

    # -- configuration ---------------------------------------------------------------------

    def reload(self, config: AiConfig) -> None:
        """A new snapshot: disabled keys get another chance (the control plane has had the
        time to disable them for good); state of targets and routes that are gone is dropped;
        round-robin state survives for routes whose targets did not change."""
        self._disabled.clear()
        model_ids: set[int] = set()
        key_ids: set[int] = set()
        for route in config.routes.values():
            for target in [t for _w, t in route.targets] + list(route.fallbacks):
                model_ids.add(target.model_id)
                key_ids.update(k.id for k in target.keys)
        self._splits = {
            alias: split
            for alias, split in self._splits.items()
            if alias in config.routes and config.routes[alias].targets == split.targets
        }
        self._health = {m: h for m, h in self._health.items() if m in model_ids}
        self._resting = {k: until for k, until in self._resting.items() if k in key_ids}

    # -- choosing -----------------------------------------------------------------------------

    def attempts(self, route: AiRoute) -> Attempts:
        """The call's attempts, lazily: each is chosen when asked for, after the previous
        one's ``report``."""
        return Attempts(self, route)

    def key_for(self, target: ModelTarget) -> ProviderKey | None:
        """The target's next usable key: lowest priority number first, equal ones in turn."""
        now = self._clock()
        usable = [k for k in target.keys if k.id not in self._disabled and self._resting.get(k.id, 0.0) <= now]
        if not usable:
            return None
        best = min(k.priority for k in usable)
        tier = [k for k in usable if k.priority == best]
        if len(tier) == 1:
            return tier[0]
        turn_key = (target.provider_id, best)
        turn = self._turns.get(turn_key, 0)
        self._turns[turn_key] = turn + 1
        return tier[turn % len(tier)]

    def cooling(self, target: ModelTarget) -> bool:
        health = self._health.get(target.model_id)
        return health is not None and health.cooling_until > self._clock()

    def _all_cooling(self, route: AiRoute) -> bool:
        targets = [t for _w, t in route.targets] + list(route.fallbacks)
        return bool(targets) and all(self.cooling(t) for t in targets)

    def _pick_weighted(self, route: AiRoute, candidates: set[int]) -> int | None:
        """Smooth weighted round-robin over the candidate indexes of ``route.targets``."""
        split = self._splits.get(route.alias)
        if split is None or split.targets is not route.targets:
            if split is None or split.targets != route.targets:
                split = _Split(route.targets, [0] * len(route.targets))
            else:
                split.targets = route.targets  # an equal tuple from a newer snapshot
            self._splits[route.alias] = split
        total = 0
        best: int | None = None
        for index in sorted(candidates):  # ties go to the first listed
            weight = route.targets[index][0]
            split.current[index] += weight
            total += weight
            if best is None or split.current[index] > split.current[best]:
                best = index
        if best is not None:
            split.current[best] -= total
        return best

    # -- outcomes -----------------------------------------------------------------------------

    def report(self, target: ModelTarget, key: ProviderKey, outcome: ProviderError | None) -> None:
        """What an attempt came to: None = success, else the provider's error."""
        if outcome is None:
            health = self._health.get(target.model_id)
            if health is not None:
                health.failures = 0
            return
        kind = outcome.kind
        if kind in ("authentication", "permission"):
            if key.id not in self._disabled:
                self._disabled.add(key.id)
                log.warning("LLM key %s of provider %s disabled in this worker: %s", key.id, target.provider_id, kind)
                self._send_key_state(key.id, {"state": "disabled", "reason": kind})
        elif kind == "rate_limited":
            rest = outcome.retry_after if outcome.retry_after is not None else DEFAULT_REST_SECONDS
            if math.isnan(rest):
                rest = DEFAULT_REST_SECONDS
            rest = min(max(rest, 0.0), MAX_REST_SECONDS)
            self._resting[key.id] = self._clock() + rest
            self._send_key_state(key.id, {"state": "rate_limited", "until": time.time() + rest})
        elif kind in COOLING_KINDS:
            health = self._health.setdefault(target.model_id, _TargetHealth())
            health.failures += 1
            if health.failures >= COOL_DOWN_AFTER:
                health.failures = 0
                health.cooling_until = self._clock() + COOL_DOWN_SECONDS
                log.warning("LLM target %s cools down for %ss", target.upstream_model, COOL_DOWN_SECONDS)

    def _send_key_state(self, key_id: int, state: dict[str, Any]) -> None:
        """Tell the control plane, off the request path; only inside a running loop."""
        if self._redis is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        state["at"] = time.time()
        task = loop.create_task(self._write_key_state(key_id, json.dumps(state)))
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    async def _write_key_state(self, key_id: int, value: str) -> None:
        redis = self._redis
        execute = getattr(redis, "execute_command", None) or redis.execute  # redis-py | FastRedis
        try:
            await execute("HSET", KEY_STATE_HASH, str(key_id), value)
        except Exception as error:  # a report is best effort; the worker already acts on it
            log.warning("could not report LLM key %s state: %s", key_id, error)

    async def flush_reports(self) -> None:
        """Wait for key state reports in flight (shutdown, tests)."""
        if self._reports:
            await asyncio.gather(*self._reports, return_exceptions=True)


class Attempts(Iterator[tuple[ModelTarget, ProviderKey]]):
    """One call's attempts. Report each attempt's outcome (``report``) before asking for the
    next: a success or an error that must not fall back ends the iteration."""

    def __init__(self, router: Router, route: AiRoute) -> None:
        self._router = router
        self._route = route
        self._weighted_left = route.retries + 1 if route.retries >= 0 else 1
        self._fallback_index = 0
        self._tried: list[int] = []  # indexes into route.targets, in order
        self._excluded: set[int] = set()  # model ids this call must not retry (context length)
        self._last: tuple[ModelTarget, ProviderKey] | None = None
        self._done = False
        self._panic = router._all_cooling(route)

    def __iter__(self) -> Attempts:
        return self

    def report(self, outcome: ProviderError | None) -> None:
        """The last attempt's outcome (also given to the router)."""
        if self._last is None:
            raise RuntimeError("no attempt to report on")
        target, key = self._last
        self._router.report(target, key, outcome)
        if not falls_back(outcome):
            self._done = True
        elif outcome is not None and outcome.kind == "context_length":
            self._excluded.add(target.model_id)

    def _available(self, target: ModelTarget) -> ProviderKey | None:
        if target.model_id in self._excluded or (not self._panic and self._router.cooling(target)):
            return None
        return self._router.key_for(target)

    def __next__(self) -> tuple[ModelTarget, ProviderKey]:
        if self._done:
            raise StopIteration
        attempt = self._next_weighted() if self._weighted_left > 0 else None
        if attempt is None:
            attempt = self._next_fallback()
        if attempt is None:
            self._done = True
            raise StopIteration
        self._last = attempt
        return attempt

    def _next_weighted(self) -> tuple[ModelTarget, ProviderKey] | None:
        router, targets = self._router, self._route.targets
        self._weighted_left -= 1
        # Usability is judged without taking a key's turn; the key is taken once chosen.
        usable = {
            i
            for i, (weight, target) in enumerate(targets)
            if weight > 0
            and target.model_id not in self._excluded
            and (self._panic or not router.cooling(target))
            and _has_usable_key(router, target)
        }
        if not usable:
            self._weighted_left = 0
            return None
        if not self._tried:
            index = router._pick_weighted(self._route, usable)
        else:
            untried = [i for i in usable if i not in self._tried]
            if untried:
                index = max(untried, key=lambda i: (targets[i][0], -i))
            else:
                index = next(i for i in self._tried if i in usable)
        assert index is not None  # usable is not empty
        self._tried.append(index)
        key = router.key_for(targets[index][1])
        assert key is not None  # checked above
        return targets[index][1], key

    def _next_fallback(self) -> tuple[ModelTarget, ProviderKey] | None:
        fallbacks = self._route.fallbacks
        while self._fallback_index < len(fallbacks):
            target = fallbacks[self._fallback_index]
            self._fallback_index += 1
            key = self._available(target)
            if key is not None:
                return target, key
        return None


def _has_usable_key(router: Router, target: ModelTarget) -> bool:
    now = router._clock()
    return any(k.id not in router._disabled and router._resting.get(k.id, 0.0) <= now for k in target.keys)
