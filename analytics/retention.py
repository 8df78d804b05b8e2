"""Retention in tiers: raw calls, then minute, hour and day rollups, each kept for its own
number of days (``PORTICO_RETENTION_*``; 0 keeps a tier forever).

Run daily by Celery beat (``analytics.enforce_retention``) or by ``manage.py
enforce_retention``. What is past its tier:

- a call whose ``time`` is older than ``now - days``;
- a rollup bucket that lies wholly before ``now - days`` (its end, ``bucket_start`` plus its
  width, is at or before the cutoff): a bucket that still overlaps the tier is kept.

Rows go in batches of ids (``BATCH``), each its own short statement, so a large backlog never
holds one long lock against the ingester or the rollup runs.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS
from django.db.models import Model, QuerySet
from django.utils import timezone

from analytics.models import CallLog, Granularity, Rollup

log = logging.getLogger(__name__)

BATCH = 10_000
CALLS = "calls"
TIERS = (CALLS, Granularity.MINUTE, Granularity.HOUR, Granularity.DAY)
WIDTH = {
    Granularity.MINUTE: timedelta(minutes=1),
    Granularity.HOUR: timedelta(hours=1),
    Granularity.DAY: timedelta(days=1),
}
_SETTING = {
    CALLS: "PORTICO_RETENTION_CALLS_DAYS",
    Granularity.MINUTE: "PORTICO_RETENTION_MINUTE_ROLLUPS_DAYS",
    Granularity.HOUR: "PORTICO_RETENTION_HOUR_ROLLUPS_DAYS",
    Granularity.DAY: "PORTICO_RETENTION_DAY_ROLLUPS_DAYS",
}


def retention_days(tier: str) -> int:
    """Days the tier keeps (0: forever)."""
    return max(0, int(getattr(settings, _SETTING[tier])))


def covers(tier: str, start: datetime, now: datetime) -> bool:
    """True when the tier still holds everything from ``start`` on (nothing from then on has
    been, or could have been, deleted by retention)."""
    days = retention_days(tier)
    return days == 0 or start >= now - timedelta(days=days)


def expired(tier: str, now: datetime, using: str = DEFAULT_DB_ALIAS) -> QuerySet | None:
    """The rows of ``tier`` past their retention at ``now``, or None when the tier is kept."""
    days = retention_days(tier)
    if days == 0:
        return None
    cutoff = now - timedelta(days=days)
    if tier == CALLS:
        return CallLog.objects.using(using).filter(time__lt=cutoff)
    return Rollup.objects.using(using).filter(granularity=tier, bucket_start__lte=cutoff - WIDTH[Granularity(tier)])


def _delete_in_batches(rows: QuerySet, model: type[Model], batch: int, using: str) -> int:
    deleted = 0
    while True:
        ids = list(rows.order_by().values_list("pk", flat=True)[:batch])
        if not ids:
            return deleted
        # Nothing points at these rows: Django deletes them in one DELETE ... WHERE id IN.
        count, _ = model.objects.using(using).filter(pk__in=ids).delete()
        deleted += count


def enforce_retention(
    *, now: datetime | None = None, batch: int = BATCH, using: str = DEFAULT_DB_ALIAS
) -> dict[str, int]:
    """Delete what is past its tier at ``now``. Returns the rows deleted per tier."""
    now = now or timezone.now()
    deleted: dict[str, int] = {}
    for tier in TIERS:
        rows = expired(tier, now, using)
        count = 0 if rows is None else _delete_in_batches(rows, rows.model, batch, using)
        deleted[str(tier)] = count
        if count:
            log.info("retention: %d %s rows deleted (older than %d days)", count, tier, retention_days(tier))
    return deleted
