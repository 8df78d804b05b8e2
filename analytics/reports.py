"""Trend reports: a tenant's calls (or the whole platform's) over a day or a week, against the
period before, with top lists and anomalies. Stored as ``TrendReport`` rows, downloadable as
CSV (``report_csv``), e-mailed to the tenant's owners.

- Scheduled (Celery beat, ``analytics.send_trend_reports``; ``manage.py send_trend_reports``):
  the UTC day just ended (against the day before) and the ISO week just ended (against the
  week before), for the platform and for every tenant with calls in either period. One report
  per kind, scope and period: running again refreshes its figures and mails nobody twice.
- On demand (``create_trend_report``, through ``analytics.services``; ``manage.py
  create_trend_report``): the last 24 hours or 7 days of complete hours, never mailed.

Figures come from the hour rollups (kept 90 days), so p50/p95 are read from merged latency
histograms; top errors come from the raw calls (kept 14 days) and are left out when the raw
calls of the period are gone. A tenant's report counts the calls its applications made
(``CallLog.tenant_id``, the key's tenant).

Anomalies: for every hour of the period, the hour's value against its trailing baseline, the
7 x 24 hours before it (from the scope's first call on, when that is later), by a robust
z-score: ``z = (x - median) / (1.4826 * MAD)`` (the MAD scaled to a standard deviation for
normal data, i.e. Iglewicz and Hoaglin's modified z-score), flagged when
``|z| >= ANOMALY_THRESHOLD`` (3.5, their recommendation). Watched: traffic (spikes and
drops), error rate and p95 latency (rises only). A flat baseline has a MAD of 0, which would
flag any wobble, so the scale has a floor per metric (``FLOORS``): the square root of the
median for traffic (Poisson noise), 1 percentage point for the error rate, one histogram
bucket (10 % of the median) for p95. Hours with fewer than ``MIN_HOURLY_REQUESTS`` calls give
no error rate or latency, an error-rate anomaly needs ``MIN_ERRORS`` errors in its hour, a
traffic one ``MIN_HOURLY_REQUESTS`` calls on one side, and a metric with fewer than
``MIN_BASELINE_HOURS`` usable hours in its baseline is not judged.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from analytics.models import CallLog, Granularity, ReportKind, Rollup, TrendReport
from analytics.retention import CALLS, covers
from analytics.rollups import Totals, roll_up_hours, roll_up_minutes
from portal.models import Api, Application, Tenant
from portal.services.notifications import notify_tenant_owners

log = logging.getLogger(__name__)

ANOMALY_THRESHOLD = 3.5
BASELINE = timedelta(days=7)
MIN_BASELINE_HOURS = 24
MIN_HOURLY_REQUESTS = 20
MIN_ERRORS = 5
TOP = 10
HOUR = timedelta(hours=1)
LENGTH = {ReportKind.DAILY: timedelta(days=1), ReportKind.WEEKLY: timedelta(days=7)}
# Smallest scale of each metric's z-score, from the baseline's median.
FLOORS: dict[str, Callable[[float], float]] = {
    "requests": lambda median: max(math.sqrt(median), 1.0),
    "error_rate": lambda median: 0.01,
    "p95_latency_ms": lambda median: max(0.1 * median, 1.0),
}


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime

    @property
    def previous(self) -> Period:
        return Period(self.start - (self.end - self.start), self.start)


def scheduled_period(kind: str, now: datetime) -> Period:
    """The UTC day, or the ISO week (Monday to Monday), that ended last before ``now``."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == ReportKind.DAILY:
        return Period(today - timedelta(days=1), today)
    monday = today - timedelta(days=today.weekday())
    return Period(monday - timedelta(days=7), monday)


def on_demand_period(kind: str, now: datetime) -> Period:
    """The last day or week of complete hours."""
    end = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return Period(end - LENGTH[ReportKind(kind)], end)


# --- Figures --------------------------------------------------------------------------------


def money(amount: Decimal | None) -> str | None:
    """USD as a plain decimal string ("0.0042", never "4.2E-3"); None stays unknown."""
    return None if amount is None else format(amount.normalize(), "f")


def figures(totals: Totals) -> dict[str, Any]:
    return {
        "requests": totals.requests,
        "errors_4xx": totals.errors_4xx,
        "errors_5xx": totals.errors_5xx,
        "error_rate": totals.error_rate,
        "p50_ms": totals.percentile(50),
        "p95_ms": totals.percentile(95),
        "tokens_in": totals.tokens_in,
        "tokens_out": totals.tokens_out,
        "cost": money(totals.cost),
        "unpriced_calls": totals.unpriced_calls,
        "cache_hits": totals.cache_hits,
        "bytes_in": totals.bytes_in,
        "bytes_out": totals.bytes_out,
    }


def _relative(now: float | None, before: float | None) -> float | None:
    if now is None or before is None or before == 0:
        return None
    return round((now - before) / before * 100, 2)


def changes(current: dict[str, Any], previous: dict[str, Any]) -> dict[str, float | None]:
    """Relative changes in percent (None without a base), and the error rate's in points."""
    found: dict[str, float | None] = {}
    for name, value in current.items():
        if name == "error_rate":
            before = previous.get(name)
            found["error_rate_points"] = None if value is None or before is None else round((value - before) * 100, 2)
        elif name == "cost":
            found[name] = _relative(
                None if value is None else float(value), None if previous[name] is None else float(previous[name])
            )
        else:
            found[name] = _relative(value, previous.get(name))
    return found


def _scope(tenant_id: int | None) -> dict[str, Any]:
    return {} if tenant_id is None else {"tenant_id": tenant_id}


@dataclass
class _Sums:
    current: Totals
    previous: Totals
    hourly: dict[datetime, Totals]
    by_api: dict[int | None, tuple[Totals, Totals]]
    by_application: dict[int | None, Totals]
    by_tenant: dict[int | None, Totals]


def _sums(tenant_id: int | None, period: Period) -> _Sums:
    previous = period.previous
    sums = _Sums(Totals(), Totals(), {}, {}, {}, {})
    rows = Rollup.objects.filter(
        granularity=Granularity.HOUR,
        bucket_start__gte=min(previous.start, period.start - BASELINE),
        bucket_start__lt=period.end,
        **_scope(tenant_id),
    ).values()
    for row in rows.iterator(chunk_size=5000):
        hour = row["bucket_start"]
        sums.hourly.setdefault(hour, Totals()).merge(row)
        if period.start <= hour:
            sums.current.merge(row)
            sums.by_api.setdefault(row["api_id"], (Totals(), Totals()))[0].merge(row)
            sums.by_application.setdefault(row["application_id"], Totals()).merge(row)
            sums.by_tenant.setdefault(row["tenant_id"], Totals()).merge(row)
        elif previous.start <= hour:
            sums.previous.merge(row)
            sums.by_api.setdefault(row["api_id"], (Totals(), Totals()))[1].merge(row)
    return sums


def _names(model: Any, ids: set[int | None]) -> dict[int | None, str]:
    found: dict[int | None, str] = dict(model.objects.filter(pk__in=[i for i in ids if i]).values_list("pk", "name"))
    return found


def _top(totals: dict[int | None, Totals], names: dict[int | None, str], label: str) -> list[dict[str, Any]]:
    ranked = sorted(totals.items(), key=lambda item: (-item[1].requests, item[0] or 0))[:TOP]
    return [
        {
            "id": key,
            "name": names.get(key, f"(no {label})" if key is None else f"({label} {key}, deleted)"),
            "requests": t.requests,
            "errors": t.errors,
            "error_rate": t.error_rate,
            "p95_ms": t.percentile(95),
            "tokens": t.tokens_in + t.tokens_out,
            "cost": money(t.cost),
        }
        for key, t in ranked
        if t.requests
    ]


def top_errors(tenant_id: int | None, period: Period, now: datetime) -> list[dict[str, Any]] | None:
    """The commonest failures (status, error code, API) from the raw calls; None when the
    calls of the period are already past their retention."""
    if not covers(CALLS, period.start, now):
        return None
    rows = (
        CallLog.objects.filter(time__gte=period.start, time__lt=period.end, status__gte=400, **_scope(tenant_id))
        .values("status", "error_code", "api_id")
        .annotate(count=Count("id"))
        .order_by("-count", "status", "error_code")[:TOP]
    )
    found = list(rows)
    names = _names(Api, {row["api_id"] for row in found})
    return [
        {
            "status": row["status"],
            "error_code": row["error_code"],
            "api": names.get(row["api_id"], "(no API)" if row["api_id"] is None else f"(API {row['api_id']}, deleted)"),
            "count": row["count"],
        }
        for row in found
    ]


# --- Anomalies ------------------------------------------------------------------------------


def robust_z(value: float, baseline: list[float], floor: float) -> tuple[float, float, float]:
    """(z, median, scale) of ``value`` against ``baseline`` (see the module's docstring)."""
    median = statistics.median(baseline)
    mad = statistics.median(abs(x - median) for x in baseline)
    scale = max(1.4826 * mad, floor)
    return (value - median) / scale, median, scale


def _metric(metric: str, totals: Totals | None) -> float | None:
    if metric == "requests":
        return float(totals.requests if totals else 0)
    if totals is None or totals.requests < MIN_HOURLY_REQUESTS:
        return None
    if metric == "error_rate":
        return totals.error_rate
    return totals.percentile(95)


def anomalies(hourly: dict[datetime, Totals], period: Period) -> list[dict[str, Any]]:
    """The hours of ``period`` whose traffic, error rate or p95 latency stands out from their
    trailing 7-day baseline."""
    found: list[dict[str, Any]] = []
    if not hourly:
        return found
    # Hours before the scope's first call in the window are no baseline: a tenant that
    # started two days ago is not "spiking" against five empty days.
    first = min(hourly)
    hour = period.start
    while hour < period.end:
        totals = hourly.get(hour)
        for metric, floor in FLOORS.items():
            value = _metric(metric, totals)
            if value is None:
                continue
            baseline = []
            step = max(hour - BASELINE, first)
            while step < hour:
                if (x := _metric(metric, hourly.get(step))) is not None:
                    baseline.append(x)
                step += HOUR
            if len(baseline) < MIN_BASELINE_HOURS:
                continue
            median = statistics.median(baseline)
            z, median, scale = robust_z(value, baseline, floor(median))
            if abs(z) < ANOMALY_THRESHOLD:
                continue
            if metric == "requests" and max(value, median) < MIN_HOURLY_REQUESTS:
                continue  # 3 calls instead of 0 is not news
            if metric != "requests" and z < 0:
                continue  # fewer errors or faster answers are welcome
            if metric == "error_rate" and totals is not None and totals.errors < MIN_ERRORS:
                continue
            found.append(
                {
                    "hour": hour.isoformat(),
                    "metric": metric,
                    "direction": "up" if z > 0 else "down",
                    "value": value,
                    "baseline_median": median,
                    "z": round(z, 2),
                }
            )
        hour += HOUR
    return found


# --- Reports --------------------------------------------------------------------------------


def hourly_series(hourly: dict[datetime, Totals], period: Period) -> list[dict[str, Any]]:
    """The period hour by hour (empty hours as 0 requests), for the report page's chart."""
    series = []
    hour = period.start
    while hour < period.end:
        totals = hourly.get(hour)
        series.append(
            {
                "hour": hour.isoformat(),
                "requests": totals.requests if totals else 0,
                "error_rate": totals.error_rate if totals else None,
                "p95_ms": totals.percentile(95) if totals else None,
            }
        )
        hour += HOUR
    return series


def build_report_data(tenant_id: int | None, period: Period, *, now: datetime | None = None) -> dict[str, Any]:
    """Everything a report shows, as JSON-ready data."""
    now = now or timezone.now()
    sums = _sums(tenant_id, period)
    current, previous = figures(sums.current), figures(sums.previous)
    api_names = _names(Api, set(sums.by_api))
    top_apis = _top({k: v[0] for k, v in sums.by_api.items()}, api_names, "API")
    for row in top_apis:
        row["requests_change"] = _relative(row["requests"], sums.by_api[row["id"]][1].requests)
    data: dict[str, Any] = {
        "scope": "platform" if tenant_id is None else "tenant",
        "period": {"start": period.start.isoformat(), "end": period.end.isoformat()},
        "previous_period": {"start": period.previous.start.isoformat(), "end": period.previous.end.isoformat()},
        "current": current,
        "previous": previous,
        "changes": changes(current, previous),
        "top_apis": top_apis,
        "top_applications": _top(sums.by_application, _names(Application, set(sums.by_application)), "application"),
        "top_errors": top_errors(tenant_id, period, now),
        "anomalies": anomalies(sums.hourly, period),
        "hourly": hourly_series(sums.hourly, period),
        "anomaly_rule": {
            "threshold": ANOMALY_THRESHOLD,
            "baseline_hours": int(BASELINE / HOUR),
            "min_hourly_requests": MIN_HOURLY_REQUESTS,
        },
    }
    if tenant_id is None:
        data["top_tenants"] = _top(sums.by_tenant, _names(Tenant, set(sums.by_tenant)), "tenant")
    return data


def report_path(report: TrendReport) -> str:
    """The report's page in the portal (the ``trend_report`` URL, with the report's pk)."""
    try:
        return reverse("trend_report", kwargs={"pk": report.pk})
    except NoReverseMatch:
        return f"/usage/reports/{report.pk}/"


def report_url(report: TrendReport) -> str:
    return settings.PORTICO_PORTAL_URL.rstrip("/") + report_path(report)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f} %"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def _change(value: float | None, unit: str = "%") -> str:
    return "" if value is None else f" ({value:+.1f} {unit})"


def headline(report: TrendReport) -> list[str]:
    """The figures an e-mail shows, one line each."""
    current, change = report.data["current"], report.data["changes"]
    cost = current["cost"]
    cost_text = "n/a" if cost is None else f"${Decimal(cost):.4f}"
    if current["unpriced_calls"]:
        cost_text += f" (+ {current['unpriced_calls']} calls of unknown cost)"
    versus = "the day before" if report.kind == ReportKind.DAILY else "the week before"
    return [
        f"Requests: {current['requests']}{_change(change['requests'])}",
        f"Error rate: {_percent(current['error_rate'])}{_change(change['error_rate_points'], 'points')}",
        f"Latency p50 / p95: {_ms(current['p50_ms'])} / {_ms(current['p95_ms'])}{_change(change['p95_ms'])}",
        f"Tokens in / out: {current['tokens_in']} / {current['tokens_out']}",
        f"Cost: {cost_text}{_change(change['cost'])}",
        f"Anomalies: {report.anomaly_count}",
        f"(changes against {versus})",
    ]


def _mail(report: TrendReport) -> int:
    """Queue the e-mail to the tenant's owners (sent on commit). Returns the recipients."""
    tenant = report.tenant
    if tenant is None or not settings.PORTICO_NOTIFY_TREND_REPORTS:
        return 0
    when = f"{report.period_start:%Y-%m-%d}"
    if report.kind == ReportKind.WEEKLY:
        when = f"the week of {when}"
    subject = f"[Portico] {tenant.name}: {report.get_kind_display().lower()} API report for {when}"
    body = "\n".join(
        [
            f"Your team's API calls from {report.period_start:%Y-%m-%d %H:%M} "
            f"to {report.period_end:%Y-%m-%d %H:%M} UTC:",
            "",
            *headline(report),
            "",
            f"The full report (top APIs, applications, errors and anomalies, CSV): {report_url(report)}",
        ]
    )
    return notify_tenant_owners(tenant, subject, body)


def create_trend_report(
    kind: str,
    *,
    tenant: Tenant | None = None,
    period: Period | None = None,
    on_demand: bool = False,
    requested_by: Any = None,
    now: datetime | None = None,
    refresh: bool = True,
) -> TrendReport:
    """Build and store a report. A scheduled one (``on_demand=False``) replaces the figures of
    the same kind, scope and period and is e-mailed to the tenant's owners the first time;
    an on-demand one is a new row, never mailed. ``refresh`` rolls up what was ingested first."""
    kind = ReportKind(kind)
    now = now or timezone.now()
    period = period or (on_demand_period(kind, now) if on_demand else scheduled_period(kind, now))
    if refresh:
        roll_up_minutes(now=now)
        roll_up_hours(now=now)
    data = build_report_data(tenant.pk if tenant else None, period, now=now)
    fields = {"period_end": period.end, "data": data, "anomaly_count": len(data["anomalies"])}
    try:
        with transaction.atomic(durable=True):
            if on_demand:
                return TrendReport.objects.create(
                    kind=kind,
                    tenant=tenant,
                    period_start=period.start,
                    on_demand=True,
                    requested_by=requested_by,
                    **fields,
                )
            report = (
                TrendReport.objects.select_for_update()
                .filter(kind=kind, tenant=tenant, period_start=period.start, on_demand=False)
                .first()
            )
            if report is None:
                report = TrendReport.objects.create(kind=kind, tenant=tenant, period_start=period.start, **fields)
            else:
                for name, value in fields.items():
                    setattr(report, name, value)
                report.save(update_fields=[*fields])
            if report.emailed_at is None and (recipients := _mail(report)):
                report.emailed_at, report.emailed_to = now, recipients
                report.save(update_fields=["emailed_at", "emailed_to"])
            return report
    except IntegrityError:  # a concurrent run stored this scheduled report first (and mailed it)
        return TrendReport.objects.get(kind=kind, tenant=tenant, period_start=period.start, on_demand=False)


def tenants_with_calls(period: Period) -> list[Tenant]:
    """Tenants whose applications made calls in the period or the one before."""
    ids = (
        Rollup.objects.filter(
            granularity=Granularity.HOUR,
            bucket_start__gte=period.previous.start,
            bucket_start__lt=period.end,
            tenant_id__isnull=False,
        )
        .order_by()
        .values_list("tenant_id", flat=True)
        .distinct()
    )
    return list(Tenant.objects.filter(pk__in=list(ids)).order_by("pk"))


def send_trend_reports(kind: str, *, now: datetime | None = None) -> list[TrendReport]:
    """The scheduled reports of ``kind`` for the period just ended: the platform's, then each
    tenant's with calls (mailed to its owners once)."""
    now = now or timezone.now()
    period = scheduled_period(kind, now)
    roll_up_minutes(now=now)
    roll_up_hours(now=now)
    reports = [create_trend_report(kind, period=period, now=now, refresh=False)]
    for tenant in tenants_with_calls(period):
        reports.append(create_trend_report(kind, tenant=tenant, period=period, now=now, refresh=False))
    return reports


# --- CSV ------------------------------------------------------------------------------------


def _cell(value: Any) -> Any:
    """A cell a spreadsheet shows as text: names are chosen by tenants, and one starting with
    = + - @ (or a tab or CR) would be run as a formula (CSV injection), so it gets a quote."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def report_csv(report: TrendReport) -> bytes:
    """The report as CSV (UTF-8): the figures with their changes, then each top list and the
    anomalies, each section under its own header row."""
    data = report.data
    out = io.StringIO()
    writer = csv.writer(out)

    def rows(*lines: list[Any]) -> None:
        for line in lines:
            writer.writerow([_cell(value) for value in line])

    scope = report.tenant.name if report.tenant_id and report.tenant else "Platform"
    rows(
        ["report", "scope", "kind", "period_start", "period_end", "previous_start", "previous_end"],
        [
            report.pk,
            scope,
            report.kind,
            data["period"]["start"],
            data["period"]["end"],
            data["previous_period"]["start"],
            data["previous_period"]["end"],
        ],
        [],
        ["metric", "current", "previous", "change", "change_unit"],
    )
    for name, value in data["current"].items():
        change_key = "error_rate_points" if name == "error_rate" else name
        unit = "points" if name == "error_rate" else "percent"
        rows([name, value, data["previous"][name], data["changes"].get(change_key), unit])
    sections = ["top_apis", "top_applications"] + (["top_tenants"] if "top_tenants" in data else [])
    for section in sections:
        rows([], [section, "id", "requests", "errors", "error_rate", "p95_ms", "tokens", "cost"])
        for item in data[section]:
            rows(
                [
                    item["name"],
                    item["id"],
                    item["requests"],
                    item["errors"],
                    item["error_rate"],
                    item["p95_ms"],
                    item["tokens"],
                    item["cost"],
                ]
            )
    rows([], ["top_errors", "status", "error_code", "api", "count"])
    for item in data["top_errors"] or []:
        rows(["", item["status"], item["error_code"], item["api"], item["count"]])
    rows([], ["anomalies", "hour", "metric", "direction", "value", "baseline_median", "z"])
    for item in data["anomalies"]:
        rows(["", item["hour"], item["metric"], item["direction"], item["value"], item["baseline_median"], item["z"]])
    return out.getvalue().encode("utf-8")
