"""A tenant's trend reports in a real browser: the list, then a report with a flagged error
spike, its chart drawn (the flagged hour in red) and no console error; screenshots in
test-artifacts/screenshots/."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from analytics.models import ReportKind, TrendReport
from analytics.reports import send_trend_reports
from tests.analytics.test_trend_reports import NOW, SPIKE, hourly_traffic
from tests.browser.test_analytics_pages import signed_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHART = """() => {
  const chart = Chart.getChart(document.getElementById('chart-report-hourly'));
  const [requests, errors] = chart.data.datasets;
  return {width: chart.width, height: chart.height, labels: chart.data.labels,
          colours: errors.pointBackgroundColor, rates: errors.data, requestColours: requests.pointBackgroundColor};
}"""


def test_a_tenant_opens_its_reports_and_a_report_with_a_flagged_spike(
    live_server, api, app, globex_app, acme, alice, new_page, screenshot
):
    hourly_traffic(app, api, spike_at=SPIKE)
    hourly_traffic(globex_app, api)
    send_trend_reports(ReportKind.DAILY, now=NOW)
    report = TrendReport.objects.get(tenant=acme)

    page, errors = signed_in(new_page, live_server, alice)
    page.goto(f"{live_server.url}/usage/")
    page.locator("#reports-link").click()
    expect(page.get_by_role("heading", name="Trend reports of Acme")).to_be_visible()
    rows = page.locator("#reports tbody tr")
    expect(rows).to_have_count(1)  # Acme's only: not Globex's, not the platform's
    expect(rows.first).to_contain_text("2027-03-14 00:00 – 2027-03-15 00:00")
    expect(rows.first.locator(".flag")).to_have_text("1")
    expect(rows.first).to_contain_text("4.48 %")
    screenshot(page, "trend-reports-list")

    rows.first.get_by_role("link").click()
    page.wait_for_url(f"**/usage/reports/{report.pk}/")
    expect(page.get_by_role("heading", name="Acme: daily report")).to_be_visible()
    expect(page.locator("#figure-requests strong")).to_have_text("960")
    expect(page.locator("#figure-error-rate strong")).to_have_text("4.48 %")
    anomaly = page.locator("#anomalies tr.anomaly")
    expect(anomaly).to_have_count(1)
    expect(anomaly).to_contain_text("2027-03-14 14:00")
    expect(anomaly).to_contain_text("Error rate")
    expect(page.get_by_text("Globex")).to_have_count(0)

    chart = page.evaluate(CHART)
    assert chart["width"] > 0 and chart["height"] > 0
    assert len(chart["labels"]) == 24 and chart["labels"][14] == "2027-03-14 14:00"
    assert chart["rates"][14] == 50  # percent
    red = [i for i, colour in enumerate(chart["colours"]) if colour == "#c92a2a"]
    assert red == [14], "only the flagged hour is drawn as flagged"
    assert "#c92a2a" not in chart["requestColours"], "traffic was not flagged"
    page.locator("#anomalies").scroll_into_view_if_needed()
    screenshot(page, "trend-report-with-anomaly")

    with page.expect_download() as download:
        page.locator("#csv").click()
    assert download.value.suggested_filename == f"trend-report-{report.pk}-daily-20270314.csv"
    assert errors == []
