"""Who may read and request trend reports: what portal views, the API and commands call.

A tenant's reports are for its members (any role) and Portico staff; the platform's reports
are for staff only. Anyone else gets NotFound, never a hint that the report exists.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

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


def request_trend_report(actor: Any, *, tenant: Tenant | None, kind: str) -> TrendReport:
    """An on-demand report of the last day or week (complete hours) for ``tenant`` (None:
    the platform, staff only), made now (a few queries on the hour rollups) or, when the same
    one was made in the last five minutes, that one."""
    if kind not in ReportKind.values:
        raise InvalidInput(f"A report is one of: {', '.join(ReportKind.values)}.")
    _require_reader(actor, tenant)
    recent = (
        TrendReport.objects.filter(
            kind=kind, on_demand=True, created_at__gte=timezone.now() - ON_DEMAND_REUSE, **_scope(tenant)
        )
        .order_by("-created_at")
        .first()
    )
    if recent is not None:
        return recent
    return create_trend_report(
        kind, tenant=tenant, on_demand=True, requested_by=actor if getattr(actor, "pk", None) else None
    )


def _scope(tenant: Tenant | None) -> dict[str, Any]:
    return {"tenant": tenant} if tenant else {"tenant__isnull": True}
