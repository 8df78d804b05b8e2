"""Move call records from the gateway's Redis stream into CallLog rows, losing none and
storing none twice.

The life of a batch: read stream entries with a consumer group (``XREADGROUP``; entries a
crashed consumer read and never acknowledged are taken over with ``XAUTOCLAIM`` once idle),
decode and check each record against ``gateway.callrecord`` (an ``AiCallRecord``: a REST
call's ``CallRecord`` has its fields at their defaults; a record that does not fit is logged
and skipped, it never costs its batch), insert the rows in one transaction,
and only after the commit acknowledge and delete the entries (``XACK``, ``XDEL``). A crash
anywhere leaves the entries pending, to be read again; the unique request id makes the
second insert a no-op (``ON CONFLICT (request_id) DO NOTHING``), so a batch stored twice is
stored once.

The insert is the expensive part, and its method is what makes it fast:

- PostgreSQL: binary ``COPY`` (psycopg 3) into a temporary staging table, then one
  ``INSERT ... SELECT ... ON CONFLICT (request_id) DO NOTHING`` into the real table: COPY
  is several times cheaper per row than any INSERT, and the staging table keeps the
  idempotence COPY alone has not.
- SQLite: one prepared ``INSERT ... ON CONFLICT DO NOTHING`` run by ``executemany`` in one
  transaction (the sqlite3 module's fastest path; each row is a C-level step).
- Other databases: Django's ``bulk_create(ignore_conflicts=True)``.

A batch whose insert the database refuses for its data (which the checks here should make
impossible) is retried entry by entry; an entry that still fails is moved to the
``<stream>:dead`` stream for an operator, with the error, and acknowledged.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import MISSING, dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import redis
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DataError, IntegrityError, connections, transaction
from django.db.backends.base.operations import BaseDatabaseOperations
from django.db.models import CharField, DateTimeField, DecimalField, Field

from analytics.models import CallLog
from gateway.calllog import records_of
from gateway.callrecord import AiCallRecord
from portal.models import ApiKey

log = logging.getLogger(__name__)

GROUP = "ingest"
CLAIM_IDLE_MS = 60_000
DEAD_LETTER_SUFFIX = ":dead"
# Stream entries per read (and per transaction). A gateway entry holds up to 500 records, so
# a busy stream gives up to 20,000 rows a transaction on PostgreSQL and 10,000 on SQLite:
# past that the commit's cost is already amortised (bench/ingest.py) and a bigger batch only
# holds more memory and makes a redelivery longer.
ENTRIES_PER_READ = {"postgresql": 40, "sqlite": 20}
DEFAULT_ENTRIES_PER_READ = 20


# -- the record's schema, from AiCallRecord and CallLog -------------------------------------


@dataclass(frozen=True)
class Column:
    """One call-record field and the CallLog column it fills, with what a value must be."""

    name: str
    kind: str  # "text", "int", "float", "bool", "time" (epoch seconds), "decimal" (a string)
    required: bool  # no default in the record: one without it is not a call record
    default: Any
    nullable: bool  # None is a value (else None is refused, or stored as "" for text)
    max_length: int | None = None
    low: int | None = None
    high: int | None = None


def _kind(annotation: str, field: Field) -> str:
    if isinstance(field, DateTimeField):
        return "time"
    if isinstance(field, DecimalField):
        return "decimal"
    base = annotation.split("|")[0].strip()
    return {"str": "text", "int": "int", "float": "float", "bool": "bool"}[base]


def _columns() -> tuple[Column, ...]:
    model_fields = {f.name: f for f in CallLog._meta.concrete_fields}
    columns = []
    for spec in AiCallRecord.__dataclass_fields__.values():
        field = model_fields[spec.name]  # every CallRecord field has a column (callrecord.py)
        annotation = str(spec.type)
        kind = _kind(annotation, field)
        low, high = (None, None)
        if kind == "int":
            low, high = BaseDatabaseOperations.integer_field_ranges[field.get_internal_type()]
        columns.append(
            Column(
                name=spec.name,
                kind=kind,
                required=spec.default is MISSING,
                default=None if spec.default is MISSING else spec.default,
                nullable="None" in annotation and field.null,
                max_length=field.max_length if isinstance(field, CharField) else None,
                low=low,
                high=high,
            )
        )
    return tuple(columns)


COLUMNS = _columns()
NAMES = tuple(column.name for column in COLUMNS)
_TIME = NAMES.index("time")
_KEY_PREFIX = NAMES.index("key_prefix")
_LATEST_TIME = 253402300799.0  # 9999-12-31T23:59:59Z: the last second a datetime can hold
_MAX_FLOAT = 1.7976931348623157e308
_COST_PLACES = Decimal(1).scaleb(-CallLog._meta.get_field("cost").decimal_places)
_COST_LIMIT = Decimal(10) ** (
    CallLog._meta.get_field("cost").max_digits - CallLog._meta.get_field("cost").decimal_places
)


_TRACE_ID = re.compile("[0-9a-f]{32}").fullmatch


class RecordError(ValueError):
    """A decoded record that is not a storable CallRecord."""


def _cost(value: str) -> str:
    try:
        amount = Decimal(value).quantize(_COST_PLACES)
    except (InvalidOperation, ValueError) as error:
        raise RecordError("cost: not a decimal") from error
    if not amount.is_finite() or abs(amount) >= _COST_LIMIT:
        raise RecordError("cost: out of range")
    return str(amount)


def _check_source(index: int, column: Column) -> list[str]:
    """The lines that read column ``column`` of ``data`` into ``v<index>``, checked."""
    v, name = f"v{index}", column.name
    fail = f"raise RecordError({name!r})"
    # A missing required field is a KeyError: not a call record.
    lines = [f"{v} = data[{name!r}]" if column.required else f"{v} = get({name!r}, {column.default!r})"]
    if column.kind == "text" and not column.nullable and not column.required:
        lines.append(f"if {v} is None: {v} = ''")
    test = {
        # The request id is the key that makes a second delivery harmless: never empty.
        "text": f"type({v}) is str" + (f" and {v} != ''" if name == "request_id" else ""),
        "int": f"type({v}) is int and {column.low} <= {v} <= {column.high}",
        "float": f"(type({v}) is float or type({v}) is int) and -{_MAX_FLOAT!r} <= {v} <= {_MAX_FLOAT!r}",
        "bool": f"type({v}) is bool or type({v}) is int",
        "time": f"(type({v}) is float or type({v}) is int) and 0 <= {v} <= {_LATEST_TIME!r}",
        "decimal": f"type({v}) is str",
    }[column.kind]
    if column.nullable:
        test = f"{v} is None or ({test})"
    lines.append(f"if not ({test}): {fail}")
    if column.kind == "text":
        guard = f"{v} is not None and " if column.nullable else ""
        # PostgreSQL text cannot hold NUL: a client-chosen string (a model name) must not
        # cost the record, nor the batch.
        lines.append(f"if {guard}'\\x00' in {v}: {v} = {v}.replace('\\x00', '\\ufffd')")
        if name == "trace_id":  # found by exact match only: anything else is no trace id
            lines.append(f"if {v} and not _trace_id({v}): {v} = ''")
        if column.max_length is not None:
            if name == "path":  # a long path is cut (as always), not refused
                lines.append(f"{v} = {v}[:{column.max_length}]")
            else:
                lines.append(f"if {guard}len({v}) > {column.max_length}: {fail}")
    elif column.kind == "float" or column.kind == "time":
        lines.append(f"if {v} is not None: {v} = float({v})" if column.nullable else f"{v} = float({v})")
    elif column.kind == "bool":
        lines.append(f"{v} = bool({v})")
    elif column.kind == "decimal":
        lines.append(f"if {v} is not None: {v} = _cost({v})")
    return lines


def _compile_reader(columns: Sequence[Column]) -> Callable[[Any], tuple[Any, ...]]:
    """A function from one decoded record to its row (a tuple in ``columns`` order), raising
    RecordError or KeyError when it is not a CallRecord. Generated from the schema once, as
    dataclasses generate ``__init__``: a call is straight-line code, which matters at a
    hundred thousand records a second (a loop over column objects costs three times as much)."""
    body = ["def read_row(data):", "    if type(data) is not dict: raise RecordError('not a JSON object')"]
    body.append("    get = data.get")
    for index, column in enumerate(columns):
        body += [f"    {line}" for line in _check_source(index, column)]
    body.append(f"    return ({', '.join(f'v{i}' for i in range(len(columns)))},)")
    namespace: dict[str, Any] = {"RecordError": RecordError, "_cost": _cost, "_trace_id": _TRACE_ID}
    exec(compile("\n".join(body), "<analytics.ingest.read_row>", "exec"), namespace)  # noqa: S102 - our own schema
    return namespace["read_row"]  # type: ignore[no-any-return]


read_row = _compile_reader(COLUMNS)


def rows_of(entries: Iterable[tuple[Any, dict[bytes, bytes] | None]]) -> list[tuple[Any, ...]]:
    """The storable rows of stream entries; every record that is not one is logged and skipped."""
    rows = []
    for _entry_id, fields in entries:
        if not fields:
            continue
        for data in records_of(fields):
            try:
                rows.append(read_row(data))
            except (RecordError, KeyError) as error:
                log.error("unreadable call record skipped (%s): %r", error, repr(data)[:200])
    return rows


def to_row(data: Any) -> CallLog | None:
    """A CallLog object from one decoded record, or None (and an error logged)."""
    try:
        values = dict(zip(NAMES, read_row(data), strict=True))
    except (RecordError, KeyError) as error:
        log.error("unreadable call record skipped (%s): %r", error, repr(data)[:200])
        return None
    values["time"] = datetime.fromtimestamp(values["time"], tz=UTC)
    return CallLog(**values)


# -- storing rows -----------------------------------------------------------------------


def _quoted(connection: Any, names: Iterable[str]) -> str:
    return ", ".join(connection.ops.quote_name(name) for name in names)


def _column_names() -> list[str]:
    return [CallLog._meta.get_field(name).column for name in NAMES]


STAGING = "portico_ingest_staging"
_staging_types: dict[str, list[int]] = {}


def _store_postgresql(connection: Any, using: str, rows: list[tuple[Any, ...]], *, nested: bool) -> int:
    q = connection.ops.quote_name
    table, columns = q(CallLog._meta.db_table), _column_names()
    cols = _quoted(connection, columns)
    time_col, cost_col = q(CallLog._meta.get_field("time").column), q(CallLog._meta.get_field("cost").column)
    # The staging table has the real table's column types, except the time (epoch seconds,
    # converted by PostgreSQL) and the cost (checked text, cast by PostgreSQL).
    staged = [
        f"extract(epoch FROM {time_col})::float8 AS {time_col}"
        if name == "time"
        else f"{cost_col}::text AS {cost_col}"
        if name == "cost"
        else q(column)
        for name, column in zip(NAMES, columns, strict=True)
    ]
    selected = [
        f"to_timestamp({time_col})" if name == "time" else f"{cost_col}::numeric" if name == "cost" else q(column)
        for name, column in zip(NAMES, columns, strict=True)
    ]
    keys, prefix_col, used_col = q(ApiKey._meta.db_table), q("prefix"), q("last_used_at")
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {STAGING} ON COMMIT DELETE ROWS AS "  # noqa: S608 - identifiers from the models
            f"SELECT {', '.join(staged)} FROM {table} WITH NO DATA"
        )
        if using not in _staging_types:
            cursor.execute(f"SELECT {cols} FROM {STAGING} LIMIT 0")  # noqa: S608 - identifiers from the models
            _staging_types[using] = [d.type_code for d in cursor.description]
        if nested:  # inside a caller's transaction no commit has emptied the staging table
            cursor.execute(f"TRUNCATE {STAGING}")
        raw = cursor.cursor  # psycopg's own cursor, under Django's wrapper
        with raw.copy(f"COPY {STAGING} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_staging_types[using])
            write = copy.write_row
            for row in rows:
                write(row)
        cursor.execute(
            f"INSERT INTO {table} ({cols}) SELECT {', '.join(selected)} FROM {STAGING} "  # noqa: S608 - identifiers from the models
            f"ON CONFLICT ({q(CallLog._meta.get_field('request_id').column)}) DO NOTHING"
        )
        stored = cursor.rowcount
        # Keys' last use: rows locked in id order, so two ingesters never deadlock on them.
        cursor.execute(
            f"WITH used AS (SELECT {q('key_prefix')} AS prefix, to_timestamp(max({time_col})) AS at "  # noqa: S608 - identifiers from the models
            f"FROM {STAGING} WHERE {q('key_prefix')} <> '' GROUP BY 1), "
            f"locked AS (SELECT k.id, used.at FROM {keys} k JOIN used ON k.{prefix_col} = used.prefix "
            f"WHERE k.{used_col} IS NULL OR k.{used_col} < used.at ORDER BY k.id FOR UPDATE OF k) "
            f"UPDATE {keys} k SET {used_col} = locked.at FROM locked "
            f"WHERE k.id = locked.id AND (k.{used_col} IS NULL OR k.{used_col} < locked.at)"
        )
    return stored


def _sqlite_time(epoch: float) -> str:
    """The text Django's SQLite backend stores for an aware datetime (naive UTC, str())."""
    return str(datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None))


def _store_sqlite(connection: Any, rows: list[tuple[Any, ...]]) -> int:
    q = connection.ops.quote_name
    table, columns = q(CallLog._meta.db_table), _column_names()
    placeholders = ", ".join("?" * len(columns))
    at = _TIME
    rows = [(*row[:at], _sqlite_time(row[at]), *row[at + 1 :]) for row in rows]
    connection.ensure_connection()
    cursor = connection.connection.cursor()  # sqlite3's own: ? placeholders, no rewriting per call
    try:
        cursor.executemany(
            f"INSERT INTO {table} ({_quoted(connection, columns)}) VALUES ({placeholders}) "  # noqa: S608 - identifiers from the models
            f"ON CONFLICT ({q(CallLog._meta.get_field('request_id').column)}) DO NOTHING",
            rows,
        )
        stored = cursor.rowcount
        latest: dict[str, str] = {}
        for row in rows:
            prefix = row[_KEY_PREFIX]
            if prefix and row[at] > latest.get(prefix, ""):
                latest[prefix] = row[at]
        if latest:
            # Django's SQLite datetimes are fixed-format text, so text order is time order.
            cursor.executemany(
                f"UPDATE {q(ApiKey._meta.db_table)} SET last_used_at = ? "  # noqa: S608 - identifiers from the models
                "WHERE prefix = ? AND (last_used_at IS NULL OR last_used_at < ?)",
                [(when, prefix, when) for prefix, when in sorted(latest.items())],
            )
    finally:
        cursor.close()
    return stored


def _store_generic(using: str, rows: list[tuple[Any, ...]]) -> int:
    objects = []
    latest: dict[str, datetime] = {}
    for row in rows:
        values = dict(zip(NAMES, row, strict=True))
        values["time"] = when = datetime.fromtimestamp(values["time"], tz=UTC)
        objects.append(CallLog(**values))
        if (prefix := values["key_prefix"]) and (prefix not in latest or when > latest[prefix]):
            latest[prefix] = when
    before = CallLog.objects.using(using).count()
    CallLog.objects.using(using).bulk_create(objects, ignore_conflicts=True, batch_size=1000)
    for prefix, when in sorted(latest.items()):
        ApiKey.objects.using(using).filter(prefix=prefix, last_used_at__lt=when).update(last_used_at=when)
        ApiKey.objects.using(using).filter(prefix=prefix, last_used_at__isnull=True).update(last_used_at=when)
    return CallLog.objects.using(using).count() - before


def store_rows(rows: list[tuple[Any, ...]], *, using: str = DEFAULT_DB_ALIAS) -> int:
    """Insert rows (from ``read_row``) in one transaction, skipping request ids already
    stored, and move their keys' last use forward. Returns the number of new rows."""
    if not rows:
        return 0
    connection = connections[using]
    nested = connection.in_atomic_block
    # The raw cursors' errors become Django's (DataError, IntegrityError...), as the ORM's are.
    with transaction.atomic(using=using), connection.wrap_database_errors:
        if connection.vendor == "postgresql":
            return _store_postgresql(connection, using, rows, nested=nested)
        if connection.vendor == "sqlite":
            return _store_sqlite(connection, rows)
        return _store_generic(using, rows)


# -- the stream ---------------------------------------------------------------------------


def _consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _ensure_group(client: redis.Redis, stream: str) -> None:
    try:
        client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except redis.ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


def _settle(client: redis.Redis, stream: str, ids: list[Any]) -> None:
    """Acknowledge and delete entries whose rows are committed (one round trip)."""
    if ids:
        pipe = client.pipeline(transaction=False)
        pipe.xack(stream, GROUP, *ids)
        pipe.xdel(stream, *ids)
        pipe.execute()


def _store_one_by_one(client: redis.Redis, stream: str, entries: list[Any], using: str, error: Exception) -> int:
    """After the database refused a batch for its data: each entry in its own transaction;
    one it refuses again goes to the dead-letter stream, and the rest are stored."""
    log.error("call log batch refused (%s); storing its %d entries one by one", error, len(entries))
    stored = 0
    for entry_id, fields in entries:
        try:
            stored += store_rows(rows_of([(entry_id, fields)]), using=using)
        except (DataError, IntegrityError) as refused:
            log.exception("call log entry %r moved to %s%s", entry_id, stream, DEAD_LETTER_SUFFIX)
            dead = {k: v for k, v in (fields or {}).items()} | {b"error": str(refused)[:1000].encode()}
            client.xadd(stream + DEAD_LETTER_SUFFIX, dead)
    return stored


def ingest_entries(client: redis.Redis, stream: str, entries: list[Any], *, using: str = DEFAULT_DB_ALIAS) -> int:
    """Store one read's entries, then acknowledge and delete them. Returns the new rows."""
    try:
        stored = store_rows(rows_of(entries), using=using)
    except (DataError, IntegrityError) as error:
        stored = _store_one_by_one(client, stream, entries, using, error)
    _settle(client, stream, [entry_id for entry_id, _fields in entries])
    return stored


def ingest_call_logs(
    *,
    batch_size: int | None = None,
    max_batches: int | None = None,
    max_seconds: float | None = None,
    client: redis.Redis | None = None,
    claim_idle_ms: int = CLAIM_IDLE_MS,
    using: str = DEFAULT_DB_ALIAS,
    block_ms: int | None = None,
    consumer: str | None = None,
) -> int:
    """Ingest the stream until it has nothing new, ``max_batches`` reads were stored or
    ``max_seconds`` passed. Returns the number of rows stored (new ones only).

    First takes over entries other consumers left pending for ``claim_idle_ms`` (a crashed
    worker's), then reads new ones, ``batch_size`` entries at a time (by default per
    database: ``ENTRIES_PER_READ``). ``block_ms`` waits that long for new entries before
    giving up (the follow mode of the management command)."""
    client = client or redis.Redis.from_url(settings.REDIS_URL)
    stream = settings.PORTICO_CALL_LOG_STREAM
    consumer = consumer or _consumer_name()
    count = batch_size or ENTRIES_PER_READ.get(connections[using].vendor, DEFAULT_ENTRIES_PER_READ)
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    _ensure_group(client, stream)
    stored = batches = 0

    def more() -> bool:
        return (max_batches is None or batches < max_batches) and (deadline is None or time.monotonic() < deadline)

    cursor: Any = "0-0"
    while more():
        # Entries a crashed consumer read but never acknowledged.
        cursor, claimed, *_ = client.xautoclaim(stream, GROUP, consumer, claim_idle_ms, cursor, count=count)
        if claimed:
            stored += ingest_entries(client, stream, claimed, using=using)
            batches += 1
        if cursor in (b"0-0", "0-0"):
            break
    while more():
        answer = client.xreadgroup(GROUP, consumer, {stream: ">"}, count=count, block=block_ms)
        if not answer or not answer[0][1]:
            break
        stored += ingest_entries(client, stream, answer[0][1], using=using)
        batches += 1
    return stored
