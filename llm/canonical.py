"""The LLM gateway's data-plane contract: one canonical shape for requests, answers and
stream events, the snapshot entries the gateway serves AI traffic from, and the small
contract every provider adapter and inbound format keeps.

Canonical = the OpenAI Chat Completions wire format, as plain JSON-ready dicts:
- a request is the body of ``POST /v1/chat/completions`` (``model`` already resolved to
  the upstream model name by the router; ``stream`` set by the caller);
- an answer is a ``chat.completion`` object;
- a stream is a sequence of ``chat.completion.chunk`` objects, the last one carrying
  ``usage`` when the provider reported it.

Anthropic-format clients are translated into it and back (``llm/inbound/``), providers are
translated from it and back (``llm/providers/``), so any inbound format reaches any
provider. Usage has ONE meaning everywhere (LiteLLM #36168): ``prompt_tokens`` counts every
input token including cached ones, ``prompt_tokens_details.cached_tokens`` says how many of
them were cache reads, ``completion_tokens`` counts output, ``total_tokens`` is their sum.

Nothing here imports Django: the gateway's hot path uses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

Json = dict[str, Any]

# -- usage -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0  # every input token, cached ones included
    completion_tokens: int = 0
    cached_tokens: int = 0  # the part of prompt_tokens read from the provider's prompt cache
    estimated: bool = False  # counted by llm.tokens because the provider reported none

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def from_openai(cls, reported: Any) -> Usage | None:
        """A canonical completion's ``usage`` dict as a Usage; None when it says nothing usable."""
        if not isinstance(reported, dict) or not isinstance(reported.get("prompt_tokens"), int):
            return None
        details = reported.get("prompt_tokens_details") or {}
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        return cls(
            prompt_tokens=reported["prompt_tokens"],
            completion_tokens=int(reported.get("completion_tokens") or 0),
            cached_tokens=cached if isinstance(cached, int) else 0,
        )

    def to_openai(self) -> Json:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        }


# -- errors ------------------------------------------------------------------------------------

# What went wrong, independent of who said it. The gateway maps a kind to a status and to
# each inbound format's error type, and decides on fallback by it.
ERROR_KINDS = (
    "invalid_request",  # the client's own fault (400/404/422 upstream): never falls back
    "authentication",  # the provider refused our credential: disable that key, try the next
    "permission",  # likewise (403)
    "not_found",  # model or deployment unknown upstream (404): the client's route is wrong
    "rate_limited",  # 429 from the provider: rest that key until its reset, fall back
    "context_length",  # the prompt is too long for that model: fall back (a larger model may take it)
    "overloaded",  # 503/529: fall back
    "server",  # 5xx: fall back
    "timeout",  # no answer in time: fall back
    "connection",  # could not connect: fall back
)
FALLBACK_KINDS = frozenset(
    {"authentication", "permission", "rate_limited", "context_length", "overloaded", "server", "timeout", "connection"}
)


class ProviderError(Exception):
    """A provider's refusal or failure, translated. ``retry_after``: seconds, when the
    provider said (a 429's reset)."""

    def __init__(self, kind: str, message: str, *, status: int = 0, retry_after: float | None = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after


class InvalidRequest(Exception):
    """The client's request cannot be served as sent (answered 400 in its own format)."""

    def __init__(self, message: str, param: str | None = None, code: str = "invalid_request_error"):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


# -- what the gateway serves from (built from the database into the snapshot) -----------------


@dataclass(frozen=True, slots=True)
class ProviderKey:
    """One credential of a provider's key pool, decrypted at snapshot load and held only in
    worker memory."""

    id: int
    secret: str = field(repr=False)
    priority: int = 0  # lower is tried first


@dataclass(frozen=True, slots=True)
class Prices:
    """USD per million tokens; None = unknown (cost is then recorded as unknown, never 0)."""

    input: Decimal | None = None
    output: Decimal | None = None
    cached_input: Decimal | None = None


@dataclass(frozen=True, slots=True)
class ModelTarget:
    """One upstream model on one provider."""

    model_id: int
    provider_id: int
    provider_kind: str  # openai | azure-openai | anthropic | gemini | mistral | openai-compatible
    base_url: str  # e.g. https://api.openai.com/v1, https://api.anthropic.com, http://127.0.0.1:9100/openai/v1
    upstream_model: str  # the provider's model name (for Azure: the deployment)
    keys: tuple[ProviderKey, ...] = ()
    azure_api_version: str = ""
    prices: Prices = Prices()
    context_window: int | None = None
    capabilities: frozenset[str] = frozenset({"chat"})  # chat, embeddings, tools, vision, json


@dataclass(frozen=True, slots=True)
class PiiPolicy:
    mode: str = "off"  # off | redact | mask | block   ("mask" = mask-and-restore)
    detectors: frozenset[str] = frozenset({"email", "phone", "card", "iban", "ip", "secret"})
    deny: tuple[str, ...] = ()  # words or /regexes/ refused with 400


@dataclass(frozen=True, slots=True)
class AiRoute:
    """A public model alias: weighted targets (A/B), then an ordered fallback chain."""

    alias: str
    route_id: int
    api_id: int
    version_id: int | None
    state: str  # published | deprecated | retired
    targets: tuple[tuple[int, ModelTarget], ...]  # (weight, target)
    fallbacks: tuple[ModelTarget, ...] = ()
    timeout_seconds: float = 60.0  # whole call, per attempt
    first_byte_timeout_seconds: float = 30.0  # until the answer's head / first stream event
    retries: int = 1  # extra attempts on the same target list before falling back
    cache_ttl: int = 0
    cache_nondeterministic: bool = False  # cache answers to temperature > 0 too
    pii: PiiPolicy = PiiPolicy()
    capture: bool = False  # attach masked, size-capped bodies to the call record
    default_max_tokens: int = 1024  # the estimate reserved against budgets when max_tokens is absent
    deprecation_headers: tuple[tuple[bytes, bytes], ...] = ()


# -- the adapter contract ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """What to send: the gateway's upstream client adds Host and framing."""

    method: bytes
    url: str  # absolute
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


class StreamDecoder(Protocol):
    """Provider stream bytes in, canonical chunks out. ``feed`` takes whatever arrived (any
    split, even mid-line); ``close`` is called when the upstream ended the body and raises
    ProviderError when the stream ended without the provider's own end marker (a cut
    stream must never look finished). A provider error event raises ProviderError."""

    def feed(self, data: bytes) -> list[Json]: ...

    def close(self) -> list[Json]: ...

    @property
    def usage(self) -> Usage | None: ...


class ProviderAdapter(Protocol):
    kind: str

    def chat_request(self, target: ModelTarget, key: ProviderKey, request: Json, stream: bool) -> UpstreamRequest: ...

    def chat_response(self, target: ModelTarget, body: bytes) -> Json:
        """A canonical chat.completion (``usage`` in the canonical meaning)."""
        ...

    def stream_decoder(self, target: ModelTarget) -> StreamDecoder: ...

    def embeddings_request(
        self, target: ModelTarget, key: ProviderKey, request: Json
    ) -> UpstreamRequest:  # raises InvalidRequest when the provider has none
        ...

    def embeddings_response(self, target: ModelTarget, body: bytes) -> Json: ...

    def error(self, status: int, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> ProviderError:
        """The provider's error answer, translated (kind, message, retry_after)."""
        ...


class StreamEncoder(Protocol):
    """Canonical chunks in, the client's wire format out (SSE bytes)."""

    def chunk(self, chunk: Json) -> bytes: ...

    def finish(self, usage: Usage | None) -> bytes:
        """The format's normal end (OpenAI: a usage chunk when asked, then ``data: [DONE]``;
        Anthropic: message_delta with stop_reason and usage, then message_stop)."""
        ...

    def error(self, kind: str, message: str) -> bytes:
        """An in-band error event after the stream has started; the stream then ends
        WITHOUT the format's normal end, so SDKs raise instead of seeing a finished answer."""
        ...


class InboundFormat(Protocol):
    name: str  # openai | anthropic

    def parse_chat(self, body: bytes) -> Json:
        """The canonical request (``model`` = the client's alias, ``stream`` as asked;
        OpenAI's ``stream_options.include_usage`` kept). Raises InvalidRequest."""
        ...

    def render_chat(self, completion: Json, alias: str) -> bytes: ...

    def stream_encoder(self, alias: str, request: Json) -> StreamEncoder: ...

    def error_status(self, kind: str) -> int: ...

    def error_body(self, kind: str, message: str, *, param: str | None = None, code: str | None = None) -> bytes: ...


@dataclass(frozen=True, slots=True)
class BudgetPolicy:
    """Limits for one key, application or tenant (scope). Spend is per calendar period, UTC."""

    scope: str  # key | application | tenant
    scope_id: int  # ApiKey, Application or Tenant id
    budget_id: int
    period: str = "monthly"  # daily | weekly | monthly
    spend_limit_usd: Decimal | None = None
    tokens_per_minute: int | None = None
    requests_per_minute: int | None = None


@dataclass(frozen=True, slots=True)
class AiConfig:
    routes: dict[str, AiRoute] = field(default_factory=dict)  # by alias
    # Budgets by (scope, id): ("key", api_key_id), ("application", id), ("tenant", id).
    budgets: dict[tuple[str, int], tuple[BudgetPolicy, ...]] = field(default_factory=dict)
