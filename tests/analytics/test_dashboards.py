"""The tenant usage page and the staff platform dashboard: each tenant sees its own figures
only, staff see the platform's, percentiles come from the rollups' merged histograms, the
range picker chooses the finest tier that covers the range, and times are in the viewer's
zone. Rows are stored directly and rolled up by the real rollup runs."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from analytics import dashboards
from analytics.models import Granularity
from analytics.rollups import roll_up_all
from portal.services.errors import InvalidInput, NotFound
from tests.analytics.factories import call, store

pytestmark = pytest.mark.django_db


@pytest.fixture
def now() -> datetime:
    return timezone.now().replace(second=30, microsecond=0)


@pytest.fixture
def traffic(acme, globex, app, globex_app, now):
    """Acme: 40 calls in the last hour (4 of them 500s, 2 of them 404s, 10 AI calls); Globex: 7."""
    rows = []
    for i in range(40):
        status = 500 if i < 4 else 404 if i < 6 else 200
        ai = {"model": "gpt-mini", "tokens_in": 100, "tokens_out": 50, "cost": "0.001"} if i >= 30 else {}
        rows.append(
            call(
                now - timedelta(minutes=i % 50),
                latency_ms=float(5 + i * 3),
                status=status,
                tenant_id=acme.pk,
                application_id=app.pk,
                **ai,
            )
        )
    for i in range(7):
        rows.append(call(now - timedelta(minutes=i), status=503, tenant_id=globex.pk, application_id=globex_app.pk))
    store(rows)
    roll_up_all(now=now)
    return rows


def page(client, user, url: str, **params: str):
    client.force_login(user)
    return client.get(url, params)


def test_a_member_of_any_role_sees_only_their_own_tenants_usage(client, traffic, alice, vera, charlie):
    for member in (alice, vera):
        response = page(client, member, "/usage/", range="day")
        assert response.status_code == 200
        totals = response.context["data"]["totals"]
        assert (totals["requests"], totals["errors_5xx"], totals["errors_4xx"]) == (40, 4, 2)
        assert totals["tokens"] == 10 * 150
        assert totals["cost"] == pytest.approx(0.01)
        assert [row["name"] for row in response.context["data"]["top_applications"]] == ["Acme App"]
        assert b"Globex" not in response.content

    response = page(client, charlie, "/usage/", range="day")
    totals = response.context["data"]["totals"]
    assert (totals["requests"], totals["errors_5xx"], totals["tokens"]) == (7, 7, 0)
    assert [row["name"] for row in response.context["data"]["top_applications"]] == ["Globex App"]
    assert response.context["data"]["top_models"] == []
    assert b"Acme App" not in response.content


def test_the_usage_page_draws_its_series_from_json_and_the_vendored_chart_library(client, traffic, alice):
    response = page(client, alice, "/usage/", range="hour")
    html = response.content.decode()
    assert 'id="series-data" type="application/json"' in html
    assert "/static/vendor/chartjs/chart.umd.js" in html
    assert "cdn" not in html.lower()
    series = response.context["data"]["series"]
    assert sum(point["requests"] for point in series) == 40
    assert response.context["data"]["status_mix"] == {"2xx": 34, "4xx": 2, "5xx": 4}


def test_the_platform_dashboard_is_for_staff_only(client, traffic, staff, alice, charlie):
    for outsider in (alice, charlie):
        assert page(client, outsider, "/staff/analytics/").status_code == 404
    response = page(client, staff, "/staff/analytics/", range="day")
    assert response.status_code == 200
    assert response.context["data"]["totals"]["requests"] == 47
    names = {row["name"] for row in response.context["data"]["top_applications"]}
    assert names == {"Acme App", "Globex App"}


def test_the_service_refuses_outsiders_whatever_the_view_does(traffic, acme, charlie, alice, now):
    window = dashboards.parse_window({"range": "day"}, now=now)
    with pytest.raises(NotFound):
        dashboards.dashboard(charlie, acme, window, now=now)
    with pytest.raises(NotFound):
        dashboards.dashboard(alice, None, window, now=now)


def test_someone_in_no_tenant_gets_a_404_not_the_platforms_figures(client, traffic, staff):
    assert page(client, staff, "/usage/").status_code == 404


def test_percentiles_are_read_from_merged_histograms_within_one_bucket(traffic, alice, acme, now):
    window = dashboards.parse_window({"range": "week"}, now=now)  # the hour tier: merged minutes
    data = dashboards.dashboard(alice, acme, window, now=now)
    assert data["tier"] == Granularity.HOUR
    latencies = sorted(row.latency_ms for row in traffic if row.tenant_id == acme.pk)
    for p in (50, 95, 99):
        exact = latencies[max(1, math.ceil(p / 100 * len(latencies))) - 1]
        assert data["totals"][f"p{p}_ms"] == pytest.approx(exact, rel=0.1)


@pytest.mark.parametrize(
    ("params", "tier"),
    [
        ({"range": "hour"}, Granularity.MINUTE),
        ({"range": "day"}, Granularity.MINUTE),
        ({"range": "week"}, Granularity.HOUR),
        ({"range": "month"}, Granularity.HOUR),
        # A day's worth of minutes from 10 days ago: minute rollups are kept 7 days.
        ({"range": "custom", "start": "-10d", "end": "-9d"}, Granularity.HOUR),
        ({"range": "custom", "start": "-200d", "end": "-1d"}, Granularity.DAY),
    ],
)
def test_the_range_picker_chooses_the_finest_tier_covering_the_range(client, alice, acme, now, params, tier):
    for name in ("start", "end"):
        if name in params:
            days = int(params[name][1:-1])
            params[name] = (now - timedelta(days=days)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
    window = dashboards.parse_window(params, now=now)
    assert dashboards.pick_tier(window.start, window.end, now=now) == tier
    response = page(client, alice, "/usage/", **params)
    assert response.status_code == 200
    assert response.context["data"]["tier"] == tier


def test_times_are_shown_in_the_viewers_zone(client, alice, acme, app, now):
    at = (now - timedelta(days=2)).replace(hour=12, minute=0, second=0)
    store([call(at + timedelta(seconds=5), tenant_id=acme.pk, application_id=app.pk)])
    roll_up_all(now=now)
    day = f"{at:%Y-%m-%d}"
    params = {"range": "custom", "start": f"{day}T17:00", "end": f"{day}T18:00", "tz": "Asia/Kolkata"}
    response = page(client, alice, "/usage/", **params)
    assert response.status_code == 200
    data = response.context["data"]
    assert data["tier"] == Granularity.MINUTE
    # 17:30 in Kolkata (UTC+5:30) is 12:00 UTC: the minute holding the call, labelled locally.
    assert [point["t"] for point in data["series"] if point["requests"]] == [f"{day}T17:30:00+05:30"]
    assert len(data["series"]) == 60  # every minute of the hour, empty ones as 0
    assert data["series"][0]["t"] == f"{day}T17:00:00+05:30"
    assert f"{day} 17:00 to {day} 18:00 (Asia/Kolkata)" in response.content.decode()

    utc = page(client, alice, "/usage/", **{**params, "tz": "UTC"})
    assert sum(point["requests"] for point in utc.context["data"]["series"]) == 0  # 17:00-18:00 UTC: no call


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"range": "year"}, "A range is one of"),
        ({"tz": "Mars/Olympus_Mons"}, "Unknown time zone."),
        ({"tz": "../../etc/passwd"}, "Unknown time zone."),
        ({"range": "custom"}, "A custom range needs a start and an end."),
        ({"range": "custom", "start": "yesterday", "end": "2026-01-01T00:00"}, "The start is not a date"),
        ({"range": "custom", "start": "2026-01-02T00:00", "end": "2026-01-01T00:00"}, "The end must be after"),
        ({"range": "custom", "start": "2000-01-01T00:00", "end": "2026-01-01T00:00"}, "at most 400 days"),
    ],
)
def test_a_bad_range_is_a_form_error_not_a_500(client, alice, acme, params, message):
    response = page(client, alice, "/usage/", **params)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert response.context["data"] is None


def test_parse_window_keeps_an_explicit_offset(now):
    window = dashboards.parse_window(
        {"range": "custom", "start": "2026-01-01T00:00+02:00", "end": "2026-01-01T01:00", "tz": "UTC"}, now=now
    )
    assert window.start == datetime(2025, 12, 31, 22, 0, tzinfo=UTC)
    with pytest.raises(InvalidInput):
        dashboards.zone("x" * 100)


def test_cost_stays_unknown_rather_than_zero_when_no_call_had_a_price(client, charlie, globex, traffic):
    response = page(client, charlie, "/usage/", range="day")
    assert response.context["data"]["totals"]["cost"] is None
    assert 'Cost</span><strong id="total-cost">–' in response.content.decode()


def test_a_tenants_figures_and_isolation_hold_on_each_backend(backend, acme, globex, alice, charlie, now):
    db = backend.alias
    rows = [call(now - timedelta(minutes=i), latency_ms=float(10 + i), tenant_id=acme.pk) for i in range(30)]
    rows += [call(now - timedelta(minutes=i), status=500, tenant_id=globex.pk) for i in range(3)]
    store(rows, using=db)
    roll_up_all(now=now, using=db)
    for params, tier in (({"range": "hour"}, Granularity.MINUTE), ({"range": "week"}, Granularity.HOUR)):
        window = dashboards.parse_window(params, now=now)
        data = dashboards.dashboard(alice, acme, window, now=now, using=db)
        assert data["tier"] == tier
        assert (data["totals"]["requests"], data["totals"]["errors"]) == (30, 0)
        assert data["totals"]["p50_ms"] == pytest.approx(25.0, rel=0.1)
        other = dashboards.dashboard(charlie, globex, window, now=now, using=db)
        assert (other["totals"]["requests"], other["status_mix"]) == (3, {"5xx": 3})


def test_a_dashboard_reads_the_rollups_never_the_raw_calls(client, traffic, alice, staff):
    for user, url in ((alice, "/usage/"), (staff, "/staff/analytics/")):
        client.force_login(user)
        for preset in dashboards.RANGES[:-1]:
            with CaptureQueriesContext(connection) as queries:
                assert client.get(url, {"range": preset}).status_code == 200
            sql = [q["sql"] for q in queries.captured_queries]
            assert any("analytics_rollup" in s for s in sql)
            assert not any("analytics_calllog" in s for s in sql), preset


def test_a_member_drills_down_to_one_model_or_application(client, traffic, alice, app):
    response = page(client, alice, "/usage/", range="day", model="gpt-mini")
    data = response.context["data"]
    assert (data["totals"]["requests"], data["totals"]["errors"]) == (10, 0)
    assert data["drill"] == {"model": "gpt-mini"}
    assert [row["name"] for row in data["top_models"]] == ["gpt-mini"]
    html = response.content.decode()
    assert 'id="drill"' in html and "Show everything" in html

    data = page(client, alice, "/usage/", range="day", application=str(app.pk)).context["data"]
    assert data["totals"]["requests"] == 40
    assert data["drill"] == {"application_id": "Acme App"}


def test_drilling_into_another_tenants_application_shows_nothing_of_it(client, traffic, charlie, app):
    response = page(client, charlie, "/usage/", range="day", application=str(app.pk))
    data = response.context["data"]
    assert data["totals"]["requests"] == 0
    assert data["drill"] == {"application_id": f"#{app.pk}"}
    assert b"Acme" not in response.content


@pytest.mark.parametrize("params", [{"api": "x"}, {"version": "-1"}, {"application": "9" * 30}, {"model": "m" * 101}])
def test_a_bad_drill_down_is_a_form_error(client, alice, acme, params):
    response = page(client, alice, "/usage/", **params)
    assert response.status_code == 400
    assert response.context["error"]
