"""Retention in tiers: raw calls, minute, hour and day rollups each kept for their own number
of days; exactly what is past its tier goes, at the boundary too."""

import io
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from analytics import tasks
from analytics.models import CallLog, Granularity, Rollup
from analytics.retention import enforce_retention
from tests.analytics.factories import call, store

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 3, 15, 12, 0, 30, tzinfo=UTC)  # not on a minute: buckets straddle the cutoffs


@pytest.fixture(autouse=True)
def tiers(settings):
    settings.PORTICO_RETENTION_CALLS_DAYS = 14
    settings.PORTICO_RETENTION_MINUTE_ROLLUPS_DAYS = 7
    settings.PORTICO_RETENTION_HOUR_ROLLUPS_DAYS = 90
    settings.PORTICO_RETENTION_DAY_ROLLUPS_DAYS = 0


def rollup(granularity: str, start: datetime) -> Rollup:
    return Rollup(granularity=granularity, bucket_start=start, status_class=2, requests=1)


def test_each_tier_deletes_exactly_what_is_past_it(backend):
    db = backend.alias
    calls_cutoff = NOW - timedelta(days=14)
    store(
        using=db,
        rows=[
            call(calls_cutoff - timedelta(days=30), path="/old"),
            call(calls_cutoff - timedelta(microseconds=1), path="/just-past"),
            call(calls_cutoff, path="/at-cutoff"),
            call(NOW, path="/now"),
        ],
    )
    minute_cutoff = NOW - timedelta(days=7)  # 12:00:30
    hour_cutoff = NOW - timedelta(days=90)
    Rollup.objects.using(db).bulk_create(
        [
            rollup(Granularity.MINUTE, datetime(2027, 3, 8, 11, 58, tzinfo=UTC)),  # wholly past
            rollup(Granularity.MINUTE, datetime(2027, 3, 8, 11, 59, tzinfo=UTC)),  # ends at 12:00, before 12:00:30
            rollup(Granularity.MINUTE, datetime(2027, 3, 8, 12, 0, tzinfo=UTC)),  # straddles the cutoff: kept
            rollup(Granularity.MINUTE, NOW.replace(second=0)),
            rollup(Granularity.HOUR, hour_cutoff.replace(minute=0, second=0) - timedelta(hours=1)),  # ends before
            rollup(Granularity.HOUR, hour_cutoff.replace(minute=0, second=0)),  # straddles: kept
            # Calls and hours of those times are past their tiers, but day rollups are kept.
            rollup(Granularity.DAY, datetime(2021, 1, 1, tzinfo=UTC)),
            rollup(Granularity.DAY, calls_cutoff.replace(hour=0, minute=0, second=0)),
        ]
    )
    assert minute_cutoff.second == 30

    deleted = enforce_retention(now=NOW, batch=1, using=db)  # one row a batch: the loop goes round

    assert deleted == {"calls": 2, "minute": 2, "hour": 1, "day": 0}
    assert sorted(CallLog.objects.using(db).values_list("path", flat=True)) == ["/at-cutoff", "/now"]
    minutes = Rollup.objects.using(db).filter(granularity=Granularity.MINUTE).values_list("bucket_start", flat=True)
    assert sorted(minutes) == [datetime(2027, 3, 8, 12, 0, tzinfo=UTC), NOW.replace(second=0)]
    hours = Rollup.objects.using(db).filter(granularity=Granularity.HOUR).values_list("bucket_start", flat=True)
    assert list(hours) == [hour_cutoff.replace(minute=0, second=0)]
    assert Rollup.objects.using(db).filter(granularity=Granularity.DAY).count() == 2

    assert enforce_retention(now=NOW, using=db) == {"calls": 0, "minute": 0, "hour": 0, "day": 0}  # nothing more


def test_each_tier_follows_its_own_setting_and_zero_keeps_it(settings, backend):
    db = backend.alias
    settings.PORTICO_RETENTION_CALLS_DAYS = 0
    settings.PORTICO_RETENTION_DAY_ROLLUPS_DAYS = 365
    store(using=db, rows=[call(NOW - timedelta(days=1000))])
    Rollup.objects.using(db).bulk_create(
        [
            rollup(Granularity.DAY, datetime(2026, 3, 14, tzinfo=UTC)),  # ends 2026-03-15 00:00: past
            rollup(Granularity.DAY, datetime(2026, 3, 15, tzinfo=UTC)),  # holds the cutoff (12:00:30): kept
        ]
    )
    assert enforce_retention(now=NOW, using=db) == {"calls": 0, "minute": 0, "hour": 0, "day": 1}
    assert CallLog.objects.using(db).count() == 1
    assert list(Rollup.objects.using(db).values_list("bucket_start", flat=True)) == [datetime(2026, 3, 15, tzinfo=UTC)]


def test_the_celery_task_and_the_command_enforce_retention(settings):
    now = datetime.now(UTC)
    store([call(now - timedelta(days=15)), call(now - timedelta(days=13))])
    assert tasks.enforce_retention.name == "analytics.enforce_retention"
    assert tasks.enforce_retention.apply().get()["calls"] == 1
    store([call(now - timedelta(days=20))])
    out = io.StringIO()
    call_command("enforce_retention", stdout=out)
    assert "calls: 1 rows deleted (older than 14 days)" in out.getvalue()
    assert "day: 0 rows deleted (kept forever)" in out.getvalue()
    assert CallLog.objects.count() == 1
    assert "analytics.enforce_retention" in {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
