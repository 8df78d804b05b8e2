"""Call-log rows for the analytics tests, stored with bulk_create: they are data, not the
component under test (ingest has its own tests)."""

from __future__ import annotations

import itertools
from datetime import datetime
from decimal import Decimal
from typing import Any

from analytics.models import CallLog

_ids = itertools.count(1)


def call(at: datetime, *, latency_ms: float = 10.0, status: int = 200, **fields: Any) -> CallLog:
    values: dict[str, Any] = {
        "request_id": f"req-{next(_ids):012d}",
        "time": at,
        "method": "GET",
        "path": "/weather/v1/forecast",
        "status": status,
        "latency_ms": latency_ms,
        "api_id": 1,
        "version_id": 11,
        "tenant_id": None,
        "application_id": None,
    }
    values.update(fields)
    if isinstance(values.get("cost"), str):
        values["cost"] = Decimal(values["cost"])
    return CallLog(**values)


def store(rows: list[CallLog], using: str = "default") -> list[CallLog]:
    return CallLog.objects.using(using).bulk_create(rows, batch_size=2000)
