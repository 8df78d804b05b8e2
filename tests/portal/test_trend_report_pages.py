"""Trend reports in the portal: a tenant's members see its reports (list, page, CSV), staff
the platform's, nobody another tenant's (404); "make a report now" goes through a real Celery
worker; bad input is a message above the list, never a 500."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.test import Client

from analytics.models import ReportKind, TrendReport
from analytics.reports import report_url, send_trend_reports
from tests.analytics.test_trend_reports import NOW, SPIKE, hourly_traffic

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def reports(api, app, globex_app, acme, globex):
    """Acme's daily report with an error spike flagged, Globex's, and the platform's."""
    hourly_traffic(app, api, spike_at=SPIKE)
    hourly_traffic(globex_app, api)
    send_trend_reports(ReportKind.DAILY, now=NOW)
    return {
        "acme": TrendReport.objects.get(tenant=acme),
        "globex": TrendReport.objects.get(tenant=globex),
        "platform": TrendReport.objects.get(tenant__isnull=True),
    }


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_members_see_their_tenants_reports_and_never_anothers(reports, alice, bob, vera, charlie):
    acme, globex, platform = reports["acme"], reports["globex"], reports["platform"]
    for member in (alice, bob, vera):
        client = client_for(member)
        listing = client.get("/usage/reports/")
        assert listing.status_code == 200
        assert f"/usage/reports/{acme.pk}/" in listing.text
        for other in (globex, platform):
            assert f"/usage/reports/{other.pk}/" not in listing.text
        for other in (globex, platform):
            assert client.get(f"/usage/reports/{other.pk}/").status_code == 404
            assert client.get(f"/usage/reports/{other.pk}/report.csv").status_code == 404
        assert client.get("/staff/reports/").status_code == 404
    charlie_client = client_for(charlie)
    assert charlie_client.get(f"/usage/reports/{acme.pk}/").status_code == 404
    assert "Acme" not in charlie_client.get("/usage/reports/").text
    for bad in ("/usage/reports/99999999999999999999999/", "/usage/reports/abc/", "/usage/reports/-1/"):
        assert charlie_client.get(bad).status_code == 404


@pytest.mark.django_db
def test_a_report_page_shows_figures_changes_tops_the_flagged_hour_and_its_chart_data(reports, alice, api, app):
    page = client_for(alice).get(f"/usage/reports/{reports['acme'].pk}/")
    assert page.status_code == 200
    text = page.text
    assert "Acme: daily report" in text and "2027-03-14 00:00 to 2027-03-15 00:00 UTC" in text
    assert ">960<" in text and "before: 960" in text  # requests, and the day before
    assert "4.48 %" in text and "+2.0 points" in text  # error rate and its change
    assert app.name in text and api.name in text and "upstream_unavailable" in text
    # The flagged hour, in the table and in the chart's data.
    assert '<tr class="anomaly"><td>2027-03-14 14:00</td><td>Error rate ↑</td>' in text
    chart = page.context["chart"]
    assert len(chart["hourly"]) == 24 and chart["hourly"][14]["error_rate"] == 0.5
    assert [a["hour"] for a in chart["anomalies"]] == [SPIKE.isoformat()]
    assert 'id="chart-report-hourly"' in text and "Globex" not in text
    # The e-mail's link is this page.
    assert report_url(reports["acme"]).endswith(f"/usage/reports/{reports['acme'].pk}/")


@pytest.mark.django_db
def test_the_csv_download(reports, vera):
    answer = client_for(vera).get(f"/usage/reports/{reports['acme'].pk}/report.csv")
    assert answer.status_code == 200 and answer["Content-Type"] == "text/csv; charset=utf-8"
    name = f"trend-report-{reports['acme'].pk}-daily-20270314.csv"
    assert answer["Content-Disposition"] == f'attachment; filename="{name}"'
    rows = list(csv.reader(io.StringIO(answer.content.decode())))
    assert rows[1][1:3] == ["Acme", "daily"]
    assert ["", SPIKE.isoformat(), "error_rate", "up", "0.5", "0.025"] == rows[-1][:6]


@pytest.mark.django_db
def test_staff_see_the_platform_reports(reports, staff):
    client = client_for(staff)
    listing = client.get("/staff/reports/")
    assert listing.status_code == 200 and f"/usage/reports/{reports['platform'].pk}/" in listing.text
    page = client.get(f"/usage/reports/{reports['platform'].pk}/")
    assert page.status_code == 200 and "Platform: daily report" in page.text and 'id="top-tenants"' in page.text


@pytest.mark.django_db
def test_asking_for_a_report_with_a_bad_kind_is_a_clear_message(acme, alice):
    client = client_for(alice)
    for kind in ("hourly", "", "x" * 5000):
        answer = client.post("/usage/reports/", {"kind": kind}, follow=True)  # back to the list, as other pages do
        assert answer.redirect_chain == [("/usage/reports/", 302)]
        assert answer.status_code == 200 and "A report is one of: daily, weekly." in answer.text
    assert client.get("/usage/reports/?page=abc").status_code == 200  # a bad page number: the first page
    assert TrendReport.objects.count() == 0


@pytest.mark.django_db
def test_outsiders_and_strangers_cannot_ask_for_platform_reports(acme, alice):
    assert client_for(alice).post("/staff/reports/", {"kind": "daily"}).status_code == 404
    anonymous = Client().post("/usage/reports/", {"kind": "daily"})
    assert anonymous.status_code == 302 and "/login" in anonymous["Location"]
    assert TrendReport.objects.count() == 0


def start_worker(log: Path) -> subprocess.Popen:
    database = f"sqlite:///{connection.settings_dict['NAME']}"
    env = {**os.environ, "DATABASE_URL": database, "REDIS_URL": settings.REDIS_URL}
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "-P", "solo", "-Q", "celery"]
        + ["--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "info"],
        cwd=ROOT,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


@pytest.mark.django_db(transaction=True)
def test_make_a_report_now_goes_through_celery_once_and_then_reuses_it(api, app, acme, bob, tmp_path):
    hourly_traffic(app, api)  # old traffic: the report of the last 24 hours says 0 requests
    client = client_for(bob)
    cache.delete(f"trend-report-queued:{acme.pk}:weekly")
    log = tmp_path / "worker.log"
    worker = start_worker(log)
    try:
        first = client.post("/usage/reports/", {"kind": "weekly"}, follow=True)
        assert first.status_code == 200 and "being prepared" in first.text
        again = client.post("/usage/reports/", {"kind": "weekly"})  # clicked twice: no second task
        assert again.status_code == 302
        deadline = time.monotonic() + 60
        while not TrendReport.objects.filter(tenant=acme).exists():
            assert time.monotonic() < deadline, f"no report from the worker: {log.read_text()[-3000:]}"
            time.sleep(0.1)
        time.sleep(1)  # a second task, had one been queued, would have run by now
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    (report,) = TrendReport.objects.filter(tenant=acme)
    assert report.on_demand and report.kind == "weekly" and report.requested_by == bob
    assert f"/usage/reports/{report.pk}/" in client.get("/usage/reports/").text
    # Within five minutes, asking again opens the report just made.
    third = client.post("/usage/reports/", {"kind": "weekly"})
    assert third.status_code == 302 and third["Location"] == f"/usage/reports/{report.pk}/"
