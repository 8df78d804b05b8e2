"""W3C Trace Context (https://www.w3.org/TR/trace-context/) at the gateway's edge.

Every call belongs to a trace: the client's, when it sent a valid ``traceparent``, else a new
one. The gateway is a participant with a span of its own: upstreams receive
``traceparent: 00-<trace id>-<the gateway's span id>-<flags>``, never the client's header as
it came, and the trace id goes into the call record. Anything invalid in the client's headers
starts a new trace; it is never an error to the client (the spec's "restart the trace").

The sampled flag is parent-based: a valid parent's flag is kept (so is the rest of its flags
byte: the trace id it describes is unchanged); a trace the gateway starts is sampled when its
trace id falls under ``GATEWAY_TRACE_SAMPLE_RATIO`` (the lower 64 bits against the ratio, as
OpenTelemetry's TraceIdRatioBased does, so every participant deciding by ratio agrees). The
decision is the same whether or not this gateway exports spans (``gateway/otlp.py``): the
gateway is the head of most traces, and services behind it sample by its flag.

This runs on every request: a dictionary lookup when the client sent no ``traceparent``,
and one ``random.getrandbits`` for the ids (Mersenne Twister, reseeded by Python in each
forked worker; trace ids are identifiers, not secrets).
"""

from __future__ import annotations

import re
from random import getrandbits

TRACEPARENT = b"traceparent"
TRACESTATE = b"tracestate"
SAMPLED = 0x01
_MASK64 = (1 << 64) - 1
# The spec's size limits for what a participant propagates: a longer tracestate may be cut
# at member boundaries; the gateway drops it whole (it is opaque to us, so no member is ours).
MAX_TRACESTATE_CHARS = 512
MAX_TRACESTATE_MEMBERS = 32
_HEX = b"0123456789abcdef"
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16
# tracestate list-member: key "=" value. key: lcalpha then up to 255 of [a-z0-9_-*/], or a
# multi-tenant key tenant@system; value: up to 256 printable ASCII except "," and "=", not
# ending in a space.
_KEY = rb"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})"
_VALUE = rb"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
_MEMBER = re.compile(rb"[ \t]*(" + _KEY + rb")=" + _VALUE + rb"[ \t]*")


def sample_bound(ratio: float) -> int:
    """The trace-id threshold of a ratio: a new trace is sampled when its lower 64 bits are
    below it (0 samples nothing, 1 everything)."""
    return min(round(ratio * (1 << 64)), 1 << 64)


def parse_traceparent(value: bytes) -> tuple[str, str, int] | None:
    """(trace id, parent id, flags) of a valid ``traceparent`` value, else None.

    Version 00 is exactly ``00-<32 hex>-<16 hex>-<2 hex>``, lowercase; neither id all zeros.
    A higher version (not ff) may be longer: its first fields are read as version 00's, and
    what follows them must start with "-"."""
    value = value.strip(b" \t")
    size = len(value)
    if size < 55 or value[2] != 45 or value[35] != 45 or value[52] != 45:  # 45: "-"
        return None
    version = value[:2]
    if version == b"00":
        if size != 55:
            return None
    elif version == b"ff" or (size > 55 and value[55] != 45) or version.translate(None, _HEX):
        return None
    trace_id, parent_id, flags = value[3:35], value[36:52], value[53:55]
    if (trace_id + parent_id + flags).translate(None, _HEX) or trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return trace_id.decode(), parent_id.decode(), int(flags, 16)


def valid_tracestate(value: bytes) -> bytes | None:
    """The tracestate to pass on, or None when it is empty, too long, has too many or
    malformed members, or repeats a key (the spec lets a participant drop an invalid one)."""
    value = value.strip(b" \t")
    if not value or len(value) > MAX_TRACESTATE_CHARS:
        return None
    members = [m for m in value.split(b",") if m.strip(b" \t")]  # empty members are allowed
    if len(members) > MAX_TRACESTATE_MEMBERS:
        return None
    keys = set()
    for member in members:
        match = _MEMBER.fullmatch(member)
        if match is None or match[1] in keys:
            return None
        keys.add(match[1])
    return b",".join(m.strip(b" \t") for m in members)


def _all_values(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [value for field, value in headers if field == name]


def begin(
    fields: dict[bytes, bytes], headers: list[tuple[bytes, bytes]], bound: int
) -> tuple[str, str, str, int, bytes | None]:
    """(trace id, the gateway's span id, the client's parent span id or "", flags, tracestate
    to forward or None) of a request, from its headers (``fields``: one value per name;
    ``headers``: every pair, consulted only when some header came more than once)."""
    value = fields.get(TRACEPARENT)
    parent = None
    if value is not None:
        repeated = len(headers) != len(fields)
        # Two traceparent headers: which one is the parent cannot be told, so neither is.
        if not repeated or len(_all_values(headers, TRACEPARENT)) == 1:
            parent = parse_traceparent(value)
    if parent is None:
        ids = getrandbits(192)
        if not (ids >> 64 and ids & _MASK64):  # neither id may be all zeros (2^-64 odds)
            ids |= (1 << 64) | 1
        text = f"{ids:048x}"
        trace_id = text[:32]
        flags = SAMPLED if (ids >> 64) & _MASK64 < bound else 0
        return trace_id, text[32:], "", flags, None
    trace_id, parent_id, flags = parent
    span_id = f"{getrandbits(64) or 1:016x}"
    state = fields.get(TRACESTATE)
    if state is not None:
        if len(headers) != len(fields):
            # Several tracestate headers are one list, in order (RFC 9110 5.3).
            state = b",".join(_all_values(headers, TRACESTATE))
        state = valid_tracestate(state)
    return trace_id, span_id, parent_id, flags, state


def child_headers(trace_id: str, span_id: str, flags: int, tracestate: bytes | None) -> list[tuple[bytes, bytes]]:
    """Headers that make a request the gateway makes to itself (an MCP tool call) a child of
    this call's span, in its trace."""
    headers = [(TRACEPARENT, b"00-%s-%s-%02x" % (trace_id.encode(), span_id.encode(), flags))]
    if tracestate is not None:
        headers.append((TRACESTATE, tracestate))
    return headers


def traceparent_line(trace_id: str, span_id: str, flags: int, tracestate: bytes | None) -> bytes:
    """The header lines the gateway sends upstream: always version 00, its own span as parent."""
    line = b"traceparent: 00-%s-%s-%02x\r\n" % (trace_id.encode(), span_id.encode(), flags)
    if tracestate is not None:
        line += b"tracestate: %s\r\n" % tracestate
    return line
