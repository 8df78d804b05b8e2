"""The log explorer: a tenant lists, opens and exports its own calls only (another tenant's
call by request id is a 404), staff see everyone's, filters narrow, pages follow a keyset
cursor, the CSV cannot carry a spreadsheet formula, and hostile parameters are form errors."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from analytics import explorer
from portal.services.errors import InvalidInput, NotFound
from tests.analytics.factories import call, store

pytestmark = pytest.mark.django_db


@pytest.fixture
def now() -> datetime:
    return timezone.now()


@pytest.fixture
def calls(acme, globex, app, globex_app, now):
    rows = [
        call(
            now - timedelta(minutes=1),
            request_id="acme-ai",
            tenant_id=acme.pk,
            application_id=app.pk,
            key_prefix="pk_acme1",
            model="gpt-mini",
            tokens_in=12,
            tokens_out=30,
            prompt_capture="What is the weather in Paris?",
            response_capture="Sunny, 21 C.",
        ),
        call(
            now - timedelta(minutes=2),
            request_id="acme-404",
            status=404,
            error_code="route_not_found",
            tenant_id=acme.pk,
            application_id=app.pk,
            key_prefix="pk_acme1",
            api_id=2,
        ),
        call(
            now - timedelta(minutes=3),
            request_id="acme-502",
            status=502,
            error_code="upstream_error",
            tenant_id=acme.pk,
            application_id=app.pk,
            key_prefix="pk_acme2",
        ),
        call(
            now - timedelta(minutes=4),
            request_id="globex-1",
            tenant_id=globex.pk,
            application_id=globex_app.pk,
            key_prefix="pk_globx",
            model="gpt-mini",
            prompt_capture="Globex secret plans",
        ),
        call(now - timedelta(days=3), request_id="acme-old", tenant_id=acme.pk, application_id=app.pk),
    ]
    return store(rows)


def get(client, user, url: str, **params: str):
    client.force_login(user)
    return client.get(url, params)


def ids(response) -> list[str]:
    return [c.request_id for c in response.context["page"].calls]


def test_a_tenant_lists_only_its_own_calls(client, calls, alice, vera, charlie):
    for member in (alice, vera):
        assert ids(get(client, member, "/usage/calls/")) == ["acme-ai", "acme-404", "acme-502"]
    response = get(client, charlie, "/usage/calls/")
    assert ids(response) == ["globex-1"]
    assert b"acme-" not in response.content


def test_another_tenants_call_by_request_id_is_a_404(client, calls, charlie, alice, acme, globex):
    assert get(client, charlie, "/usage/calls/acme-ai/").status_code == 404
    assert get(client, charlie, "/usage/calls/no-such-call/").status_code == 404
    assert get(client, charlie, "/staff/calls/acme-ai/").status_code == 404
    assert get(client, alice, "/usage/calls/globex-1/").status_code == 404
    for scope in (acme, globex, None):
        with pytest.raises(NotFound):
            explorer.get_call(charlie, scope, "acme-ai")


def test_a_member_opens_an_ai_call_with_its_captured_prompt_and_response(client, calls, alice):
    response = get(client, alice, "/usage/calls/acme-ai/", tz="Europe/Paris")
    assert response.status_code == 200
    html = response.content.decode()
    assert "What is the weather in Paris?" in html and "Sunny, 21 C." in html
    assert "pk_acme1" in html and "gpt-mini" in html
    local = calls[0].time.astimezone(ZoneInfo("Europe/Paris"))
    assert f"{local:%Y-%m-%d %H:%M:%S} (Europe/Paris)" in html


def test_staff_see_every_call_but_not_the_captures_of_a_tenant_they_are_not_in(client, calls, staff):
    assert ids(get(client, staff, "/staff/calls/")) == ["acme-ai", "acme-404", "acme-502", "globex-1"]
    response = get(client, staff, "/staff/calls/acme-ai/")
    assert response.status_code == 200
    assert "What is the weather" not in response.content.decode()
    assert "shown to the call's tenant only" in response.content.decode()


def test_the_staff_explorer_is_a_404_for_tenants(client, calls, alice):
    for url in ("/staff/calls/", "/staff/calls/acme-ai/", "/staff/calls/export.csv"):
        assert get(client, alice, url).status_code == 404


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"status": "404"}, ["acme-404"]),
        ({"status": "5xx"}, ["acme-502"]),
        ({"key_prefix": "pk_acme2"}, ["acme-502"]),
        ({"error_code": "route_not_found"}, ["acme-404"]),
        ({"model": "gpt-mini"}, ["acme-ai"]),
        ({"api": "2"}, ["acme-404"]),
        ({"range": "week"}, ["acme-ai", "acme-404", "acme-502", "acme-old"]),
        ({"range": "hour", "status": "2xx"}, ["acme-ai"]),
    ],
)
def test_filters_narrow_the_calls(client, calls, alice, params, expected):
    assert ids(get(client, alice, "/usage/calls/", **params)) == expected


def test_the_application_filter_cannot_reach_another_tenants_application(client, calls, charlie, app):
    assert ids(get(client, charlie, "/usage/calls/", application=str(app.pk))) == []


def test_pages_follow_a_keyset_cursor_without_gaps_or_repeats(alice, acme, app, now):
    same_time = now - timedelta(minutes=5)
    store([call(same_time, request_id=f"bulk-{i:03d}", tenant_id=acme.pk, application_id=app.pk) for i in range(120)])
    filters = explorer.parse_filter({"range": "day"}, now=now)
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = explorer.list_calls(alice, acme, filters, after=after, size=50)
        seen += [c.request_id for c in page.calls]
        pages += 1
        if page.next_cursor is None:
            break
        after = page.next_cursor
    assert pages == 3
    assert sorted(seen) == [f"bulk-{i:03d}" for i in range(120)]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": "abc"}, "A status is a code from 100 to 599"),
        ({"status": "999"}, "A status is a code from 100 to 599"),
        ({"api": "1e999"}, "The API must be a number."),
        ({"application": "99999999999999999999999"}, "The application must be a number."),
        ({"key_prefix": "x" * 200}, "The key prefix is at most 16 characters."),
        ({"after": "not-a-cursor!!"}, "That page link is broken"),
        ({"tz": "Nowhere/Land"}, "Unknown time zone."),
    ],
)
def test_hostile_parameters_are_form_errors(client, calls, alice, params, message):
    response = get(client, alice, "/usage/calls/", **params)
    assert response.status_code == 400
    assert message in response.content.decode()
    export = get(client, alice, "/usage/calls/export.csv", **params)
    if "after" not in params:  # an export has no pages
        assert export.status_code == 400


def read_csv(response) -> list[list[str]]:
    assert response["Content-Type"].startswith("text/csv")
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


def test_an_export_holds_the_tenants_own_calls_only(client, calls, alice, charlie):
    rows = read_csv(get(client, alice, "/usage/calls/export.csv"))
    header, body = rows[0], rows[1:]
    assert [r[header.index("request_id")] for r in body] == ["acme-ai", "acme-404", "acme-502"]
    assert "prompt_capture" not in header and "tenant_id" not in header
    rows = read_csv(get(client, charlie, "/usage/calls/export.csv"))
    assert [r[1] for r in rows[1:]] == ["globex-1"]


def test_a_staff_export_names_each_calls_tenant(client, calls, staff, acme, globex):
    rows = read_csv(get(client, staff, "/staff/calls/export.csv"))
    header = rows[0]
    assert {r[header.index("tenant_id")] for r in rows[1:]} == {str(acme.pk), str(globex.pk)}


def test_an_export_cannot_carry_a_spreadsheet_formula(client, alice, acme, app, now):
    store(
        [
            call(
                now - timedelta(minutes=1),
                request_id="evil",
                path='=HYPERLINK("http://evil.example","x")',
                client_request_id="@SUM(A1:A9)",
                error_code="+cmd|' /C calc'!A0",
                key_prefix="-2+3",
                tenant_id=acme.pk,
                application_id=app.pk,
            )
        ]
    )
    rows = read_csv(get(client, alice, "/usage/calls/export.csv"))
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["path"] == '\'=HYPERLINK("http://evil.example","x")'
    assert row["client_request_id"] == "'@SUM(A1:A9)"
    assert row["error_code"] == "'+cmd|' /C calc'!A0"
    assert row["key_prefix"] == "'-2+3"
    assert row["status"] == "200"


def test_an_export_is_cut_at_its_cap_and_says_so(alice, acme, app, now):
    store([call(now - timedelta(seconds=i + 1), tenant_id=acme.pk, application_id=app.pk) for i in range(12)])
    filters = explorer.parse_filter({"range": "hour"}, now=now)
    rows = list(csv.reader(io.StringIO("".join(explorer.export_csv(alice, acme, filters, limit=5)))))
    assert len(rows) == 1 + 5 + 1
    assert rows[-1][0].startswith("# cut at 5 rows")


def test_a_refused_export_raises_before_streaming(charlie, acme, now):
    with pytest.raises(NotFound):
        explorer.export_csv(charlie, acme, explorer.parse_filter({}, now=now))
    with pytest.raises(InvalidInput):
        explorer.parse_filter({"status": "-1"}, now=now)


def test_keyset_pages_and_isolation_hold_on_each_backend(backend, alice, charlie, acme, globex, now):
    db = backend.alias
    same_time = now - timedelta(minutes=5)
    rows = [call(same_time, request_id=f"pg-{i:03d}", tenant_id=acme.pk) for i in range(75)]
    rows.append(call(same_time, request_id="pg-globex", tenant_id=globex.pk))
    store(rows, using=db)
    filters = explorer.parse_filter({"range": "day"}, now=now)
    first = explorer.list_calls(alice, acme, filters, size=50, using=db)
    second = explorer.list_calls(alice, acme, filters, after=first.next_cursor, size=50, using=db)
    seen = [c.request_id for c in first.calls + second.calls]
    assert sorted(seen) == [f"pg-{i:03d}" for i in range(75)] and second.next_cursor is None
    with pytest.raises(NotFound):
        explorer.get_call(charlie, globex, "pg-001", using=db)
    assert explorer.get_call(charlie, globex, "pg-globex", using=db)["call"].tenant_id == globex.pk


def test_the_version_filter_narrows_the_calls(client, alice, acme, app, now):
    store(
        [
            call(now - timedelta(minutes=1), request_id="v2-call", version_id=22, tenant_id=acme.pk),
            call(now - timedelta(minutes=2), request_id="v1-call", version_id=11, tenant_id=acme.pk),
        ]
    )
    assert ids(get(client, alice, "/usage/calls/", version="22")) == ["v2-call"]
