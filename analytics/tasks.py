from celery import shared_task

from analytics.ingest import ingest_call_logs as ingest


@shared_task(name="analytics.ingest_call_logs", ignore_result=True)
def ingest_call_logs() -> int:
    return ingest()
