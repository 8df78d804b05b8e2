from celery import shared_task

from analytics import reports, retention, rollups, services
from analytics.ingest import CLAIM_IDLE_MS
from analytics.ingest import ingest_call_logs as ingest
from portal.models import Tenant

# Beat starts ingestion every 5 s (settings.CELERY_BEAT_SCHEDULE); a run stops reading after
# this long, so runs rarely overlap, and a backlog is carried on by the next run. Overlapping
# runs are harmless: they are consumers of one group and share the entries.
INGEST_MAX_SECONDS = 4.0


@shared_task(name="analytics.ingest_call_logs", ignore_result=True)
def ingest_call_logs(max_seconds: float = INGEST_MAX_SECONDS, claim_idle_ms: int = CLAIM_IDLE_MS) -> int:
    return ingest(max_seconds=max_seconds, claim_idle_ms=claim_idle_ms)


@shared_task(name="analytics.roll_up_minutes", ignore_result=True)
def roll_up_minutes() -> int:
    return rollups.roll_up_minutes()


@shared_task(name="analytics.roll_up_hours", ignore_result=True)
def roll_up_hours() -> int:
    return rollups.roll_up_hours()


@shared_task(name="analytics.roll_up_days", ignore_result=True)
def roll_up_days() -> int:
    return rollups.roll_up_days()


@shared_task(name="analytics.enforce_retention", ignore_result=True)
def enforce_retention() -> dict[str, int]:
    return retention.enforce_retention()


@shared_task(name="analytics.send_trend_reports", ignore_result=True)
def send_trend_reports(kind: str = "daily") -> int:
    return len(reports.send_trend_reports(kind))


@shared_task(name="analytics.create_trend_report", ignore_result=True)
def create_trend_report(
    kind: str = "daily", tenant_id: int | None = None, requested_by_id: int | None = None
) -> int | None:
    """An on-demand report; returns its id. From the portal's button (``requested_by_id``,
    through ``services.queue_trend_report``): a recent one is reused, and None means the
    tenant is gone. Otherwise (``manage.py create_trend_report``, scripts): always a new one."""
    if requested_by_id is not None:
        report = services.make_requested_report(kind, tenant_id, requested_by_id)
        return report.pk if report else None
    tenant = Tenant.objects.get(pk=tenant_id) if tenant_id is not None else None
    return reports.create_trend_report(kind, tenant=tenant, on_demand=True).pk


@shared_task(name="analytics.evaluate_alerts", ignore_result=True)
def evaluate_alerts() -> int:
    """Beat runs this every minute: opens and resolves alert events; returns how many changed."""
    from analytics import alerts

    return len(alerts.evaluate_alerts())


@shared_task(name="analytics.deliver_webhooks", ignore_result=True)
def deliver_webhooks() -> dict[str, int]:
    """Beat runs this every 30 s: sends the alert webhooks that are due (with backoff)."""
    from analytics import webhooks

    return webhooks.deliver_webhooks()
