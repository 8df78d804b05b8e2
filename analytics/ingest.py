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
from django.db.models import CharField, Q

from analytics.models import CallLog
from gateway.calllog import records_of
from gateway.callrecord import AiCallRecord
from portal.models import ApiKey

log = logging.getLogger(__name__)

GROUP = "ingest"
CLAIM_IDLE_MS = 60_000
# The record's fields that have a column, with the Python types their annotation allows:
# a record of the wrong shape is reported and skipped here, instead of failing the whole
# batch's insert in the database.
_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool, int), "None": (type(None),)}
_COLUMNS = {f.name: f for f in CallLog._meta.get_fields() if f.name != "id"}
_CHECKS = {
    name: (
        tuple(t for part in str(field.type).split("|") for t in _TYPES[part.strip()]),
        isinstance(_COLUMNS[name], CharField) and not _COLUMNS[name].null,  # None is stored as ""
    )
    for field in AiCallRecord.__dataclass_fields__.values()
    if (name := field.name) in _COLUMNS
}
_MAX_LENGTH = {name: _COLUMNS[name].max_length for name in _CHECKS if getattr(_COLUMNS[name], "max_length", None)}


def _consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _ensure_group(client: redis.Redis, stream: str) -> None:
    try:
        client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except redis.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


def to_row(data) -> CallLog | None:
    """A CallLog row from one decoded record, or None (and an error logged) when it is not a
    CallRecord (``gateway.callrecord``, the schema the gateway writes)."""
    try:
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        record = AiCallRecord.from_dict(data)
        values = {}
        for name, (types, text) in _CHECKS.items():
            value = getattr(record, name)
            if text and value is None:
                value = ""
            if not isinstance(value, types):
                raise TypeError(f"{name}: {type(value).__name__}")
            values[name] = value
        values["path"] = values["path"][:2000]
        for name, limit in _MAX_LENGTH.items():
            if isinstance(values[name], str) and len(values[name]) > limit:
                raise ValueError(f"{name} longer than {limit}")
        values["time"] = datetime.fromtimestamp(record.time, tz=UTC)
        values["cache_hit"] = bool(record.cache_hit)
        return CallLog(**values)
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, OSError):
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
