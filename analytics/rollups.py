"""Rollups: calls aggregated per minute, hour and day, by API, version, tenant, application,
status class and AI model (``analytics.models.Rollup``).

Three runs, each a Celery task on beat and a management command:

- ``roll_up_minutes`` (every minute) finds the minutes touched by calls ingested since the
  last run, by **id watermark** (``RollupWatermark``: ids above the last run's highest; and
  the last run's id range again when it holds more rows than it did then, so a row whose
  insert committed out of id order within one run interval is not missed), and recomputes
  those minutes from the raw calls in
  SQL (one GROUP BY per run of consecutive minutes: the histogram bucket of each row is
  computed in the query). It then marks their hours.
- ``roll_up_hours`` (every 5 minutes) recomputes the marked hours by merging their minutes,
  and marks their days; ``roll_up_days`` (hourly) recomputes the marked days from their hours.

A bucket is recomputed whole from its source and replaces what was there (delete and insert
in one transaction): running twice changes nothing, and a late record (one whose ``time`` is
long past when it is ingested) lands in its own minute, whose hour and day follow. A bucket
is only recomputed from a source that retention has not begun to delete (``covers``): an
hour older than the minute tier is merged from raw calls instead, and one older than both is
left as it is (logged), rather than replaced by a partial sum.

Latency is kept as a histogram with fixed log-spaced buckets (``HISTOGRAM``), which merges by
addition: percentiles of an hour or a day are read from the merged counts, exact up to one
bucket's width (10 %), never averaged from per-minute percentiles.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import (
    Case,
    Count,
    DateTimeField,
    F,
    FloatField,
    Func,
    IntegerField,
    Max,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Floor, Ln, TruncDay, TruncHour, TruncMinute
from django.utils import timezone

from analytics.models import CallLog, Granularity, Rollup, RollupMark, RollupWatermark
from analytics.retention import CALLS, WIDTH, covers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Histogram:
    """Fixed log-spaced latency buckets: index 0 holds [0, 0.1 ms), index i (1..``buckets``)
    holds [0.1 * 1.1**(i-1), 0.1 * 1.1**i) ms, the last one ending at 60 s, and
    ``overflow`` holds 60 s and more."""

    min_ms: float = 0.1
    max_ms: float = 60_000.0
    growth: float = 1.1

    @property
    def buckets(self) -> int:
        return math.ceil(math.log(self.max_ms / self.min_ms) / math.log(self.growth))

    @property
    def overflow(self) -> int:
        return self.buckets + 1

    def index(self, latency_ms: float) -> int:
        if latency_ms < self.min_ms:
            return 0
        if latency_ms >= self.max_ms:
            return self.overflow
        return min(int(math.floor(math.log(latency_ms / self.min_ms) / math.log(self.growth))) + 1, self.buckets)

    def bounds(self, index: int) -> tuple[float, float]:
        if index <= 0:
            return 0.0, self.min_ms
        if index >= self.overflow:
            return self.max_ms, math.inf
        return self.min_ms * self.growth ** (index - 1), min(self.min_ms * self.growth**index, self.max_ms)

    def sql_index(self) -> Case:
        """The same index, computed by the database for each CallLog row."""
        return Case(
            When(latency_ms__lt=self.min_ms, then=Value(0.0)),
            When(latency_ms__gte=self.max_ms, then=Value(float(self.overflow))),
            default=Floor(Ln(F("latency_ms") / Value(self.min_ms)) / Value(math.log(self.growth))) + Value(1.0),
            output_field=FloatField(),
        )


HISTOGRAM = Histogram()


def percentile(histogram: dict[str, int], p: float, max_ms: float | None = None) -> float | None:
    """The ``p``-th percentile (nearest rank) of a sparse histogram, as the geometric middle of
    the bucket holding it (never above ``max_ms``, the largest latency seen, when given).
    None for an empty histogram."""
    counts = sorted((int(index), count) for index, count in histogram.items() if count)
    total = sum(count for _index, count in counts)
    if not total:
        return None
    rank = max(1, math.ceil(p / 100 * total))
    seen = 0
    for index, count in counts:
        seen += count
        if seen >= rank:
            low, high = HISTOGRAM.bounds(index)
            if index == 0:
                value = high / 2
            elif math.isinf(high):
                value = max_ms if max_ms is not None else low
            else:
                value = math.sqrt(low * high)
            return min(value, max_ms) if max_ms is not None else value
    return None  # not reached


def merge_histograms(into: dict[str, int], other: dict[str, int]) -> dict[str, int]:
    for index, count in other.items():
        into[index] = into.get(index, 0) + count
    return into


DIMENSIONS = ("api_id", "version_id", "tenant_id", "application_id", "status_class", "model")


@dataclass
class Totals:
    """What a Rollup row counts, as it is added up: from raw rows, or merged from rollups."""

    requests: int = 0
    errors_4xx: int = 0
    errors_5xx: int = 0
    latency_histogram: dict[str, int] = field(default_factory=dict)
    latency_sum_ms: float = 0.0
    latency_max_ms: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: Decimal | None = None
    unpriced_calls: int = 0
    cache_hits: int = 0

    def merge(self, row: dict[str, Any] | Rollup) -> Totals:
        """Add a Rollup (or a ``values()`` dict of one)."""
        get = row.get if isinstance(row, dict) else row.__dict__.get
        self.requests += get("requests") or 0
        self.errors_4xx += get("errors_4xx") or 0
        self.errors_5xx += get("errors_5xx") or 0
        merge_histograms(self.latency_histogram, get("latency_histogram") or {})
        self.latency_sum_ms += get("latency_sum_ms") or 0.0
        self.latency_max_ms = max(self.latency_max_ms, get("latency_max_ms") or 0.0)
        self.bytes_in += get("bytes_in") or 0
        self.bytes_out += get("bytes_out") or 0
        self.tokens_in += get("tokens_in") or 0
        self.tokens_out += get("tokens_out") or 0
        cost = get("cost")
        if cost is not None:
            self.cost = (self.cost or Decimal(0)) + Decimal(cost)
        self.unpriced_calls += get("unpriced_calls") or 0
        self.cache_hits += get("cache_hits") or 0
        return self

    @property
    def errors(self) -> int:
        return self.errors_4xx + self.errors_5xx

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def percentile(self, p: float) -> float | None:
        return percentile(self.latency_histogram, p, self.latency_max_ms or None)


def _truncate(granularity: str, when: datetime) -> datetime:
    when = when.astimezone(UTC)
    if granularity == Granularity.MINUTE:
        return when.replace(second=0, microsecond=0)
    if granularity == Granularity.HOUR:
        return when.replace(minute=0, second=0, microsecond=0)
    return when.replace(hour=0, minute=0, second=0, microsecond=0)


_TRUNC = {Granularity.MINUTE: TruncMinute, Granularity.HOUR: TruncHour, Granularity.DAY: TruncDay}
# SQLite keeps datetimes as UTC text, "YYYY-MM-DD HH:MM:SS[.ffffff]", and Django's Trunc calls
# Python for every row there (about half the time of a minute run): slicing the text is native.
_SQLITE_TRUNC = {
    Granularity.MINUTE: "(substr(%(expressions)s, 1, 16) || ':00')",
    Granularity.HOUR: "(substr(%(expressions)s, 1, 13) || ':00:00')",
    Granularity.DAY: "(substr(%(expressions)s, 1, 10) || ' 00:00:00')",
}


def bucket_of(granularity: str, using: str) -> Func:
    """The start of the ``granularity`` bucket holding each row's ``time``, in SQL."""
    if connections[using].vendor == "sqlite":
        return Func(F("time"), template=_SQLITE_TRUNC[Granularity(granularity)], output_field=DateTimeField())
    return _TRUNC[Granularity(granularity)]("time", tzinfo=UTC)


_STATUS_CLASS = Case(
    When(status__gte=100, status__lt=600, then=F("status") / Value(100)),
    default=Value(0),
    output_field=IntegerField(),
)
_USED_TOKENS = Q(tokens_in__isnull=False) | Q(tokens_out__isnull=False)


def _aggregate_calls(granularity: str, start: datetime, end: datetime, using: str) -> dict[tuple, Totals]:
    """Totals per (bucket start, dimensions) of the calls in [start, end), in one GROUP BY:
    one row per histogram bucket used by each group, summed up here."""
    rows = (
        CallLog.objects.using(using)
        .filter(time__gte=start, time__lt=end)
        .annotate(bucket=bucket_of(granularity, using))
        .annotate(status_class=_STATUS_CLASS, hist=HISTOGRAM.sql_index())
        .values("bucket", *DIMENSIONS, "hist")
        .annotate(
            n=Count("id"),
            e4=Count("id", filter=Q(status__gte=400, status__lt=500)),
            e5=Count("id", filter=Q(status__gte=500, status__lt=600)),
            lat_sum=Sum("latency_ms"),
            lat_max=Max("latency_ms"),
            b_in=Sum("bytes_in"),
            b_out=Sum("bytes_out"),
            t_in=Sum("tokens_in"),
            t_out=Sum("tokens_out"),
            cost_sum=Sum("cost"),
            priced=Count("cost"),
            unpriced=Count("id", filter=Q(cost__isnull=True) & _USED_TOKENS),
            hits=Count("id", filter=Q(cache_hit=True)),
        )
        .order_by()
    )
    groups: dict[tuple, Totals] = {}
    for row in rows.iterator(chunk_size=5000):
        key = (row["bucket"], *(row[name] for name in DIMENSIONS))
        totals = groups.get(key)
        if totals is None:
            totals = groups[key] = Totals()
        index = str(min(max(int(row["hist"]), 0), HISTOGRAM.overflow))
        totals.merge(
            {
                "requests": row["n"],
                "errors_4xx": row["e4"],
                "errors_5xx": row["e5"],
                "latency_histogram": {index: row["n"]},
                "latency_sum_ms": row["lat_sum"],
                "latency_max_ms": row["lat_max"],
                "bytes_in": row["b_in"],
                "bytes_out": row["b_out"],
                "tokens_in": row["t_in"],
                "tokens_out": row["t_out"],
                "cost": row["cost_sum"] if row["priced"] else None,
                "unpriced_calls": row["unpriced"],
                "cache_hits": row["hits"],
            }
        )
    return groups


def _merge_rollups(source: str, granularity: str, start: datetime, end: datetime, using: str) -> dict[tuple, Totals]:
    """Totals per (bucket start, dimensions) merged from the ``source`` tier's rows."""
    groups: dict[tuple, Totals] = {}
    rows = (
        Rollup.objects.using(using).filter(granularity=source, bucket_start__gte=start, bucket_start__lt=end).values()
    )
    for row in rows.iterator(chunk_size=5000):
        key = (_truncate(granularity, row["bucket_start"]), *(row[name] for name in DIMENSIONS))
        totals = groups.get(key)
        if totals is None:
            totals = groups[key] = Totals()
        totals.merge(row)
    return groups


def _rows(granularity: str, groups: dict[tuple, Totals]) -> Iterator[Rollup]:
    for (bucket, *dims), totals in groups.items():
        yield Rollup(
            granularity=granularity,
            bucket_start=bucket,
            **dict(zip(DIMENSIONS, dims, strict=True)),
            requests=totals.requests,
            errors_4xx=totals.errors_4xx,
            errors_5xx=totals.errors_5xx,
            latency_histogram=totals.latency_histogram,
            latency_sum_ms=totals.latency_sum_ms,
            latency_max_ms=totals.latency_max_ms,
            bytes_in=totals.bytes_in,
            bytes_out=totals.bytes_out,
            tokens_in=totals.tokens_in,
            tokens_out=totals.tokens_out,
            cost=totals.cost,
            unpriced_calls=totals.unpriced_calls,
            cache_hits=totals.cache_hits,
        )


# A bucket's sources, preferred first: the tier below, else (when retention has begun to
# delete that tier) one further down.
SOURCES: dict[str, tuple[str, ...]] = {
    Granularity.MINUTE: (CALLS,),
    Granularity.HOUR: (Granularity.MINUTE, CALLS),
    Granularity.DAY: (Granularity.HOUR, Granularity.MINUTE, CALLS),
}
NEXT_TIER = {Granularity.MINUTE: Granularity.HOUR, Granularity.HOUR: Granularity.DAY}
MAX_RANGE = {Granularity.MINUTE: 360, Granularity.HOUR: 48, Granularity.DAY: 31}  # buckets per query


def ranges(granularity: str, starts: Iterable[datetime]) -> list[tuple[datetime, datetime]]:
    """Runs of consecutive bucket starts as [start, end) ranges, at most MAX_RANGE buckets each."""
    width = WIDTH[Granularity(granularity)]
    found: list[tuple[datetime, datetime]] = []
    for start in sorted(set(starts)):
        if found and found[-1][1] == start and (start - found[-1][0]) < width * MAX_RANGE[Granularity(granularity)]:
            found[-1] = (found[-1][0], start + width)
        else:
            found.append((start, start + width))
    return found


def recompute(
    granularity: str, starts: Iterable[datetime], *, now: datetime | None = None, using: str = DEFAULT_DB_ALIAS
) -> list[datetime]:
    """Recompute the buckets of ``granularity`` that start at ``starts``, each from the first
    of its sources that retention still keeps whole, replacing their rows; mark the next
    tier's buckets. Call inside a transaction. Returns the buckets recomputed."""
    now = now or timezone.now()
    width = WIDTH[Granularity(granularity)]
    done: list[datetime] = []
    for start, end in ranges(granularity, starts):
        bucket = start
        while bucket < end:  # per bucket, since each may need another source
            run_end = bucket
            source = next((s for s in SOURCES[granularity] if covers(s, bucket, now)), None)
            while run_end < end and next((s for s in SOURCES[granularity] if covers(s, run_end, now)), None) == source:
                run_end += width
            if source is None:
                log.warning(
                    "rollups: %s buckets %s..%s left as they are: their sources are past retention",
                    granularity,
                    bucket,
                    run_end,
                )
            else:
                if source == CALLS:
                    groups = _aggregate_calls(granularity, bucket, run_end, using)
                else:
                    groups = _merge_rollups(source, granularity, bucket, run_end, using)
                Rollup.objects.using(using).filter(
                    granularity=granularity, bucket_start__gte=bucket, bucket_start__lt=run_end
                ).delete()
                Rollup.objects.using(using).bulk_create(_rows(granularity, groups), batch_size=1000)
                step = bucket
                while step < run_end:
                    done.append(step)
                    step += width
            bucket = run_end
    if (upper := NEXT_TIER.get(Granularity(granularity))) and done:
        mark(upper, {_truncate(upper, b) for b in done}, now=now, using=using)
    return done


def mark(
    granularity: str, starts: Iterable[datetime], *, now: datetime | None = None, using: str = DEFAULT_DB_ALIAS
) -> None:
    """Mark buckets of ``granularity`` for the next run of that tier (again if already marked)."""
    now = now or timezone.now()
    RollupMark.objects.using(using).bulk_create(
        [RollupMark(granularity=granularity, bucket_start=start, marked_at=now) for start in sorted(set(starts))],
        update_conflicts=True,
        unique_fields=["granularity", "bucket_start"],
        update_fields=["marked_at"],
        batch_size=1000,
    )


def _lock(name: str, using: str) -> RollupWatermark:
    """The tier's watermark row, locked until the transaction ends (PostgreSQL; SQLite
    serializes writers anyway), so two runs of one tier never interleave."""
    RollupWatermark.objects.using(using).get_or_create(name=name)
    return RollupWatermark.objects.using(using).select_for_update().get(name=name)


def touched_minutes(after_id: int, up_to_id: int, using: str = DEFAULT_DB_ALIAS) -> list[datetime]:
    """The minutes holding calls with ids in (after_id, up_to_id]."""
    rows: QuerySet = (
        CallLog.objects.using(using)
        .filter(id__gt=after_id, id__lte=up_to_id)
        .annotate(minute=bucket_of(Granularity.MINUTE, using))
        .order_by()
        .values_list("minute", flat=True)
        .distinct()
    )
    return list(rows)


def roll_up_minutes(*, now: datetime | None = None, using: str = DEFAULT_DB_ALIAS) -> int:
    """Recompute the minutes touched by calls ingested since the run before last (and mark
    their hours). Returns the number of minute buckets recomputed."""
    now = now or timezone.now()
    with transaction.atomic(using=using, durable=True):
        watermark = _lock(Granularity.MINUTE, using)
        calls = CallLog.objects.using(using)
        highest = max(calls.aggregate(highest=Max("id"))["highest"] or 0, watermark.last_id)
        start = watermark.last_id
        if calls.filter(id__gt=watermark.previous_id, id__lte=watermark.last_id).count() != watermark.last_count:
            start = watermark.previous_id  # rows committed late below the watermark: read the range again
        minutes = touched_minutes(start, highest, using)
        done = recompute(Granularity.MINUTE, minutes, now=now, using=using)
        watermark.previous_id, watermark.last_id = watermark.last_id, highest
        watermark.last_count = calls.filter(id__gt=watermark.previous_id, id__lte=highest).count()
        watermark.save(update_fields=["previous_id", "last_id", "last_count", "updated_at"])
    return len(done)


def _roll_up_marked(granularity: str, now: datetime | None, limit: int, using: str) -> int:
    now = now or timezone.now()
    with transaction.atomic(using=using, durable=True):
        _lock(granularity, using)
        marks = list(
            RollupMark.objects.using(using)
            .filter(granularity=granularity)
            .order_by("bucket_start")
            .values_list("pk", "bucket_start", "marked_at")[:limit]
        )
        if not marks:
            return 0
        done = recompute(granularity, [start for _pk, start, _at in marks], now=now, using=using)
        # A mark renewed since we read it stays for the next run.
        for first in range(0, len(marks), 100):
            seen = Q()
            for pk, _start, marked_at in marks[first : first + 100]:
                seen |= Q(pk=pk, marked_at=marked_at)
            RollupMark.objects.using(using).filter(seen).delete()
    return len(done)


def roll_up_hours(*, now: datetime | None = None, limit: int = 2000, using: str = DEFAULT_DB_ALIAS) -> int:
    """Recompute the hours marked by minute runs (and mark their days). Returns how many."""
    return _roll_up_marked(Granularity.HOUR, now, limit, using)


def roll_up_days(*, now: datetime | None = None, limit: int = 400, using: str = DEFAULT_DB_ALIAS) -> int:
    """Recompute the days marked by hour runs. Returns how many."""
    return _roll_up_marked(Granularity.DAY, now, limit, using)


def roll_up_all(*, now: datetime | None = None, using: str = DEFAULT_DB_ALIAS) -> tuple[int, int, int]:
    """Minutes, then hours, then days: everything ingested so far is in every tier."""
    return (
        roll_up_minutes(now=now, using=using),
        roll_up_hours(now=now, using=using),
        roll_up_days(now=now, using=using),
    )
