"""Upstream target selection: weighted round-robin or least connections, with passive
health checks that eject a failing target for a cool-down."""

from __future__ import annotations

import time
from collections.abc import Container
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.snapshot import Route, Target

EJECT_AFTER_CONNECT_FAILURES = 1  # a refused connection is a clear signal
EJECT_AFTER_5XX = 5  # a 5xx may be the request's fault; wait for a run of them
EJECT_SECONDS = 10.0


class TargetState:
    __slots__ = (
        "target",
        "url",
        "weight",
        "current",
        "active",
        "connect_failures",
        "server_errors",
        "ejected_until",
    )

    def __init__(self, target: Target) -> None:
        self.target = target  # the snapshot's Target: URL parts for the connection pool
        self.url = target.url
        self.weight = target.weight
        self.current = 0  # smooth weighted round-robin state
        self.active = 0  # in-flight requests (least connections)
        self.connect_failures = 0
        self.server_errors = 0
        self.ejected_until = 0.0

    def healthy(self, now: float) -> bool:
        return self.ejected_until <= now


class Balancer:
    """Picks targets for one API version. State survives config reloads for unchanged targets."""

    __slots__ = ("targets", "least_connections")

    def __init__(self, targets: list[TargetState], least_connections: bool) -> None:
        self.targets = targets
        self.least_connections = least_connections

    def pick(self, exclude: Container[str] = ()) -> TargetState | None:
        targets = self.targets
        if len(targets) == 1:  # most APIs have one target: healthy or not (panic mode), it is the one
            only = targets[0]
            return only if only.url not in exclude else None
        now = time.monotonic()
        candidates = [t for t in self.targets if t.healthy(now) and t.url not in exclude]
        if not candidates:
            # Every target ejected: try them anyway (panic mode) rather than fail every request.
            candidates = [t for t in self.targets if t.url not in exclude]
            if not candidates:
                return None
        if len(candidates) == 1:
            return candidates[0]
        if self.least_connections:
            return min(candidates, key=lambda t: (t.active / t.weight, -t.weight))
        # nginx's smooth weighted round-robin: even spread, exact proportions.
        total = 0
        best: TargetState | None = None
        for target in candidates:
            target.current += target.weight
            total += target.weight
            if best is None or target.current > best.current:
                best = target
        assert best is not None  # candidates is not empty
        best.current -= total
        return best

    @staticmethod
    def report_success(target: TargetState) -> None:
        target.connect_failures = 0
        target.server_errors = 0

    @staticmethod
    def report_connect_failure(target: TargetState) -> None:
        target.connect_failures += 1
        if target.connect_failures >= EJECT_AFTER_CONNECT_FAILURES:
            target.ejected_until = time.monotonic() + EJECT_SECONDS
            target.connect_failures = 0

    @staticmethod
    def report_probe(target: TargetState, healthy: bool) -> None:
        """An active health check's verdict: it ejects, and it also readmits before the cool-down ends."""
        if healthy:
            target.ejected_until = 0.0
            target.connect_failures = 0
            target.server_errors = 0
        else:
            target.ejected_until = time.monotonic() + EJECT_SECONDS

    @staticmethod
    def report_server_error(target: TargetState) -> None:
        target.server_errors += 1
        if target.server_errors >= EJECT_AFTER_5XX:
            target.ejected_until = time.monotonic() + EJECT_SECONDS
            target.server_errors = 0


class BalancerRegistry:
    """One balancer per API version, rebuilt only when that version's targets change."""

    def __init__(self) -> None:
        # version id -> ((targets, load_balancing), balancer)
        self._by_version: dict[int, tuple[tuple[tuple[Target, ...], str], Balancer]] = {}

    def forget_others(self, version_ids: set[int]) -> None:
        """Drop balancers of versions no longer routed (after a config reload)."""
        for version_id in [v for v in self._by_version if v not in version_ids]:
            del self._by_version[version_id]

    def for_route(self, route: Route) -> Balancer:
        entry = self._by_version.get(route.version_id)
        # Identity first: comparing the target dataclasses on every request showed in profiles.
        if entry is not None and entry[0][0] is route.targets and entry[0][1] == route.load_balancing:
            return entry[1]
        signature = (route.targets, route.load_balancing)
        if entry is not None and entry[0] == signature:
            # A reload with the same targets: keep the balancer's state, remember the new objects.
            self._by_version[route.version_id] = (signature, entry[1])
            return entry[1]
        old = {t.url: t for t in entry[1].targets} if entry else {}
        states = []
        for target in route.targets:
            state = old.get(target.url) or TargetState(target)
            state.target = target
            state.weight = target.weight
            states.append(state)
        balancer = Balancer(states, route.load_balancing == "least_connections")
        self._by_version[route.version_id] = (signature, balancer)
        return balancer
