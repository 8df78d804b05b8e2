"""Prometheus metrics that add up across gunicorn workers (multiprocess mode).

PROMETHEUS_MULTIPROC_DIR must be set before prometheus_client is imported; the gunicorn
config sets it and empties it at start-up.
"""

import bisect
import os
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

REQUESTS = Counter("portico_gateway_requests_total", "Gateway answers by status code", ["status"])
LATENCY = Histogram(
    "portico_gateway_request_duration_seconds",
    "Time from request to the end of the answer",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
UPSTREAM_ERRORS = Counter("portico_gateway_upstream_errors_total", "Upstream failures by kind", ["kind"])


def render() -> tuple[bytes, bytes]:
    flush()  # this worker's latest; the others' are at most FLUSH_SECONDS old
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST.encode()


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
