"""Dashboards: a tenant's usage page and the staff platform dashboard, read from the rollups.

``dashboard(actor, tenant, window)`` is what the views call: it checks who may look (any
member of ``tenant``; staff only for the platform, ``tenant=None``) and aggregates the rollup
tier that ``pick_tier`` chooses, never the raw calls, so a page costs a few GROUP BYs over
at most ``MAX_POINTS`` buckets whatever the size of ``CallLog``.

Latency percentiles come from the merged histograms (``analytics.rollups.Totals``), never
from averages of percentiles. Times are bucketed in UTC (the rollups' buckets) and shown in
the viewer's time zone (``Window.tz``): an hour bucket of a zone with a half-hour offset
starts at :30 there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from django.db import connections
from django.db.models import Max, QuerySet, Sum
from django.utils import timezone

from analytics.models import Granularity, Rollup
from analytics.retention import WIDTH, covers
from analytics.rollups import Totals, merge_histograms
from portal.models import Api, ApiVersion, Application, Role, Tenant
from portal.services.access import require_role
from portal.services.errors import InvalidInput, NotFound

PRESETS: dict[str, timedelta] = {
    "hour": timedelta(hours=1),
    "day": timedelta(days=1),
    "week": timedelta(days=7),
    "month": timedelta(days=30),
}
CUSTOM = "custom"
RANGES = (*PRESETS, CUSTOM)
MAX_RANGE = timedelta(days=400)
# A chart never has more points than this: the finest tier with fewer buckets wins.
MAX_POINTS = 1500
TOP = 10
STATUS_CLASSES = {0: "other", 1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
_TIERS: tuple[str, ...] = tuple(Granularity.values)  # finest first


def is_staff(actor: Any) -> bool:
    return bool(getattr(actor, "is_authenticated", False) and actor.is_staff)


def require_reader(actor: Any, tenant: Tenant | None) -> None:
    """Members of ``tenant`` (any role) may read its figures; only staff the platform's.
    Anyone else: NotFound."""
    if tenant is None:
        if not is_staff(actor):
            raise NotFound("No such page.")
        return
    require_role(actor, tenant, Role.VIEWER)


def zone(name: str | None) -> ZoneInfo:
    """The IANA zone ``name`` (UTC when empty); InvalidInput for anything else."""
    if not name:
        return ZoneInfo("UTC")
    if len(name) > 64 or name not in _zone_names():
        raise InvalidInput("Unknown time zone.")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput("Unknown time zone.") from None


def zone_or_utc(name: str | None) -> ZoneInfo:
    """The zone ``name``, or UTC when it is none (a link with a stale zone still opens its page)."""
    try:
        return zone(name)
    except InvalidInput:
        return zone(None)


_ZONES: frozenset[str] | None = None


def _zone_names() -> frozenset[str]:
    global _ZONES
    if _ZONES is None:
        _ZONES = frozenset(available_timezones()) | {"UTC"}
    return _ZONES


def zone_choices() -> list[str]:
    return sorted(_zone_names())


@dataclass(frozen=True)
class Window:
    """The [start, end) a page shows, the preset it came from, and the viewer's zone."""

    start: datetime
    end: datetime
    preset: str
    tz: ZoneInfo

    def local(self, when: datetime) -> datetime:
        return when.astimezone(self.tz)


@dataclass(frozen=True)
class Drill:
    """A narrower view: one API, version, application and/or AI model (None: all)."""

    api_id: int | None = None
    version_id: int | None = None
    application_id: int | None = None
    model: str | None = None

    def filters(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name in ("api_id", "version_id", "application_id", "model"):
            value = getattr(self, name)
            if value is not None:
                found[name] = value
        return found


def parse_drill(params: Mapping[str, str]) -> Drill:
    """The drill-down asked for by ``api``, ``version``, ``application`` and ``model``;
    InvalidInput for anything that is not an id (or a model name of at most 100 characters)."""
    ids: dict[str, int | None] = {}
    for param, name in (("api", "api_id"), ("version", "version_id"), ("application", "application_id")):
        value = (params.get(param) or "").strip()
        if value and (not (value.isascii() and value.isdigit()) or len(value) > 18):  # "²" is a digit to str
            raise InvalidInput(f"The {param} must be a number.")
        ids[name] = int(value) if value else None
    model = (params.get("model") or "").strip()
    if len(model) > 100:
        raise InvalidInput("The model is at most 100 characters.")
    return Drill(model=model or None, **ids)


def _parse_local(value: str, tz: ZoneInfo, what: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(f"The {what} is not a date and time (YYYY-MM-DDTHH:MM).") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed.astimezone(UTC)


def parse_window(params: Mapping[str, str], *, default: str = "day", now: datetime | None = None) -> Window:
    """The window asked for by query parameters ``range`` (hour, day, week, month, custom),
    ``start`` and ``end`` (custom only; local times in ``tz`` unless they carry an offset) and
    ``tz``. InvalidInput with a clear message for anything else."""
    now = now or timezone.now()
    tz = zone(params.get("tz"))
    preset = params.get("range") or default
    if preset not in RANGES:
        raise InvalidInput(f"A range is one of: {', '.join(RANGES)}.")
    if preset == CUSTOM:
        if not params.get("start") or not params.get("end"):
            raise InvalidInput("A custom range needs a start and an end.")
        start = _parse_local(params["start"], tz, "start")
        end = _parse_local(params["end"], tz, "end")
        if end <= start:
            raise InvalidInput("The end must be after the start.")
        if end - start > MAX_RANGE:
            raise InvalidInput(f"A range is at most {MAX_RANGE.days} days.")
        return Window(start, end, preset, tz)
    return Window(now - PRESETS[preset], now, preset, tz)


def pick_tier(start: datetime, end: datetime, *, now: datetime | None = None) -> str:
    """The finest rollup tier that still holds everything from ``start`` on (retention) and
    draws the range in at most MAX_POINTS buckets; the day tier otherwise."""
    now = now or timezone.now()
    for tier in _TIERS:
        if covers(tier, start, now) and (end - start) / WIDTH[tier] <= MAX_POINTS:
            return tier
    return _TIERS[-1]


def _floor(tier: str, when: datetime) -> datetime:
    when = when.astimezone(UTC)
    if tier == Granularity.MINUTE:
        return when.replace(second=0, microsecond=0)
    if tier == Granularity.HOUR:
        return when.replace(minute=0, second=0, microsecond=0)
    return when.replace(hour=0, minute=0, second=0, microsecond=0)


def _rollups(tenant: Tenant | None, tier: str, window: Window, drill: Drill, using: str) -> QuerySet[Rollup]:
    rows = Rollup.objects.using(using).filter(
        granularity=tier, bucket_start__gte=_floor(tier, window.start), bucket_start__lt=window.end, **drill.filters()
    )
    if tenant is not None:
        rows = rows.filter(tenant_id=tenant.pk)
    return rows


def _money(amount: Decimal | None) -> float | None:
    return float(amount) if amount is not None else None


def _figures(totals: Totals) -> dict[str, Any]:
    return {
        "requests": totals.requests,
        "errors": totals.errors,
        "errors_4xx": totals.errors_4xx,
        "errors_5xx": totals.errors_5xx,
        "error_rate": totals.error_rate,
        "p50_ms": totals.percentile(50),
        "p95_ms": totals.percentile(95),
        "p99_ms": totals.percentile(99),
        "tokens_in": totals.tokens_in,
        "tokens_out": totals.tokens_out,
        "tokens": totals.tokens_in + totals.tokens_out,
        "cost": _money(totals.cost),
        "unpriced_calls": totals.unpriced_calls,
        "cache_hits": totals.cache_hits,
    }


_SUMS = {
    "requests": Sum("requests"),
    "errors_4xx": Sum("errors_4xx"),
    "errors_5xx": Sum("errors_5xx"),
    "tokens_in": Sum("tokens_in"),
    "tokens_out": Sum("tokens_out"),
    "cost": Sum("cost"),
}


def _top(combos: list[dict[str, Any]], dimension: str, names: Mapping[Any, str]) -> list[dict[str, Any]]:
    """The TOP values of ``dimension`` by requests, from the per-combination sums."""
    found: dict[Any, dict[str, Any]] = {}
    for row in combos:
        key = row[dimension]
        if key is None or key == "":
            continue
        into = found.setdefault(key, {"requests": 0, "errors": 0, "tokens": 0, "cost": None})
        into["requests"] += row["requests"] or 0
        into["errors"] += (row["errors_4xx"] or 0) + (row["errors_5xx"] or 0)
        into["tokens"] += (row["tokens_in"] or 0) + (row["tokens_out"] or 0)
        if row["cost"] is not None:
            into["cost"] = (into["cost"] or Decimal(0)) + Decimal(row["cost"])
    ranked = sorted(found.items(), key=lambda item: (-item[1]["requests"], str(item[0])))[:TOP]
    return [
        {
            "id": key,
            "name": names.get(key, f"#{key}") if dimension != "model" else key,
            "requests": sums["requests"],
            "errors": sums["errors"],
            "error_rate": sums["errors"] / sums["requests"] if sums["requests"] else None,
            "tokens": sums["tokens"],
            "cost": _money(sums["cost"]),
        }
        for key, sums in ranked
    ]


_COMBO = ("api_id", "version_id", "application_id", "model", "status_class")

_HISTOGRAM_SQL = {
    # One row per (bucket, histogram index) of the chosen rollups: the merge is done by the
    # database, not by decoding every row's JSON in Python (2 s -> 0.1 s for a platform day).
    "sqlite": (
        "SELECT r.bucket_start, j.key, SUM(j.value) FROM analytics_rollup r, json_each(r.latency_histogram) j "
        "WHERE r.id IN ({ids}) GROUP BY r.bucket_start, j.key"
    ),
    "postgresql": (
        "SELECT r.bucket_start, j.key, SUM(j.value::bigint) FROM analytics_rollup r "
        "CROSS JOIN LATERAL jsonb_each_text(r.latency_histogram) j "
        "WHERE r.id IN ({ids}) GROUP BY r.bucket_start, j.key"
    ),
}


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


def _series(rows: QuerySet[Rollup], using: str) -> dict[datetime, Totals]:
    """Totals per bucket of ``rows``: sums by a GROUP BY, histograms merged in SQL (in
    Python, row by row, on a database without JSON table functions)."""
    series: dict[datetime, Totals] = {}
    sums = rows.values("bucket_start").annotate(
        **_SUMS,
        latency_max_ms=Max("latency_max_ms"),
        unpriced_calls=Sum("unpriced_calls"),
        cache_hits=Sum("cache_hits"),
    )
    for row in sums.order_by():
        series[_as_datetime(row["bucket_start"])] = Totals().merge({**row, "latency_histogram": {}})
    vendor = connections[using].vendor
    if vendor in _HISTOGRAM_SQL:
        ids_sql, params = rows.values("id").order_by().query.sql_with_params()
        with connections[using].cursor() as cursor:
            cursor.execute(_HISTOGRAM_SQL[vendor].format(ids=ids_sql), params)
            for bucket_start, index, count in cursor.fetchall():
                histogram = series[_as_datetime(bucket_start)].latency_histogram
                histogram[str(index)] = histogram.get(str(index), 0) + int(count)
    else:
        for row in rows.values("bucket_start", "latency_histogram").order_by().iterator(chunk_size=5000):
            merge_histograms(series[_as_datetime(row["bucket_start"])].latency_histogram, row["latency_histogram"])
    return series


def dashboard(
    actor: Any,
    tenant: Tenant | None,
    window: Window,
    *,
    drill: Drill | None = None,
    now: datetime | None = None,
    using: str = "default",
) -> dict[str, Any]:
    """Everything a usage page (``tenant``) or the platform dashboard (None, staff only)
    shows for ``window`` (narrowed to ``drill``): totals, a time series per bucket, the
    status-class mix and top APIs, versions, applications and models. NotFound for anyone
    who may not look."""
    require_reader(actor, tenant)
    drill = drill or Drill()
    tier = pick_tier(window.start, window.end, now=now)
    rows = _rollups(tenant, tier, window, drill, using)

    series = _series(rows, using)
    overall = Totals()
    for totals in series.values():
        overall.merge(totals.__dict__)

    # Every bucket of the window, so that a minute without calls is drawn as 0, not bridged.
    points = []
    step, start = WIDTH[Granularity(tier)], _floor(tier, window.start)
    starts = []
    while start < window.end:
        starts.append(start)
        start += step
    for start in sorted(set(starts) | set(series)):
        figures = _figures(series.get(start) or Totals())
        points.append(
            {
                "t": window.local(start).isoformat(),
                "requests": figures["requests"],
                "error_rate": figures["error_rate"],
                "p50_ms": figures["p50_ms"],
                "p95_ms": figures["p95_ms"],
                "p99_ms": figures["p99_ms"],
                "tokens": figures["tokens"],
                "cost": figures["cost"],
            }
        )

    # One GROUP BY over the dimensions serves the status mix, the top lists and their names.
    combos = list(rows.values(*_COMBO).annotate(**_SUMS).order_by())
    mix: dict[str, int] = {}
    for row in sorted(combos, key=lambda row: row["status_class"]):
        name = STATUS_CLASSES.get(row["status_class"], "other")
        mix[name] = mix.get(name, 0) + (row["requests"] or 0)

    def ids(name: str) -> list[int]:
        return sorted({row[name] for row in combos if row[name] is not None})

    api_names = dict(Api.objects.filter(pk__in=ids("api_id")).values_list("pk", "name"))
    apps = Application.objects.all() if tenant is None else Application.objects.filter(tenant=tenant)
    app_names = dict(apps.filter(pk__in=ids("application_id")).values_list("pk", "name"))
    version_names = {
        pk: f"{api} {version}"
        for pk, api, version in ApiVersion.objects.filter(pk__in=ids("version_id")).values_list(
            "pk", "api__name", "version"
        )
    }
    labels = {
        "api_id": api_names.get(drill.api_id),
        "version_id": version_names.get(drill.version_id),
        "application_id": app_names.get(drill.application_id),
        "model": drill.model,
    }

    return {
        "tier": tier,
        "start": window.local(window.start),
        "end": window.local(window.end),
        "totals": _figures(overall),
        "series": points,
        "status_mix": mix,
        "drill": {name: labels[name] or f"#{value}" for name, value in drill.filters().items()},
        "top_apis": _top(combos, "api_id", api_names),
        "top_versions": _top(combos, "version_id", version_names),
        "top_applications": _top(combos, "application_id", app_names),
        "top_models": _top(combos, "model", {}),
    }
