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
and two slices of a pool of random hex digits for the ids (``random.randbytes``: Mersenne
Twister, reseeded by Python in each forked worker; trace ids are identifiers, not secrets).
``start`` also builds the header lines for the upstream once, as bytes, so the proxy pastes
them in (``proxy.upstream_head``).
"""

from __future__ import annotations

import os
import re
from random import randbytes

TRACEPARENT = b"traceparent"
TRACESTATE = b"tracestate"
SAMPLED = 0x01
# The spec's size limits for what a participant propagates: a longer tracestate may be cut
# at member boundaries; the gateway drops it whole (it is opaque to us, so no member is ours).
MAX_TRACESTATE_CHARS = 512
MAX_TRACESTATE_MEMBERS = 32
_HEX = b"0123456789abcdef"
_ZERO_TRACE = b"0" * 32
_ZERO_SPAN = b"0" * 16
_ZERO_TRACE_TEXT = "0" * 32
_ZERO_SPAN_TEXT = "0" * 16
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


def _bound_text(bound: int) -> str:
    """``bound`` as 16 hex digits, so a trace id's lower half (16 hex digits) is compared
    with it as text: the same order as the numbers, without parsing the id back into an int.
    2^64 (sample everything) is "g", after every hex digit."""
    return "g" if bound >= 1 << 64 else f"{bound:016x}"


# Ids come from a pool of random hex digits, 256 calls' worth at a time: formatting a fresh
# 192-bit int as hex on every request (then encoding it again for the upstream) was most of
# the 1 us `begin` took per call. Emptied in a forked child, so no two workers share ids.
_POOL_IDS = 256
_pool = ""
_pool_pos = 0
_bound_cache: tuple[int, str] = (-1, "")


def _empty_pool() -> None:
    global _pool, _pool_pos
    _pool, _pool_pos = "", 0


os.register_at_fork(after_in_child=_empty_pool)


def _fresh_ids() -> tuple[str, str]:
    """A new (trace id, span id): 32 and 16 random lowercase hex digits, neither all zeros."""
    global _pool, _pool_pos
    while True:
        pos = _pool_pos
        if pos >= len(_pool):
            _pool, pos = randbytes(24 * _POOL_IDS).hex(), 0
        _pool_pos = pos + 48
        trace_id, span_id = _pool[pos : pos + 32], _pool[pos + 32 : pos + 48]
        if trace_id != _ZERO_TRACE_TEXT and span_id != _ZERO_SPAN_TEXT:  # 2^-64 odds
            return trace_id, span_id


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


def start(
    fields: dict[bytes, bytes], headers: list[tuple[bytes, bytes]], bound: int
) -> tuple[str, str, str, int, bytes | None, bytes]:
    """(trace id, the gateway's span id, the client's parent span id or "", flags, tracestate
    to forward or None, the upstream's header lines) of a request, from its headers
    (``fields``: one value per name; ``headers``: every pair, consulted only when some header
    came more than once). The lines are ``traceparent_line``'s, made once here."""
    global _bound_cache
    value = fields.get(TRACEPARENT)
    parent = None
    if value is not None:
        repeated = len(headers) != len(fields)
        # Two traceparent headers: which one is the parent cannot be told, so neither is.
        if not repeated or len(_all_values(headers, TRACEPARENT)) == 1:
            parent = parse_traceparent(value)
    if parent is None:
        trace_id, span_id = _fresh_ids()
        if _bound_cache[0] != bound:  # one bound per gateway: converted once
            _bound_cache = (bound, _bound_text(bound))
        if trace_id[16:] < _bound_cache[1]:
            # An f-string of str is a third of what bytes %-formatting costs here.
            return trace_id, span_id, "", SAMPLED, None, f"traceparent: 00-{trace_id}-{span_id}-01\r\n".encode()
        return trace_id, span_id, "", 0, None, f"traceparent: 00-{trace_id}-{span_id}-00\r\n".encode()
    trace_id, parent_id, flags = parent
    span_id = _fresh_ids()[1]
    state = fields.get(TRACESTATE)
    if state is not None:
        if len(headers) != len(fields):
            # Several tracestate headers are one list, in order (RFC 9110 5.3).
            state = b",".join(_all_values(headers, TRACESTATE))
        state = valid_tracestate(state)
    return trace_id, span_id, parent_id, flags, state, traceparent_line(trace_id, span_id, flags, state)


def begin(
    fields: dict[bytes, bytes], headers: list[tuple[bytes, bytes]], bound: int
) -> tuple[str, str, str, int, bytes | None]:
    """``start`` without the upstream's header lines."""
    return start(fields, headers, bound)[:5]


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
