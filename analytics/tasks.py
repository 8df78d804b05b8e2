from celery import shared_task

from analytics import retention, rollups
from analytics.ingest import ingest_call_logs as ingest


@shared_task(name="analytics.ingest_call_logs", ignore_result=True)
def ingest_call_logs() -> int:
    return ingest()


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
