"""Prometheus metrics that add up across gunicorn workers (multiprocess mode).

PROMETHEUS_MULTIPROC_DIR must be set before prometheus_client is imported; the gunicorn
config sets it and empties it at start-up.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from pathlib import Path

if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:  # outside gunicorn (tests, scripts): one process
    _dir = Path(os.environ.get("PORTICO_VAR_DIR", "var")) / f"prometheus-{os.getpid()}"
    _dir.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_dir)

from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,  # noqa: E402
)
from prometheus_client.core import GaugeMetricFamily  # noqa: E402
from prometheus_client.registry import Collector  # noqa: E402

REQUESTS = Counter("portico_gateway_requests_total", "Gateway answers by status code", ["status"])
LATENCY = Histogram(
    "portico_gateway_request_duration_seconds",
    "Time from request to the end of the answer",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
UPSTREAM_ERRORS = Counter("portico_gateway_upstream_errors_total", "Upstream failures by kind", ["kind"])


def render(state: ScrapeState | None = None) -> tuple[bytes, bytes]:
    flush()  # this worker's latest; the others' are at most FLUSH_SECONDS old
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    if state is not None:
        registry.register(state)
    return generate_latest(registry), CONTENT_TYPE_LATEST.encode()


class ScrapeState(Collector):
    """Gauges measured while answering a scrape rather than counted as things happen: whether
    the scraped worker reaches Redis now, and the call records waiting to reach the stream.
    Measured, not tallied, because a multiprocess gauge written by each worker would go stale
    when that worker stops, and the backlog is on disk, shared by every worker."""

    def __init__(self, redis_up: bool, backlog: dict[str, int]) -> None:
        self.redis_up = redis_up
        self.backlog = backlog

    def collect(self) -> Iterable[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "portico_gateway_redis_up",
            "1 when the worker answering this scrape reached Redis (PING), else 0",
            value=1 if self.redis_up else 0,
        )
        backlog = GaugeMetricFamily(
            "portico_gateway_calllog_backlog_bytes",
            "Call records not yet in the Redis stream, in bytes, by store: ring (every worker's "
            "written but unshipped records) and spool (files waiting for replay)",
            labels=["store"],
        )
        for store, size in sorted(self.backlog.items()):
            backlog.add_metric([store], size)
        yield backlog


# Answers are tallied in plain Python and added to the shared (mmap) values once a second:
# each prometheus_client increment calls getpid() and takes a lock, which cost 3% of the
# request path. Figures therefore lag by up to FLUSH_SECONDS.
FLUSH_SECONDS = 1.0
_BOUNDS = LATENCY._upper_bounds  # the histogram's buckets, +Inf last
_statuses: dict[int, int] = {}
_bucket_counts = [0] * len(_BOUNDS)
_latency_sum = [0.0]


def count_request(status: int, seconds: float) -> None:
    _statuses[status] = _statuses.get(status, 0) + 1
    _bucket_counts[bisect.bisect_left(_BOUNDS, seconds)] += 1
    _latency_sum[0] += seconds


def flush() -> None:
    """Add what was tallied since the last flush to the shared values."""
    for status, count in _statuses.items():
        REQUESTS.labels(str(status)).inc(count)
    _statuses.clear()
    # Private but long-stable prometheus_client internals: per-bucket (non-cumulative) values.
    for index, count in enumerate(_bucket_counts):
        if count:
            LATENCY._buckets[index].inc(count)
            _bucket_counts[index] = 0
    if _latency_sum[0]:
        LATENCY._sum.inc(_latency_sum[0])
        _latency_sum[0] = 0.0


# -- the call log (gateway/calllog.py): rare events, counted as they happen ------------------
CALLLOG_DROPPED = Counter(
    "portico_gateway_calllog_dropped_total",
    "Call records dropped, oldest first, past GATEWAY_CALLLOG_MAX_PENDING while Redis and the spool both failed",
)
CALLLOG_SPOOL_ERRORS = Counter(
    "portico_gateway_calllog_spool_errors_total", "Failed spool writes (the records stay in memory and are retried)"
)
CALLLOG_QUARANTINED = Counter(
    "portico_gateway_calllog_quarantined_total", "Unreadable spool lines or ring records moved to quarantine.jsonl"
)
CALLLOG_RECLAIMED = Counter(
    "portico_gateway_calllog_reclaimed_total", "Call records recovered from the ring of a worker that died"
)

PROTOCOL_REFUSALS = Counter(
    "portico_gateway_protocol_refusals_total",
    "Requests the server refused before the application saw them (400, 408, 414, 431, 501, 503), by status",
    ["status"],
)


# -- AI calls (gateway/aicall.py): tokens and cost, counted once per call as it is recorded ----
AI_TOKENS = Counter(
    "portico_gateway_ai_tokens_total",
    "LLM tokens of AI calls by provider kind and direction (in: prompt, out: completion)",
    ["provider", "direction"],
)
AI_COST = Counter(
    "portico_gateway_ai_cost_usd_total",
    "What AI calls cost in USD, by provider kind (unknown prices add nothing)",
    ["provider"],
)


def count_ai_call(provider: str, tokens_in: int | None, tokens_out: int | None, cost: str | None) -> None:
    """Add one AI call's usage. An AI call costs far more than these two increments, so they
    are not batched like ``count_request``."""
    provider = provider or "none"  # refused before a provider was chosen
    if tokens_in:
        AI_TOKENS.labels(provider, "in").inc(tokens_in)
    if tokens_out:
        AI_TOKENS.labels(provider, "out").inc(tokens_out)
    if cost:
        try:
            amount = float(Decimal(cost))
        except (InvalidOperation, ValueError):
            return
        if amount > 0:
            AI_COST.labels(provider).inc(amount)
