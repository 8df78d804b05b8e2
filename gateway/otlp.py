"""Spans of sampled calls, exported with OpenTelemetry over OTLP/HTTP (protobuf).

Imported only when an endpoint is configured (``GatewaySettings.otlp_endpoint``): without
one, the gateway never loads the OpenTelemetry SDK. With one, a call whose trace is sampled
(``tracing.py``) stamps the start of each step (``Call.marks``: a ``perf_counter_ns`` and a
list append); after its answer has left, ``SpanExport.export`` turns the stamps into
``ReadableSpan`` objects and hands them to a ``BatchSpanProcessor``, whose own thread
encodes and posts them. The event loop never waits on the collector: when the processor's
queue is full (a collector that is down or slow), spans are dropped, and the SDK logs it.

The SDK's own protobuf encoder builds a message object per span and per attribute: 25 us a
span, 50 for the call's with its attributes, on this 2-core box. ``encode_request`` writes
the same OTLP bytes directly (a test decodes both and compares them), which took a sampled
call's whole cost (build, queue, encode, post) from 141 to 80 us of CPU in a loop; the
exporter keeps everything else of the SDK's OTLP/HTTP exporter (its HTTP client: retries,
headers, compression, TLS), and falls back to the SDK's encoding when that client is not
where this version of the SDK keeps it. What span export costs a worker is measured in
``python -m bench.run --only-tracing`` (bench/README.md).

The spans: the call (kind SERVER, the gateway's span id, the one sent upstream in
``traceparent``, under the client's parent span when there was one), and one child per step
(CLIENT for the upstream and each provider attempt, INTERNAL for the others), each from its
stamp to the next (the last to the call's end). No span carries a
key, a body, a query string or the path past the route's base path.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import time
from collections.abc import Sequence
from random import getrandbits
from typing import TYPE_CHECKING, Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from gateway.callrecord import AiCallRecord

if TYPE_CHECKING:
    from gateway.call import Call

log = logging.getLogger("portico.gateway.tracing")

SERVICE_NAME = "portico-gateway"


class SpanExport:
    """One per worker, made at start-up (after the fork: the processor owns a thread)."""

    def __init__(self, endpoint: str) -> None:
        # Resource.create also reads OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME; ours names
        # the service unless the operator chose another name.
        attributes: dict[str, Any] = {"service.instance.id": f"{socket.gethostname()}-{os.getpid()}"}
        if not os.environ.get("OTEL_SERVICE_NAME"):
            attributes["service.name"] = SERVICE_NAME
        self.resource = Resource.create(attributes)
        self.scope = InstrumentationScope("portico.gateway")
        # The exporter reads OTEL_EXPORTER_OTLP_(TRACES_)HEADERS, _TIMEOUT, _COMPRESSION and
        # the TLS files; the processor OTEL_BSP_* (queue size, delay, batch size).
        self.processor = BatchSpanProcessor(SpanExporter(endpoint, self.resource, self.scope))

    def export(self, call: Call) -> None:
        """Build the call's spans and queue them; never raises into the request."""
        try:
            for span in self.spans(call, time.perf_counter_ns(), time.time_ns()):
                self.processor.on_end(span)
        except Exception:
            log.exception("could not export the spans of request %s", call.record.request_id)

    def spans(self, call: Call, now_ns: int, epoch_now_ns: int) -> list[ReadableSpan]:
        record = call.record
        trace_id = int(call.trace_id, 16)
        flags = TraceFlags(call.trace_flags & 0xFF)
        context = SpanContext(trace_id, int(call.span_id, 16), False, flags)
        parent = SpanContext(trace_id, int(call.parent_id, 16), True, flags) if call.parent_id else None
        # perf_counter for durations (monotonic), the wall clock once for where they sit.
        offset = epoch_now_ns - now_ns
        started = int(call.started * 1e9)
        path = call.span_path()
        attributes: dict[str, Any] = {
            "http.request.method": call.method,
            "http.response.status_code": record.status,
            "portico.request_id": record.request_id,
        }
        if path:
            attributes["url.path"] = path
            attributes["http.route"] = path
        for name, value in (
            ("portico.api_id", record.api_id),
            ("portico.version_id", record.version_id),
            ("portico.tenant_id", record.tenant_id),
            ("portico.application_id", record.application_id),
            ("portico.upstream_latency_ms", record.upstream_latency_ms),
        ):
            if value is not None:
                attributes[name] = value
        if record.cache_hit:
            attributes["portico.cache_hit"] = True
        if record.error_code:
            attributes["error.type"] = record.error_code
        if isinstance(record, AiCallRecord):
            _ai_attributes(record, attributes)
        failed = record.status >= 500
        status = Status(StatusCode.ERROR, record.error_code or None) if failed else Status(StatusCode.UNSET)
        call_span = ReadableSpan(
            f"{call.method} {path}" if path else call.method,
            context,
            parent,
            self.resource,
            attributes,
            kind=SpanKind.SERVER,
            status=status,
            start_time=started + offset,
            end_time=now_ns + offset,
            instrumentation_scope=self.scope,
        )
        spans = [call_span]
        marks = call.marks or []
        for index, (name, at, extra) in enumerate(marks):
            end = marks[index + 1][1] if index + 1 < len(marks) else now_ns
            step_attributes: dict[str, Any] = dict(extra) if extra else {}
            last = index + 1 == len(marks)
            if last and record.error_code:
                step_attributes["error.type"] = record.error_code  # where the call ended
            spans.append(
                ReadableSpan(
                    name,
                    SpanContext(trace_id, getrandbits(64) or 1, False, flags),
                    context,
                    self.resource,
                    step_attributes,
                    kind=SpanKind.CLIENT if name in ("upstream", "provider") else SpanKind.INTERNAL,
                    status=status if last else Status(StatusCode.UNSET),
                    start_time=at + offset,
                    end_time=end + offset,
                    instrumentation_scope=self.scope,
                )
            )
        return spans

    def shutdown(self) -> None:
        """Export what is queued, then stop the processor's thread (blocking: call it off the loop)."""
        self.processor.shutdown()  # type: ignore[no-untyped-call]


# -- OTLP protobuf, written directly ----------------------------------------------------------
# Field numbers from opentelemetry/proto/trace/v1/trace.proto and common/v1/common.proto.
_PACK_DOUBLE = struct.Struct("<d").pack
_PACK_FIXED64 = struct.Struct("<Q").pack
_PACK_FIXED32 = struct.Struct("<I").pack
_KIND = {SpanKind.INTERNAL: 1, SpanKind.SERVER: 2, SpanKind.CLIENT: 3, SpanKind.PRODUCER: 4, SpanKind.CONSUMER: 5}
_FLAGS_HAS_IS_REMOTE, _FLAGS_IS_REMOTE = 0x100, 0x200  # SpanFlags, as the SDK sets them


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _delimited(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


def _any_value(value: Any) -> bytes:
    """An AnyValue (a oneof: written even when it holds its type's default)."""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        return _delimited(b"\x0a", value.encode())
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)  # int64: two's complement
    if isinstance(value, float):
        return b"\x21" + _PACK_DOUBLE(value)
    if isinstance(value, bytes):
        return _delimited(b"\x3a", value)
    if isinstance(value, Sequence):
        return _delimited(b"\x2a", b"".join(_delimited(b"\x0a", _any_value(v)) for v in value))
    raise TypeError(f"cannot encode an attribute of type {type(value).__name__}")


def _attributes(tag: bytes, attributes: Any) -> bytes:
    """Repeated KeyValue under ``tag``."""
    if not attributes:
        return b""
    return b"".join(
        _delimited(tag, _delimited(b"\x0a", key.encode()) + _delimited(b"\x12", _any_value(value)))
        for key, value in attributes.items()
    )


def _span(span: ReadableSpan) -> bytes:
    context, parent = span.context, span.parent
    assert context is not None and span.start_time is not None and span.end_time is not None
    parts = [
        b"\x0a\x10" + context.trace_id.to_bytes(16, "big"),
        b"\x12\x08" + context.span_id.to_bytes(8, "big"),
    ]
    if parent is not None:
        parts.append(b"\x22\x08" + parent.span_id.to_bytes(8, "big"))
    parts += [
        _delimited(b"\x2a", span.name.encode()),
        b"\x30" + _varint(_KIND[span.kind]),
        b"\x39" + _PACK_FIXED64(span.start_time),
        b"\x41" + _PACK_FIXED64(span.end_time),
        _attributes(b"\x4a", span.attributes),
    ]
    status = span.status
    code = status.status_code.value
    message = _delimited(b"\x12", status.description.encode()) if status.description else b""
    parts.append(_delimited(b"\x7a", message + (b"\x18" + _varint(code) if code else b"")))
    flags = _FLAGS_HAS_IS_REMOTE | (_FLAGS_IS_REMOTE if parent is not None and parent.is_remote else 0)
    parts.append(b"\x85\x01" + _PACK_FIXED32(flags))
    return b"".join(parts)


def encode_request(resource: Resource, scope: InstrumentationScope, spans: Sequence[ReadableSpan]) -> bytes:
    """An ExportTraceServiceRequest of spans that share one resource and scope."""
    scope_message = _delimited(b"\x0a", scope.name.encode())
    if scope.version:
        scope_message += _delimited(b"\x12", scope.version.encode())
    scope_spans = _delimited(b"\x0a", scope_message) + b"".join(_delimited(b"\x12", _span(s)) for s in spans)
    resource_spans = _delimited(b"\x0a", _attributes(b"\x0a", resource.attributes)) + _delimited(b"\x12", scope_spans)
    return _delimited(b"\x0a", resource_spans)


class SpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP exporter with ``encode_request`` in place of its encoder."""

    def __init__(self, endpoint: str, resource: Resource, scope: InstrumentationScope) -> None:
        super().__init__(endpoint=endpoint)
        self.resource = resource
        self.scope = scope

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        client = getattr(self, "_client", None)
        if (
            client is None
            or getattr(self, "_shutdown", True)
            or any(s.resource is not self.resource or s.instrumentation_scope is not self.scope for s in spans)
        ):
            return super().export(spans)
        try:
            data = encode_request(self.resource, self.scope, spans)
        except Exception:
            log.exception("could not encode %d spans", len(spans))
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS if client.export(data).success else SpanExportResult.FAILURE


def _ai_attributes(record: AiCallRecord, attributes: dict[str, Any]) -> None:
    for name, value in (
        ("gen_ai.request.model", record.model),
        ("gen_ai.system", record.provider),
        ("gen_ai.response.model", record.upstream_model),
        ("gen_ai.usage.input_tokens", record.tokens_in),
        ("gen_ai.usage.output_tokens", record.tokens_out),
    ):
        if value:
            attributes[name] = value
    if record.fallbacks:
        attributes["portico.fallbacks"] = record.fallbacks
