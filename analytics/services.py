"""Who may read and request trend reports: what portal views, the API and commands call.

A tenant's reports are for its members (any role) and Portico staff; the platform's reports
are for staff only. Anyone else gets NotFound, never a hint that the report exists.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from analytics.models import ReportKind, TrendReport
from analytics.reports import create_trend_report
from portal.models import Role, Tenant
from portal.services.access import require_role
from portal.services.errors import InvalidInput, NotFound

# An on-demand report asked for again within this time is the one already made: a member
# clicking "generate" in a loop costs one report, not one per click.
ON_DEMAND_REUSE = timedelta(minutes=5)
# How long a queued request holds back another of the same scope and kind (the task usually
# runs within seconds; should the worker be down, the button works again after this).
QUEUED_HOLD_SECONDS = 60


def _is_staff(actor: Any) -> bool:
    return bool(getattr(actor, "is_authenticated", False) and actor.is_staff)


def _require_reader(actor: Any, tenant: Tenant | None) -> None:
    if _is_staff(actor):
        return
    if tenant is None:
        raise NotFound("No such object.")
    require_role(actor, tenant, Role.VIEWER)


def reports_for(actor: Any, tenant: Tenant | None) -> QuerySet[TrendReport]:
    """The reports of ``tenant`` (None: the platform's), newest period first, if ``actor``
    may read them; NotFound otherwise."""
    _require_reader(actor, tenant)
    return (
        TrendReport.objects.filter(**_scope(tenant)).select_related("tenant").order_by("-period_start", "-created_at")
    )


def get_report(actor: Any, report_id: int | str) -> TrendReport:
    """One report by id, if ``actor`` may read it; NotFound otherwise (also for a bad id)."""
    try:
        report = TrendReport.objects.select_related("tenant").get(pk=int(report_id))
    except (TrendReport.DoesNotExist, ValueError, TypeError, OverflowError):
        raise NotFound("No such object.") from None
    _require_reader(actor, report.tenant)
    return report


def _check_request(actor: Any, tenant: Tenant | None, kind: str) -> None:
    if kind not in ReportKind.values:
        raise InvalidInput(f"A report is one of: {', '.join(ReportKind.values)}.")
    _require_reader(actor, tenant)


def recent_on_demand_report(tenant: Tenant | None, kind: str) -> TrendReport | None:
    """The on-demand report of this kind and scope made in the last ``ON_DEMAND_REUSE``."""
    return (
        TrendReport.objects.filter(
            kind=kind, on_demand=True, created_at__gte=timezone.now() - ON_DEMAND_REUSE, **_scope(tenant)
        )
        .order_by("-created_at")
        .first()
    )


def request_trend_report(actor: Any, *, tenant: Tenant | None, kind: str) -> TrendReport:
    """An on-demand report of the last day or week (complete hours) for ``tenant`` (None:
    the platform, staff only), made now (a few queries on the hour rollups) or, when the same
    one was made in the last five minutes, that one."""
    _check_request(actor, tenant, kind)
    recent = recent_on_demand_report(tenant, kind)
    if recent is not None:
        return recent
    return create_trend_report(
        kind, tenant=tenant, on_demand=True, requested_by=actor if getattr(actor, "pk", None) else None
    )


def queue_trend_report(actor: Any, *, tenant: Tenant | None, kind: str) -> TrendReport | None:
    """What the portal's "make a report now" button does: the same checks and reuse as
    ``request_trend_report``, but the report is made by a Celery worker (a weekly platform
    report reads a week of rollups: not work for a web request). Returns the recent report
    when there is one, else None once the task is queued (after commit). While one is queued
    for this scope and kind, asking again queues nothing: a button clicked in a loop costs one
    task a minute, not one per click."""
    _check_request(actor, tenant, kind)
    recent = recent_on_demand_report(tenant, kind)
    if recent is not None:
        return recent
    scope = tenant.pk if tenant else "platform"
    if cache.add(f"trend-report-queued:{scope}:{kind}", 1, timeout=QUEUED_HOLD_SECONDS):
        from analytics import tasks  # imports this module: here, not at the top

        requested_by = actor.pk if getattr(actor, "pk", None) else None
        transaction.on_commit(
            lambda: tasks.create_trend_report.delay(
                kind=kind, tenant_id=tenant.pk if tenant else None, requested_by_id=requested_by
            )
        )
    return None


def make_requested_report(kind: str, tenant_id: int | None, requested_by_id: int | None) -> TrendReport | None:
    """The Celery side of ``queue_trend_report``: made unless one was made meanwhile (two
    tasks queued around the end of the hold make one report). None when the tenant is gone."""
    tenant = None
    if tenant_id is not None:
        tenant = Tenant.objects.filter(pk=tenant_id).first()
        if tenant is None:
            return None
    recent = recent_on_demand_report(tenant, kind)
    if recent is not None:
        return recent
    requested_by = get_user_model().objects.filter(pk=requested_by_id).first() if requested_by_id else None
    return create_trend_report(kind, tenant=tenant, on_demand=True, requested_by=requested_by)


def _scope(tenant: Tenant | None) -> dict[str, Any]:
    return {"tenant": tenant} if tenant else {"tenant__isnull": True}
