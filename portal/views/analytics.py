"""Usage pages and the log explorer: a tenant's own (``/usage/...``, the current tenant) and
the platform's (``/staff/...``, staff only). Thin: who may see what, and every query, are
``analytics.dashboards``' and ``analytics.explorer``'s; a bad query parameter is a form error
(400) on the page (``form_errors`` on the query string's form), and anything out of scope a
404 (``service_errors``: NotFound)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone

from analytics import dashboards, explorer
from portal.models import Api, Application, Tenant
from portal.services.catalog import visible_apis
from portal.services.errors import InvalidInput
from portal.views.context import current_tenant
from portal.views.service_errors import form_errors, service_errors


def _tenant(request: HttpRequest) -> Tenant:
    tenant = current_tenant(request)
    if tenant is None:
        raise Http404("You belong to no tenant.")
    return tenant


def _staff(request: HttpRequest) -> None:
    if not dashboards.is_staff(request.user):
        raise Http404("No such page.")


def _query(request: HttpRequest) -> forms.Form:
    """The query string as a form: what the services refuse in it (InvalidInput) becomes its error."""
    return forms.Form(request.GET)


def _error(form: forms.Form) -> str | None:
    return " ".join(form.non_field_errors()) or None


def _picker(request: HttpRequest) -> dict[str, Any]:
    """The time-range picker's values, as the viewer sent them."""
    return {
        "range": request.GET.get("range") or "",
        "start": request.GET.get("start", "")[:40],
        "end": request.GET.get("end", "")[:40],
        "tz": request.GET.get("tz", "")[:64],
        "ranges": dashboards.RANGES,
        "zones": dashboards.zone_choices(),
    }


def _render(
    request: HttpRequest, template: str, context: dict[str, Any], status: int, tz: ZoneInfo | None = None
) -> HttpResponse:
    """The page with every time in the viewer's zone (the window's, when it parsed)."""
    window = context.get("window")
    zone = tz or (window.tz if window is not None else dashboards.zone(None))
    with timezone.override(zone):
        return render(request, template, context, status=status)


def _without(request: HttpRequest, *names: str) -> str:
    query = request.GET.copy()
    for name in names:
        query.pop(name, None)
    return query.urlencode()


def _dashboard(request: HttpRequest, tenant: Tenant | None) -> HttpResponse:
    context: dict[str, Any] = {"scope": tenant, "picker": _picker(request), "data": None}
    query = _query(request)
    with form_errors(query, catch=InvalidInput) as outcome:
        window = dashboards.parse_window(request.GET, default="day")
        drill = dashboards.parse_drill(request.GET)
        context["data"] = dashboards.dashboard(request.user, tenant, window, drill=drill)
        context["tz"] = window.tz.key
        context["window"] = window
    context["error"] = _error(query)
    status = 200 if outcome.ok else 400
    context["calls_url"] = "usage_calls" if tenant is not None else "staff_calls"
    context["query"] = request.GET.urlencode()
    # Per top list, the page's query without that list's own filter: a row's link sets it.
    context["without"] = {name: _without(request, name) for name in ("api", "version", "application", "model")}
    context["undrilled"] = _without(request, "api", "version", "application", "model")
    return _render(request, "portal/analytics/dashboard.html", context, status)


@login_required
@service_errors()
def usage(request: HttpRequest) -> HttpResponse:
    return _dashboard(request, _tenant(request))


@login_required
@service_errors()
def staff_dashboard(request: HttpRequest) -> HttpResponse:
    _staff(request)
    return _dashboard(request, None)


def _choices(tenant: Tenant | None) -> dict[str, Any]:
    apps = Application.objects.all() if tenant is None else Application.objects.filter(tenant=tenant)
    apis = Api.objects.all() if tenant is None else visible_apis(tenant)
    return {
        "apis": apis.order_by("name").values_list("pk", "name"),
        "applications": apps.order_by("name").values_list("pk", "name"),
    }


def _explorer(request: HttpRequest, tenant: Tenant | None) -> HttpResponse:
    prefix = "usage" if tenant is not None else "staff"
    context: dict[str, Any] = {
        "scope": tenant,
        "picker": _picker(request),
        "params": request.GET,
        "page": None,
        "prefix": prefix,
        **_choices(tenant),
    }
    form = _query(request)
    with form_errors(form, catch=InvalidInput) as outcome:
        filters = explorer.parse_filter(request.GET)
        context["page"] = explorer.list_calls(request.user, tenant, filters, after=request.GET.get("after") or None)
        context["tz"] = filters.window.tz
        context["window"] = filters.window
    context["error"] = _error(form)
    status = 200 if outcome.ok else 400
    query = request.GET.copy()
    query.pop("after", None)
    context["query"] = query.urlencode()
    return _render(request, "portal/analytics/calls.html", context, status)


@login_required
@service_errors()
def usage_calls(request: HttpRequest) -> HttpResponse:
    return _explorer(request, _tenant(request))


@login_required
@service_errors()
def staff_calls(request: HttpRequest) -> HttpResponse:
    _staff(request)
    return _explorer(request, None)


def _call(request: HttpRequest, tenant: Tenant | None, request_id: str) -> HttpResponse:
    tz = dashboards.zone_or_utc(request.GET.get("tz"))
    found = explorer.get_call(request.user, tenant, request_id)  # NotFound: a 404 (service_errors)
    call = found["call"]
    fields = [
        (f.verbose_name, getattr(call, f.name))
        for f in call._meta.concrete_fields
        if f.name not in ("id", "prompt_capture", "response_capture")
    ]
    context = {
        "call": call,
        "fields": fields,
        "tz": tz.key,
        "captures_visible": found["captures_visible"],
        "prefix": "usage" if tenant is not None else "staff",
    }
    return _render(request, "portal/analytics/call.html", context, 200, tz)


@login_required
@service_errors()
def usage_call(request: HttpRequest, request_id: str) -> HttpResponse:
    return _call(request, _tenant(request), request_id)


@login_required
@service_errors()
def staff_call(request: HttpRequest, request_id: str) -> HttpResponse:
    _staff(request)
    return _call(request, None, request_id)


def _export(request: HttpRequest, tenant: Tenant | None) -> HttpResponse:
    with form_errors(_query(request), catch=InvalidInput) as outcome:
        filters = explorer.parse_filter(request.GET)
        lines = explorer.export_csv(request.user, tenant, filters)
    if not outcome.ok:
        return _explorer(request, tenant)  # the same form error, on the page
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    name = f"calls-{timezone.now():%Y%m%d-%H%M%S}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


@login_required
@service_errors()
def usage_export(request: HttpRequest) -> HttpResponse:
    return _export(request, _tenant(request))


@login_required
@service_errors()
def staff_export(request: HttpRequest) -> HttpResponse:
    _staff(request)
    return _export(request, None)
