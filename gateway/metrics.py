"""Prometheus metrics that add up across gunicorn workers (multiprocess mode).

PROMETHEUS_MULTIPROC_DIR must be set before prometheus_client is imported; the gunicorn
config sets it and empties it at start-up.
"""

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
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST.encode()
