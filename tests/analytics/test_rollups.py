"""Rollups per minute, hour and day: correct sums, percentiles within one histogram bucket of
the raw rows', hours and days equal to the merge of their minutes, recomputation idempotent,
late records folded in."""

import io
import math
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command

from analytics import tasks
from analytics.models import CallLog, Granularity, Rollup, RollupMark
from analytics.rollups import (
    DIMENSIONS,
    HISTOGRAM,
    Totals,
    percentile,
    recompute,
    roll_up_all,
    roll_up_hours,
    roll_up_minutes,
)
from tests.analytics.factories import call, store

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 3, 15, 12, 0, tzinfo=UTC)


def nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def key(row: Rollup) -> tuple:
    return (row.bucket_start, *(getattr(row, name) for name in DIMENSIONS))


def snapshot(granularity: str, db: str) -> dict[tuple, dict]:
    return {
        key(row): {
            name: getattr(row, name)
            for name in (
                "requests",
                "errors_4xx",
                "errors_5xx",
                "latency_histogram",
                "latency_max_ms",
                "bytes_in",
                "bytes_out",
                "tokens_in",
                "tokens_out",
                "cost",
                "unpriced_calls",
                "cache_hits",
            )
        }
        | {"latency_sum_ms": round(row.latency_sum_ms, 6)}
        for row in Rollup.objects.using(db).filter(granularity=granularity)
    }


def merged(rows, truncate) -> dict[tuple, dict]:
    """What the upper tier must hold: the lower tier's rows merged by the test itself."""
    groups: dict[tuple, Totals] = {}
    for row in rows:
        groups.setdefault((truncate(row.bucket_start), *key(row)[1:]), Totals()).merge(row)
    return {
        k: {
            "requests": t.requests,
            "errors_4xx": t.errors_4xx,
            "errors_5xx": t.errors_5xx,
            "latency_histogram": t.latency_histogram,
            "latency_max_ms": t.latency_max_ms,
            "bytes_in": t.bytes_in,
            "bytes_out": t.bytes_out,
            "tokens_in": t.tokens_in,
            "tokens_out": t.tokens_out,
            "cost": t.cost,
            "unpriced_calls": t.unpriced_calls,
            "cache_hits": t.cache_hits,
            "latency_sum_ms": round(t.latency_sum_ms, 6),
        }
        for k, t in groups.items()
    }


def to_hour(when: datetime) -> datetime:
    return when.replace(minute=0, second=0, microsecond=0)


def to_day(when: datetime) -> datetime:
    return when.replace(hour=0, minute=0, second=0, microsecond=0)


def mixed_traffic(start: datetime, minutes: int, per_minute: int, seed: int = 7) -> list[CallLog]:
    """Two APIs, two tenants and applications, an AI model, log-normal latencies from
    0.05 ms to over a minute, errors of both classes, priced, unpriced and cached AI calls."""
    rng = random.Random(seed)
    rows = []
    for minute in range(minutes):
        for _ in range(per_minute):
            at = start + timedelta(minutes=minute, seconds=rng.random() * 59.9)
            api, tenant = rng.choice([(1, 100), (2, 100), (2, 200)])
            ai = api == 2 and rng.random() < 0.5
            rows.append(
                call(
                    at,
                    latency_ms=min(rng.lognormvariate(3.5, 1.6), 90_000.0),
                    status=rng.choices([200, 201, 404, 429, 500, 503], [70, 5, 10, 5, 6, 4])[0],
                    api_id=api,
                    version_id=api * 10,
                    tenant_id=tenant,
                    application_id=tenant + rng.randint(1, 2),
                    model="gpt-4o-mini" if ai else "",
                    tokens_in=rng.randint(5, 500) if ai else None,
                    tokens_out=rng.randint(1, 300) if ai else None,
                    cost=(Decimal(rng.randint(1, 9999)) / Decimal(10**7) if rng.random() < 0.7 else None)
                    if ai
                    else None,
                    bytes_in=rng.randint(0, 2000),
                    bytes_out=rng.randint(0, 50_000),
                    cache_hit=ai and rng.random() < 0.1,
                )
            )
    return rows


def test_minute_hour_and_day_percentiles_match_the_raw_rows_within_one_bucket(backend):
    db = backend.alias
    rows = store(using=db, rows=mixed_traffic(NOW - timedelta(hours=3), minutes=150, per_minute=12))
    roll_up_all(now=NOW, using=db)

    for granularity, truncate in (
        (Granularity.MINUTE, lambda t: t.replace(second=0, microsecond=0)),
        (Granularity.HOUR, to_hour),
        (Granularity.DAY, to_day),
    ):
        raw: dict[tuple, list[float]] = {}
        for row in rows:
            dims = (row.api_id, row.version_id, row.tenant_id, row.application_id, row.status // 100, row.model)
            raw.setdefault((truncate(row.time), *dims), []).append(row.latency_ms)
        rollups = {key(r): r for r in Rollup.objects.using(db).filter(granularity=granularity)}
        assert set(rollups) == set(raw), granularity
        for k, latencies in raw.items():
            totals = Totals().merge(rollups[k])
            assert totals.requests == len(latencies)
            assert totals.latency_max_ms == max(latencies)
            for p in (50, 95, 99):
                exact, estimate = nearest_rank(latencies, p), totals.percentile(p)
                if exact < HISTOGRAM.min_ms:
                    assert estimate < HISTOGRAM.min_ms
                else:
                    assert abs(math.log(estimate / exact)) <= math.log(HISTOGRAM.growth) + 1e-9, (k, p)


def test_percentiles_of_a_merged_hour_are_not_averages_of_minute_percentiles(backend):
    db = backend.alias
    # One busy fast minute and one quiet slow minute: the hour's median is fast.
    start = NOW - timedelta(hours=2)
    store(using=db, rows=[call(start + timedelta(seconds=i % 60), latency_ms=10.0) for i in range(99)])
    store(using=db, rows=[call(start + timedelta(minutes=1, seconds=i), latency_ms=1000.0) for i in range(3)])
    roll_up_all(now=NOW, using=db)
    (hour,) = Rollup.objects.using(db).filter(granularity=Granularity.HOUR)
    p50 = Totals().merge(hour).percentile(50)
    assert 10 / HISTOGRAM.growth <= p50 <= 10 * HISTOGRAM.growth  # the average of 10 and 1000 would be 505


def test_hour_and_day_rollups_equal_the_merge_of_their_minutes(backend):
    db = backend.alias
    # Across midnight: two days, several hours each.
    store(using=db, rows=mixed_traffic(datetime(2027, 3, 14, 21, 30, tzinfo=UTC), minutes=300, per_minute=6, seed=3))
    roll_up_all(now=NOW, using=db)

    minutes = list(Rollup.objects.using(db).filter(granularity=Granularity.MINUTE))
    hours = list(Rollup.objects.using(db).filter(granularity=Granularity.HOUR))
    assert len({r.bucket_start for r in hours}) == 6 and len({r.bucket_start.date() for r in hours}) == 2
    assert snapshot(Granularity.HOUR, db) == merged(minutes, to_hour)
    assert snapshot(Granularity.DAY, db) == merged(hours, to_day) == merged(minutes, to_day)
    assert sum(r.requests for r in hours) == CallLog.objects.using(db).count() == 1800


def test_sums_per_bucket_count_errors_by_class_and_unknown_costs_apart_from_zero(backend):
    db = backend.alias
    minute = NOW - timedelta(minutes=30)
    store(
        using=db,
        rows=[
            call(minute, status=200, bytes_in=10, bytes_out=100),
            call(minute + timedelta(seconds=1), status=404, bytes_in=5, bytes_out=50),
            call(minute + timedelta(seconds=2), status=429),
            call(minute + timedelta(seconds=3), status=502),
            # AI calls: priced, unpriced (tokens but no price), cached (cost 0), failed (no tokens).
            call(minute, status=200, model="m", tokens_in=100, tokens_out=20, cost="0.00012000"),
            call(minute, status=200, model="m", tokens_in=50, tokens_out=10, cost=None),
            call(minute, status=200, model="m", tokens_in=100, tokens_out=20, cost="0", cache_hit=True),
            call(minute, status=503, model="m"),
            # Only unpriced AI calls in this model's group.
            call(minute, status=200, model="unpriced-model", tokens_in=7, tokens_out=3),
        ],
    )
    roll_up_minutes(now=NOW, using=db)
    rows = {(r.status_class, r.model): r for r in Rollup.objects.using(db).filter(granularity=Granularity.MINUTE)}
    rest2, rest4, rest5 = rows[(2, "")], rows[(4, "")], rows[(5, "")]
    assert (rest2.requests, rest2.errors_4xx, rest2.errors_5xx) == (1, 0, 0)
    assert (rest4.requests, rest4.errors_4xx, rest4.errors_5xx, rest4.bytes_in, rest4.bytes_out) == (2, 2, 0, 5, 50)
    assert (rest5.requests, rest5.errors_5xx) == (1, 1)
    assert rest2.cost is None and rest2.unpriced_calls == 0  # a REST call has no cost, and none unknown

    ai = rows[(2, "m")]
    assert (ai.requests, ai.tokens_in, ai.tokens_out, ai.cache_hits) == (3, 250, 50, 1)
    assert ai.cost == Decimal("0.00012") and ai.unpriced_calls == 1
    assert rows[(5, "m")].cost is None and rows[(5, "m")].unpriced_calls == 0  # no tokens used: nothing unknown
    only_unpriced = rows[(2, "unpriced-model")]
    assert only_unpriced.cost is None and only_unpriced.unpriced_calls == 1  # unknown, never 0


def test_recomputing_buckets_replaces_them_and_changes_nothing(backend):
    db = backend.alias
    store(using=db, rows=mixed_traffic(NOW - timedelta(hours=2), minutes=90, per_minute=5, seed=11))
    roll_up_all(now=NOW, using=db)
    before = {g: snapshot(g, db) for g in Granularity.values}

    assert roll_up_all(now=NOW, using=db) == (0, 0, 0)  # nothing new since
    starts = list(
        Rollup.objects.using(db).filter(granularity=Granularity.MINUTE).values_list("bucket_start", flat=True)
    )
    recompute(Granularity.MINUTE, starts, now=NOW, using=db)  # every minute, and the hours and days after
    roll_up_all(now=NOW, using=db)

    assert {g: snapshot(g, db) for g in Granularity.values} == before
    assert RollupMark.objects.using(db).count() == 0


def test_a_late_record_is_folded_into_its_minute_hour_and_day_once(backend):
    db = backend.alias
    store(using=db, rows=mixed_traffic(NOW - timedelta(hours=5), minutes=280, per_minute=3, seed=5))
    roll_up_all(now=NOW, using=db)
    before = {g: snapshot(g, db) for g in Granularity.values}

    late_time = NOW - timedelta(hours=4, minutes=17, seconds=5)  # ingested now, four hours late
    store(
        using=db,
        rows=[call(late_time, latency_ms=42.0, status=500, api_id=9, version_id=90, tenant_id=100, application_id=101)],
    )
    roll_up_all(now=NOW, using=db)
    roll_up_all(now=NOW, using=db)

    for granularity, bucket in (
        (Granularity.MINUTE, late_time.replace(second=0)),
        (Granularity.HOUR, to_hour(late_time)),
        (Granularity.DAY, to_day(late_time)),
    ):
        after = snapshot(granularity, db)
        k = (bucket, 9, 90, 100, 101, 5, "")
        assert k not in before[granularity]
        assert after[k]["requests"] == 1 and after[k]["errors_5xx"] == 1
        assert after[k]["latency_histogram"] == {str(HISTOGRAM.index(42.0)): 1}
        assert {x: v for x, v in after.items() if x != k} == before[granularity]


def test_a_row_committed_below_the_watermark_is_folded_in_by_the_next_run(backend):
    """Concurrent ingest transactions can commit a lower id after a higher one was read."""
    db = backend.alias
    minute = NOW - timedelta(minutes=10)
    store(using=db, rows=[call(minute, id=100 + i) for i in range(5)])
    roll_up_minutes(now=NOW, using=db)
    store(using=db, rows=[call(minute, id=200)])
    roll_up_minutes(now=NOW, using=db)
    store(using=db, rows=[call(minute, id=150)])  # committed after the run that read id 200
    assert roll_up_minutes(now=NOW, using=db) == 1
    (row,) = Rollup.objects.using(db).filter(granularity=Granularity.MINUTE)
    assert row.requests == 7
    assert roll_up_minutes(now=NOW, using=db) == 0  # and nothing is read twice without need


def test_an_hour_past_the_minute_tier_is_rebuilt_from_raw_calls_and_one_past_every_tier_is_left(
    settings, caplog, backend
):
    db = backend.alias
    settings.PORTICO_RETENTION_MINUTE_ROLLUPS_DAYS = 7
    settings.PORTICO_RETENTION_CALLS_DAYS = 14
    ten_days_ago = to_hour(NOW - timedelta(days=10))
    store(using=db, rows=[call(ten_days_ago + timedelta(minutes=m)) for m in range(30)])
    roll_up_all(now=NOW, using=db)
    Rollup.objects.using(db).filter(granularity=Granularity.MINUTE).delete()  # as minute retention would have

    store(using=db, rows=[call(ten_days_ago + timedelta(minutes=45), status=503)])  # a late record
    roll_up_all(now=NOW, using=db)
    (hour,) = Rollup.objects.using(db).filter(granularity=Granularity.HOUR, status_class=2)
    assert hour.requests == 30  # not replaced by the one late minute
    assert Rollup.objects.using(db).get(granularity=Granularity.HOUR, status_class=5).requests == 1
    assert Rollup.objects.using(db).get(granularity=Granularity.DAY, status_class=2).requests == 30

    # Twenty days back: raw calls and minutes of that time are gone, its day is kept as is.
    old_day = to_day(NOW - timedelta(days=20))
    Rollup.objects.using(db).create(granularity=Granularity.DAY, bucket_start=old_day, status_class=2, requests=500)
    store(using=db, rows=[call(old_day + timedelta(hours=3))])
    roll_up_all(now=NOW, using=db)
    assert Rollup.objects.using(db).get(granularity=Granularity.DAY, bucket_start=old_day).requests == 500
    assert "past retention" in caplog.text


def test_percentile_reads_the_bucket_of_the_nearest_rank():
    histogram = {str(HISTOGRAM.index(5.0)): 90, str(HISTOGRAM.index(700.0)): 10}
    low, high = HISTOGRAM.bounds(HISTOGRAM.index(700.0))
    assert low <= 700.0 < high and high / low == pytest.approx(1.1)
    assert percentile(histogram, 90) == pytest.approx(math.sqrt(math.prod(HISTOGRAM.bounds(HISTOGRAM.index(5.0)))))
    assert low <= percentile(histogram, 91) <= high
    assert percentile(histogram, 100, max_ms=701.0) <= 701.0
    assert percentile({}, 50) is None
    assert percentile({str(HISTOGRAM.overflow): 1}, 50, max_ms=75_000.0) == 75_000.0


def test_the_celery_tasks_and_commands_roll_up(settings):
    store([call(datetime.now(UTC) - timedelta(minutes=3), latency_ms=3.0)])
    assert tasks.roll_up_minutes.name == "analytics.roll_up_minutes"
    assert tasks.roll_up_minutes.apply().get() == 1
    assert tasks.roll_up_hours.apply().get() == 1
    assert tasks.roll_up_days.apply().get() == 1
    out = io.StringIO()
    for command in ("roll_up_minutes", "roll_up_hours", "roll_up_days"):
        call_command(command, stdout=out)
    assert "minute buckets recomputed" in out.getvalue() and "day buckets recomputed" in out.getvalue()
    assert "analytics.roll_up_hours" in {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert roll_up_hours() == 0
