"""Route lookup: longest base-path prefix on a segment boundary, optionally by Host."""

from __future__ import annotations

from collections.abc import Iterable


class RouteTable:
    """Immutable map from base path to routes; ``match`` is a handful of dict lookups.

    A request path matches a base path when it equals it or continues with '/'. The
    longest match wins, so ``/weather/v2`` beats ``/weather``.
    """

    __slots__ = ("_by_path", "_depths")

    def __init__(self, routes: Iterable):
        by_path: dict[str, list] = {}
        for route in routes:
            by_path.setdefault(route.base_path, []).append(route)
        # Host-specific routes first so they win over host-less ones on the same path.
        self._by_path = {p: tuple(sorted(rs, key=lambda r: not r.host)) for p, rs in by_path.items()}
        self._depths = sorted({p.count("/") for p in by_path}, reverse=True)

    def __len__(self) -> int:
        return sum(len(rs) for rs in self._by_path.values())

    def __iter__(self):
        for routes in self._by_path.values():
            yield from routes

    def match(self, path: str, host: str = ""):
        """Return (route, remaining path) or (None, None)."""
        if not self._by_path:
            return None, None
        segments = path.split("/")
        for depth in self._depths:
            if depth >= len(segments):
                continue
            candidates = self._by_path.get("/".join(segments[: depth + 1]))
            if candidates is None:
                continue
            for route in candidates:
                if not route.host or route.host == host:
                    rest = path[len(route.base_path) :]
                    return route, rest or "/"
        return None, None
