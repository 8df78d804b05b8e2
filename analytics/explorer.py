"""Log explorer: a tenant's raw calls (or, for staff, everyone's), filtered, paged, opened one
by one, and exported as CSV.

Every function takes the actor and the scope (``tenant``; None for the platform, staff only)
and filters by the scope first, so another tenant's call is simply not there: opening it by
request id is NotFound, as for an id that never existed.

Pages are keyset-paged on (time, id), newest first: the next page starts below the last row
shown (``Cursor``), so page 500 costs what page 1 does (an index range scan on
``(tenant_id, time)`` or ``time``), never an OFFSET over everything before it.

The captured prompt and response of an AI call are shown to members of the call's tenant
only (``CallLog.prompt_capture``: "shown to the owning tenant only"), not to staff who are
not members, and never exported.
"""

from __future__ import annotations

import base64
import binascii
import csv
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db.models import Q, QuerySet

from analytics.dashboards import Window, parse_window, require_reader
from analytics.models import CallLog
from portal.models import Tenant
from portal.services.access import membership
from portal.services.errors import InvalidInput, NotFound

PAGE_SIZE = 50
EXPORT_LIMIT = 100_000
_STATUS_CLASSES = {"1xx": 1, "2xx": 2, "3xx": 3, "4xx": 4, "5xx": 5}
_TEXT_FILTERS = {"key_prefix": 16, "error_code": 40, "model": 100}
_TRACE_ID = re.compile("[0-9a-f]{32}").fullmatch

EXPORT_FIELDS = (
    "time",
    "request_id",
    "client_request_id",
    "trace_id",
    "method",
    "path",
    "status",
    "error_code",
    "latency_ms",
    "upstream_latency_ms",
    "api_id",
    "version_id",
    "application_id",
    "key_prefix",
    "bytes_in",
    "bytes_out",
    "cache_hit",
    "client_ip",
    "model",
    "provider",
    "upstream_model",
    "tokens_in",
    "tokens_out",
    "tokens_cached",
    "cost",
    "ttft_ms",
    "fallbacks",
    "channel",  # "mcp" for a call made as an MCP tool call
)
STAFF_EXPORT_FIELDS = (*EXPORT_FIELDS[:2], "tenant_id", *EXPORT_FIELDS[2:])


@dataclass(frozen=True)
class CallFilter:
    window: Window
    api_id: int | None = None
    version_id: int | None = None
    application_id: int | None = None
    key_prefix: str = ""
    status: int | None = None
    status_class: int | None = None
    error_code: str = ""
    model: str = ""
    trace_id: str = ""

    def apply(self, calls: QuerySet[CallLog]) -> QuerySet[CallLog]:
        calls = calls.filter(time__gte=self.window.start, time__lt=self.window.end)
        if self.api_id is not None:
            calls = calls.filter(api_id=self.api_id)
        if self.version_id is not None:
            calls = calls.filter(version_id=self.version_id)
        if self.application_id is not None:
            calls = calls.filter(application_id=self.application_id)
        if self.key_prefix:
            calls = calls.filter(key_prefix=self.key_prefix)
        if self.status is not None:
            calls = calls.filter(status=self.status)
        if self.status_class is not None:
            calls = calls.filter(status__gte=self.status_class * 100, status__lt=self.status_class * 100 + 100)
        if self.error_code:
            calls = calls.filter(error_code=self.error_code)
        if self.model:
            calls = calls.filter(model=self.model)
        if self.trace_id:
            calls = calls.filter(trace_id=self.trace_id)
        return calls


def _int(params: Mapping[str, str], name: str, label: str) -> int | None:
    value = (params.get(name) or "").strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 18:  # "²".isdigit(): int() fails
        raise InvalidInput(f"The {label} must be a number.")
    return int(value)


def parse_filter(params: Mapping[str, str], *, now: datetime | None = None) -> CallFilter:
    """The filter asked for by query parameters; InvalidInput with a clear message otherwise."""
    window = parse_window(params, default="day", now=now)
    texts: dict[str, str] = {}
    for name, limit in _TEXT_FILTERS.items():
        value = (params.get(name) or "").strip()
        if len(value) > limit:
            raise InvalidInput(f"The {name.replace('_', ' ')} is at most {limit} characters.")
        if "\x00" in value:  # PostgreSQL refuses NUL in any string: it would be a 500
            raise InvalidInput(f"The {name.replace('_', ' ')} cannot contain NUL characters.")
        texts[name] = value
    status: int | None = None
    status_class: int | None = None
    raw_status = (params.get("status") or "").strip().lower()
    if raw_status in _STATUS_CLASSES:
        status_class = _STATUS_CLASSES[raw_status]
    elif raw_status:
        if not (raw_status.isascii() and raw_status.isdigit()) or not 100 <= int(raw_status) <= 599:
            raise InvalidInput("A status is a code from 100 to 599 or a class such as 4xx.")
        status = int(raw_status)
    # Pasted from a tracing tool, which may print it in capitals; stored in lowercase (W3C).
    trace_id = (params.get("trace_id") or "").strip().lower()
    if trace_id and not _TRACE_ID(trace_id):
        raise InvalidInput("A trace id is 32 hexadecimal digits.")
    return CallFilter(
        window=window,
        trace_id=trace_id,
        api_id=_int(params, "api", "API"),
        version_id=_int(params, "version", "version"),
        application_id=_int(params, "application", "application"),
        status=status,
        status_class=status_class,
        **texts,
    )


@dataclass(frozen=True)
class Cursor:
    """Where a page ends: the (time, id) of its last row."""

    time: datetime
    id: int

    def encode(self) -> str:
        raw = f"{self.time.astimezone(UTC).isoformat()}|{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
            when, _sep, pk = raw.partition("|")
            time = datetime.fromisoformat(when)
            if time.tzinfo is None:
                raise ValueError
            return cls(time, int(pk))
        except (ValueError, UnicodeDecodeError, binascii.Error):
            raise InvalidInput("That page link is broken: start again from the first page.") from None


def _scoped(tenant: Tenant | None, using: str) -> QuerySet[CallLog]:
    calls = CallLog.objects.using(using)
    return calls if tenant is None else calls.filter(tenant_id=tenant.pk)


@dataclass
class Page:
    calls: list[CallLog]
    next_cursor: str | None


def list_calls(
    actor: Any,
    tenant: Tenant | None,
    filters: CallFilter,
    *,
    after: str | None = None,
    size: int = PAGE_SIZE,
    using: str = "default",
) -> Page:
    """One page of the scope's calls matching ``filters``, newest first, starting below the
    ``after`` cursor. NotFound for anyone who may not look."""
    require_reader(actor, tenant)
    calls = filters.apply(_scoped(tenant, using)).defer("prompt_capture", "response_capture")
    if after:
        cursor = Cursor.decode(after)
        calls = calls.filter(Q(time__lt=cursor.time) | Q(time=cursor.time, id__lt=cursor.id))
    rows = list(calls.order_by("-time", "-id")[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return Page(rows, Cursor(rows[-1].time, rows[-1].pk).encode() if more and rows else None)


def get_call(actor: Any, tenant: Tenant | None, request_id: str, *, using: str = "default") -> dict[str, Any]:
    """One call of the scope by request id, with all its fields; ``captures_visible`` says
    whether the prompt and response may be shown (members of the call's tenant only; they
    are removed otherwise). NotFound when it is not in the scope."""
    require_reader(actor, tenant)
    if not request_id or len(request_id) > 64 or "\x00" in request_id:  # NUL: PostgreSQL's error
        raise NotFound("No such call.")
    call = _scoped(tenant, using).filter(request_id=request_id).first()
    if call is None:
        raise NotFound("No such call.")
    visible = False
    if call.tenant_id is not None:
        owner = Tenant.objects.filter(pk=call.tenant_id).first()
        visible = owner is not None and membership(actor, owner) is not None
    if not visible:
        call.prompt_capture = None
        call.response_capture = None
    return {"call": call, "captures_visible": visible}


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run: text starting with = + - @ (or a tab or CR,
    which some spreadsheets skip before reading a formula) gets a leading quote."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


class _Echo:
    def write(self, value: str) -> str:
        return value


def export_csv(
    actor: Any, tenant: Tenant | None, filters: CallFilter, *, limit: int = EXPORT_LIMIT, using: str = "default"
) -> Iterator[str]:
    """CSV lines of the scope's calls matching ``filters``, newest first, at most ``limit``
    of them (then a last line says the export was cut). Checked before the first line is
    made, so a refused export raises rather than streams. Captures are never exported."""
    require_reader(actor, tenant)
    names = EXPORT_FIELDS if tenant is not None else STAFF_EXPORT_FIELDS
    calls = filters.apply(_scoped(tenant, using)).order_by("-time", "-id").values_list(*names)[: limit + 1]

    def lines() -> Iterator[str]:
        writer = csv.writer(_Echo())
        yield writer.writerow(names)
        for count, row in enumerate(calls.iterator(chunk_size=2000)):
            if count >= limit:
                yield writer.writerow([f"# cut at {limit} rows: narrow the range or the filters"])
                return
            yield writer.writerow([safe_cell(value) for value in row])

    return lines()
