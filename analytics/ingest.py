"""Move call records from the gateway's Redis stream into CallLog rows.

Reads with a consumer group, so several workers can share the work and a crashed one's
entries are claimed by the next. Rows are inserted with ``ignore_conflicts`` on the unique
request id, so an entry delivered twice is stored once. Entries are acknowledged and
deleted only after their rows are committed.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import UTC, datetime

import redis
from django.conf import settings
from django.db import transaction
from django.db.models import Q

from analytics.models import CallLog
from gateway.calllog import records_of
from portal.models import ApiKey

log = logging.getLogger(__name__)

GROUP = "ingest"
CLAIM_IDLE_MS = 60_000
FIELDS = {f.name for f in CallLog._meta.get_fields()} - {"id"}


def _consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _ensure_group(client: redis.Redis, stream: str) -> None:
    try:
        client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except redis.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


def to_row(data) -> CallLog | None:
    """A CallLog row from one decoded record, or None (and an error logged) when it is not one."""
    try:
        values = {k: v for k, v in data.items() if k in FIELDS}
        values["time"] = datetime.fromtimestamp(float(data["time"]), tz=UTC)
        values["cache_hit"] = bool(values.get("cache_hit"))
        for text in ("key_prefix", "error_code", "client_ip", "client_request_id", "model"):
            values[text] = values.get(text) or ""
        values["path"] = str(values.get("path", ""))[:2000]
        return CallLog(**values)
    except (ValueError, KeyError, TypeError, AttributeError):
        log.error("unreadable call record skipped: %r", repr(data)[:200])
        return None


def _store(entries: list) -> int:
    rows = [row for _id, fields in entries for record in records_of(fields) if (row := to_row(record)) is not None]
    with transaction.atomic():
        CallLog.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)
        last_used: dict[str, datetime] = {}
        for row in rows:
            if row.key_prefix and row.time > last_used.get(row.key_prefix, row.time.min.replace(tzinfo=UTC)):
                last_used[row.key_prefix] = row.time
        for prefix, when in last_used.items():
            ApiKey.objects.filter(Q(last_used_at__lt=when) | Q(last_used_at__isnull=True), prefix=prefix).update(
                last_used_at=when
            )
    return len(rows)


def ingest_call_logs(
    *,
    batch_size: int = 50,
    max_batches: int = 50,
    client: redis.Redis | None = None,
    claim_idle_ms: int = CLAIM_IDLE_MS,
) -> int:
    """Ingest what the stream holds now (bounded). Returns the number of records stored.

    ``batch_size`` counts stream entries, and an entry from the gateway holds a whole batch
    of up to 500 records: 50 entries keep one read's rows to tens of thousands."""
    client = client or redis.Redis.from_url(settings.REDIS_URL)
    stream = settings.PORTICO_CALL_LOG_STREAM
    consumer = _consumer_name()
    _ensure_group(client, stream)
    stored = 0
    # Entries a crashed consumer read but never acknowledged.
    _next, claimed, *_ = client.xautoclaim(stream, GROUP, consumer, claim_idle_ms, "0-0", count=batch_size)
    batches = [claimed] if claimed else []
    for _ in range(max_batches):
        if not batches:
            answer = client.xreadgroup(GROUP, consumer, {stream: ">"}, count=batch_size)
            if not answer:
                break
            batches.append(answer[0][1])
        entries = [e for e in batches.pop() if e[1] is not None]
        if not entries:
            continue
        stored += _store(entries)
        ids = [entry_id for entry_id, _fields in entries]
        client.xack(stream, GROUP, *ids)
        client.xdel(stream, *ids)
    return stored
