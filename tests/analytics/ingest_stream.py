"""Call records for the ingest tests, written to a Redis stream as the gateway writes them:
one stream entry per batch, field ``b`` a JSON array of records."""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import redis

from analytics.ingest import GROUP
from analytics.models import CallLog

_worker = itertools.count()


def request_ids(prefix: str | None = None) -> Iterator[str]:
    """Gateway-shaped request ids: a random per-worker prefix and a counter (gateway/app.py)."""
    prefix = prefix or os.urandom(8).hex()
    return (f"{prefix}{n:016x}" for n in itertools.count())


def record(request_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "time": time.time(),
        "method": "GET",
        "path": "/weather/v1/forecast",
        "client_ip": "127.0.0.1",
        "api_id": 1,
        "version_id": 2,
        "tenant_id": 3,
        "application_id": 4,
        "key_prefix": "",
        "status": 200,
        "latency_ms": 12.5,
        "upstream_latency_ms": 10.0,
        "bytes_in": 0,
        "bytes_out": 120,
        "cache_hit": False,
        "error_code": "",
        **fields,
    }


def add(client: redis.Redis, stream: str, records: list[Any]) -> None:
    client.xadd(stream, {"b": orjson.dumps(records)})


def fill(client: redis.Redis, stream: str, entries: int, per_entry: int) -> set[str]:
    """``entries`` batches of ``per_entry`` records; returns their request ids."""
    ids = request_ids()
    sent: set[str] = set()
    pipe = client.pipeline(transaction=False)
    for _ in range(entries):
        batch = [record(next(ids), status=200 if n % 7 else 503) for n in range(per_entry)]
        sent.update(r["request_id"] for r in batch)
        pipe.xadd(stream, {"b": orjson.dumps(batch)})
    pipe.execute()
    return sent


def new_stream_name() -> str:
    return f"test:calls:{uuid.uuid4().hex}"


def stored_ids(alias: str) -> list[str]:
    return list(CallLog.objects.using(alias).values_list("request_id", flat=True))


def pending(client: redis.Redis, stream: str) -> int:
    try:
        return int(client.xpending(stream, GROUP)["pending"])
    except redis.ResponseError:  # no group yet
        return 0
