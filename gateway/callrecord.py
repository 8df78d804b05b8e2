"""One gateway call, as the call log carries it: the schema shared by the gateway (which
writes records, ``gateway/calllog.py``) and the ingester (which stores them,
``analytics/ingest.py``). A field added here reaches both; ``CallLog`` has a column for
each.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


# Not slots=True: orjson encodes a dict-backed dataclass in a quarter of the time (0.5 against
# 2 us), and the record is encoded on every request (calllog.append).
@dataclass
class CallRecord:
    # The first seven are given positionally on the request path (gateway/call.py): keep their order.
    request_id: str
    time: float  # epoch seconds at the request's arrival
    method: str
    path: str
    client_ip: str = ""
    client_request_id: str | None = None  # the client's X-Request-ID, when it sent a sane one
    trace_id: str = ""  # W3C trace id (32 hex digits): the client's trace, or one the gateway started
    api_id: int | None = None
    version_id: int | None = None
    tenant_id: int | None = None
    application_id: int | None = None
    key_prefix: str = ""
    status: int = 0
    latency_ms: float = 0.0
    upstream_latency_ms: float | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    cache_hit: bool = False
    error_code: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CallRecord:
        """A record from its decoded JSON; unknown keys are ignored (a newer gateway may add
        fields before the ingester knows them), missing required ones raise KeyError."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass
class AiCallRecord(CallRecord):
    """A call to the LLM endpoints (gateway/aicall.py): a CallRecord and what the AI side
    adds. REST calls write the plain CallRecord, so their records stay small (the record is
    encoded on every request); the ingester reads every record as an AiCallRecord, with
    these fields at their defaults for REST calls."""

    model: str = ""  # the public alias the client asked for
    provider: str = ""  # the provider kind that answered
    upstream_model: str = ""
    tokens_in: int | None = None  # prompt tokens, cached ones included
    tokens_out: int | None = None
    tokens_cached: int | None = None
    tokens_estimated: bool = False  # counted by the gateway: the provider reported none
    cost: str | None = None  # USD as a decimal string; None when a price is unknown (never "0")
    ttft_ms: float | None = None  # time to the first byte of the answer's content
    overhead_ms: float | None = None  # gateway time, excluding the wait on providers
    pii_masked: int = 0  # findings masked or redacted (counts only, never values)
    fallbacks: int = 0  # attempts after the first
    prompt_capture: str | None = None  # masked, size-capped, when the route captures
    response_capture: str | None = None
    # How the call reached the gateway: "" for a direct HTTP call, "mcp" for a tool call on
    # /mcp (gateway/mcp.py). Here, in the ingester's schema, so AI calls made as tools can say
    # so too; plain REST records leave it out (McpCallRecord carries it for REST tool calls).
    channel: str = ""


@dataclass
class McpCallRecord(CallRecord):
    """A REST call made as an MCP tool call, and the MCP requests themselves: a CallRecord
    that says it came through /mcp. Its own class, so direct REST records stay as small as
    they were (the record is encoded on every request)."""

    channel: str = "mcp"


# Every field a record may carry (the ingester's schema).
FIELD_NAMES = tuple(f.name for f in fields(AiCallRecord))
