"""Trend reports in the portal: a tenant's list (``/usage/reports/``), the platform's for
staff (``/staff/reports/``), one report's page and its CSV. Thin: who may read or request
what is ``analytics.services``'s; what a report says is ``analytics.reports``'s. Refusals are
answered by ``service_errors`` as on the other pages: a report the viewer may not read is a
404, whoever's it is; a bad request for one is a message above the list."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from analytics import reports, services
from analytics.models import ReportKind, TrendReport
from portal.models import Tenant
from portal.views.analytics import _staff, _tenant
from portal.views.service_errors import service_errors

PER_PAGE = 30
METRIC_NAMES = {"requests": "Traffic", "error_rate": "Error rate", "p95_latency_ms": "p95 latency"}


def _list(request: HttpRequest, tenant: Tenant | None) -> HttpResponse:
    """The reports of a scope, newest first, and the form that asks for one now."""
    if request.method == "POST":
        kind = request.POST.get("kind", "")
        ready = services.queue_trend_report(request.user, tenant=tenant, kind=kind)
        if ready is not None:
            messages.info(request, "A report of this kind was made minutes ago: here it is.")
            return redirect("trend_report", pk=ready.pk)
        messages.success(request, f"Your {kind} report is being prepared; it appears in this list in a minute or so.")
        return redirect(request.path)
    page = Paginator(services.reports_for(request.user, tenant), PER_PAGE).get_page(request.GET.get("page"))
    for report in page:
        rate = report.data.get("current", {}).get("error_rate")
        report.error_rate_text = "–" if rate is None else f"{rate * 100:.2f} %"
    context = {"scope": tenant, "page": page, "kinds": ReportKind.choices}
    with timezone.override(UTC):
        return render(request, "portal/analytics/reports.html", context)


@login_required
@require_http_methods(["GET", "POST"])
@service_errors("trend_reports")
def trend_reports(request: HttpRequest) -> HttpResponse:
    return _list(request, _tenant(request))


@login_required
@require_http_methods(["GET", "POST"])
@service_errors("staff_trend_reports")
def staff_trend_reports(request: HttpRequest) -> HttpResponse:
    _staff(request)
    return _list(request, None)


def figure_cards(report: TrendReport) -> list[dict[str, Any]]:
    """The headline figures with their change against the period before, as the page shows them."""
    current, previous, change = report.data["current"], report.data["previous"], report.data["changes"]

    def percent(value: float | None) -> str:
        return "–" if value is None else f"{value * 100:.2f} %"

    def ms(value: float | None) -> str:
        return "–" if value is None else f"{value:.1f} ms"

    def usd(value: str | None) -> str:
        return "–" if value is None else f"${float(value):.4f}"

    def delta(value: float | None, unit: str = "%") -> str:
        return "" if value is None else f"{value:+.1f} {unit}"

    cost_note = f"{current['unpriced_calls']} calls without a price" if current.get("unpriced_calls") else ""
    return [
        {"id": "requests", "label": "Requests", "value": str(current["requests"]),
         "change": delta(change.get("requests")), "before": str(previous["requests"])},
        {"id": "error-rate", "label": "Error rate", "value": percent(current["error_rate"]),
         "change": delta(change.get("error_rate_points"), "points"), "before": percent(previous["error_rate"]),
         "note": f"{current['errors_4xx']} 4xx, {current['errors_5xx']} 5xx"},
        {"id": "latency", "label": "Latency p50 / p95", "value": f"{ms(current['p50_ms'])} / {ms(current['p95_ms'])}",
         "change": delta(change.get("p95_ms")), "before": f"{ms(previous['p50_ms'])} / {ms(previous['p95_ms'])}"},
        {"id": "tokens", "label": "Tokens in / out", "value": f"{current['tokens_in']} / {current['tokens_out']}",
         "change": delta(change.get("tokens_in")), "before": f"{previous['tokens_in']} / {previous['tokens_out']}"},
        {"id": "cost", "label": "Cost", "value": usd(current["cost"]), "change": delta(change.get("cost")),
         "before": usd(previous["cost"]), "note": cost_note},
    ]  # fmt: skip


def anomaly_rows(report: TrendReport) -> list[dict[str, Any]]:
    rows = []
    for item in report.data["anomalies"]:
        metric = item["metric"]
        value, median = item["value"], item["baseline_median"]
        if metric == "error_rate":
            shown, usual = f"{value * 100:.1f} %", f"{median * 100:.1f} %"
        elif metric == "p95_latency_ms":
            shown, usual = f"{value:.1f} ms", f"{median:.1f} ms"
        else:
            shown, usual = f"{value:.0f}", f"{median:.0f}"
        hour = f"{datetime.fromisoformat(item['hour']).astimezone(UTC):%Y-%m-%d %H:%M}"
        rows.append({**item, "name": METRIC_NAMES.get(metric, metric), "shown": shown, "usual": usual, "at": hour})
    return rows


@login_required
@require_GET
@service_errors()
def trend_report(request: HttpRequest, pk: int) -> HttpResponse:
    report = services.get_report(request.user, pk)
    data = report.data
    context = {
        "report": report,
        "data": data,
        "cards": figure_cards(report),
        "anomalies": anomaly_rows(report),
        "chart": {"hourly": data.get("hourly") or [], "anomalies": data["anomalies"]},
        "list_url": "trend_reports" if report.tenant_id else "staff_trend_reports",
    }
    with timezone.override(UTC):
        return render(request, "portal/analytics/report.html", context)


@login_required
@require_GET
@service_errors()
def trend_report_csv(request: HttpRequest, pk: int) -> HttpResponse:
    report = services.get_report(request.user, pk)
    response = HttpResponse(reports.report_csv(report), content_type="text/csv; charset=utf-8")
    name = f"trend-report-{report.pk}-{report.kind}-{report.period_start:%Y%m%d}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
