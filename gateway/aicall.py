"""One call to the LLM endpoints: ``POST /v1/chat/completions``, ``POST /v1/embeddings``,
``GET /v1/models`` (OpenAI) and ``POST /v1/messages`` (Anthropic), on the same data plane
as REST traffic: the same server, keys, subscriptions, plan limits and call log.

``AiCall.run`` reads as its steps:

    authenticate -> read_body -> parse -> route_model -> authorize -> admit (plan limits)
      -> apply_policy (PII, deny list) -> reserve_budget -> answer_from_cache
      -> call_provider (targets, key pool, fallbacks; stream committed at its first content)
      -> reconcile_budget -> record

The inbound format (``llm/inbound``) parses the client's body into the canonical request
and writes every answer and error in the client's own shape; a provider adapter
(``llm/providers``) translates to and from the provider. Refusals are raised as
``Refusal`` as on the REST path and answered by ``refuse`` in the client's format.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from decimal import Decimal
from functools import lru_cache
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from gateway import metrics
from gateway.call import Call
from gateway.callrecord import AiCallRecord
from gateway.errors import Refusal, ResponseAborted
from gateway.httpclient import UpstreamConnectError, UpstreamProtocolError, UpstreamResponse
from gateway.tracing import traceparent_line
from llm import pricing, tokens
from llm.budgets import Refusal as BudgetRefusal
from llm.budgets import Reservation
from llm.canonical import AiRoute, InvalidRequest, Json, ModelTarget, ProviderError, ProviderKey, Usage
from llm.inbound import FORMATS
from llm.llmcache import cache_key, chunks_to_completion, completion_to_chunks
from llm.pii import PiiOutcome, apply_policy, mask_for_capture, restore_completion
from llm.providers import adapter_for
from llm.router import falls_back

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.call import Receive
    from gateway.errors import Send
    from llm.canonical import InboundFormat, StreamEncoder

log = logging.getLogger("portico.gateway.ai")

# path -> (endpoint, inbound format)
ENDPOINTS: dict[str, tuple[str, str]] = {
    "/v1/chat/completions": ("chat", "openai"),
    "/v1/embeddings": ("embeddings", "openai"),
    "/v1/models": ("models", "openai"),
    "/v1/messages": ("chat", "anthropic"),
}
# A gateway refusal's status -> the error kind the inbound format answers it as.
KIND_OF_STATUS = {
    400: "invalid_request",
    401: "authentication",
    403: "permission",
    404: "not_found",
    405: "invalid_request",
    408: "timeout",
    410: "not_found",
    413: "request_too_large",
    429: "rate_limited",
    500: "internal",
    502: "server",
    503: "overloaded",
    504: "timeout",
}
# When every target failed: a provider refusing *our* credential is not the client's fault.
FAILED_KIND = {"authentication": "server", "permission": "server", "connection": "server"}
MAX_UPSTREAM_BODY = 64 * 1024 * 1024
CAPTURE_BYTES = 16 * 1024
JSON_TYPE = (b"content-type", b"application/json")
SSE_HEADERS = ((b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"))


@lru_cache(maxsize=1024)
def _upstream_address(url: str) -> tuple[tuple[str, str, int], bytes, bytes]:
    """(pool key, Host header, request target) of a provider URL; a handful per deployment."""
    parts = urlsplit(url)
    scheme = parts.scheme or "http"
    host = parts.hostname or ""
    port = parts.port or (443 if scheme == "https" else 80)
    default = (scheme, port) in (("https", 443), ("http", 80))
    host_header = (host if default else f"{host}:{port}").encode()
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return (scheme, host, port), host_header, target.encode()


def _has_content(chunks: list[Json]) -> bool:
    """Whether a canonical chunk carries what commits a stream: text, a tool call, a refusal,
    or the end of a choice."""
    for chunk in chunks:
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content") or delta.get("tool_calls") or delta.get("refusal") or choice.get("finish_reason"):
                return True
    return False


def _answer_text(completion: Json) -> str:
    texts = []
    for choice in completion.get("choices") or ():
        message = choice.get("message") or {}
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        for call in message.get("tool_calls") or ():
            texts.append(orjson.dumps(call.get("function") or {}).decode())
    return "\n".join(texts)


class AiCall(Call):
    record_class = AiCallRecord
    record: AiCallRecord

    __slots__ = (
        "endpoint",
        "format",
        "body",
        "request",
        "stream",
        "ai_route",
        "pii",
        "upstream_request",
        "reservation",
        "usage",
        "served_by",
        "upstream_wait",
        "llm_cache_key",
        "stream_failure",
    )

    def __init__(
        self,
        gateway: Gateway,
        scope: dict[str, Any],
        receive: Receive,
        send: Send,
        endpoint: tuple[str, str] | None = None,
    ):
        super().__init__(gateway, scope, receive, send)
        # ``endpoint``: (endpoint, inbound format) for a call not made at an ENDPOINTS path (a prompt API's).
        self.endpoint, format_name = endpoint or ENDPOINTS[scope["path"]]
        if self.endpoint == "models" and b"anthropic-version" in self.fields:
            format_name = "anthropic"
        self.format: InboundFormat = FORMATS[format_name]
        self.body = b""
        self.request: Json = {}
        self.stream = False
        self.ai_route: AiRoute | None = None
        self.pii: PiiOutcome | None = None
        self.upstream_request: Json = {}
        self.reservation: Reservation | None = None
        self.usage: Usage | None = None
        self.served_by: ModelTarget | None = None
        self.upstream_wait = 0.0  # seconds spent waiting on providers
        self.llm_cache_key: str | None = None
        self.stream_failure: ProviderError | None = None  # a provider failure after the stream was committed

    # -- the pipeline ---------------------------------------------------------------------

    async def steps(self) -> None:
        marks = self.marks  # step stamps for exported spans (call.py), else None
        try:
            expected = "GET" if self.endpoint == "models" else "POST"
            if self.method != expected:
                raise Refusal(
                    405, "method_not_allowed", f"Use {expected} on this endpoint.", [(b"allow", expected.encode())]
                )
            if marks is not None:
                marks.append(("auth", perf_counter_ns(), None))
            await self.authenticate()
            if self.endpoint == "models":
                await self.answer_models()
                return
            if marks is not None:
                marks.append(("read_body", perf_counter_ns(), None))
            await self.read_body()
            self.parse()
            self.route_model()
            self.authorize()
            if marks is not None:
                marks.append(("limits", perf_counter_ns(), None))
            await self.admit()
            if marks is not None:
                marks.append(("policy", perf_counter_ns(), None))
            self.apply_policy()
            await self.reserve_budget()
            if marks is not None:
                marks.append(("cache", perf_counter_ns(), None))
            if await self.answer_from_cache():
                return
            await self.call_provider()
        finally:
            if marks is not None:
                marks.append(("reconcile_budget", perf_counter_ns(), None))
            await self.reconcile_budget()

    def span_path(self) -> str:
        # A prompt API's base path (promptcall.py), else one of ENDPOINTS or /mcp: nothing of
        # the client's own in either.
        return self.route.base_path if self.route is not None else str(self.scope["path"])

    async def answer_models(self) -> None:
        """The aliases the key's application is subscribed to, in the client's format."""
        assert self.key is not None
        grants = self.snapshot.grants
        application_id = self.key.application_id
        aliases = sorted(
            alias
            for alias, route in self.snapshot.ai.routes.items()
            if route.state != "retired" and (application_id, route.api_id) in grants
        )
        body = self.format.render_models(aliases)  # type: ignore[attr-defined]
        await self.answer_json(200, body)

    async def read_body(self) -> None:
        self.body = await self.whole_body(self.max_body_bytes())

    def max_body_bytes(self) -> int:
        return self.gateway.settings.llm_max_body_bytes

    def parse(self) -> None:
        """The client's body as the canonical request (InvalidRequest: a 400 naming the field)."""
        try:
            if self.endpoint == "embeddings":
                self.request = self.format.parse_embeddings(self.body)  # type: ignore[attr-defined]
            else:
                self.request = self.format.parse_chat(self.body)
        except InvalidRequest as invalid:
            raise Refusal(400, invalid.code, invalid.message, param=invalid.param) from None
        self.stream = self.request.get("stream") is True

    def route_model(self) -> None:
        alias = self.request.get("model")
        route = self.snapshot.ai.routes.get(alias) if isinstance(alias, str) else None
        if route is None:
            raise Refusal(
                404, "model_not_found", f"The model '{alias}' does not exist or you do not have access to it."
            )
        self.ai_route = route
        record = self.record
        record.model = route.alias
        record.api_id = route.api_id
        record.version_id = route.version_id
        if route.state == "retired":
            raise Refusal(410, "version_retired", f"The model '{alias}' is retired.")
        self.headers_out.extend(route.deprecation_headers)

    def authorize(self) -> None:
        assert self.key is not None and self.ai_route is not None
        grant = self.snapshot.grants.get((self.key.application_id, self.ai_route.api_id))
        if grant is None:
            raise Refusal(403, "not_subscribed", "This application has no approved subscription to this model's API.")
        self.grant = grant

    def apply_policy(self) -> None:
        """PII masking and the deny list, per route."""
        route = self.ai_route
        assert route is not None
        self.upstream_request = self.request
        if route.pii.mode == "off" and not route.pii.deny:
            return
        outcome = apply_policy(route.pii, self.request)
        if outcome.refusal is not None:
            if outcome.refusal.reason == "pii":
                raise Refusal(400, "pii_blocked", outcome.refusal.message)
            if outcome.refusal.reason == "deny":
                raise Refusal(400, "content_policy", outcome.refusal.message)
            raise Refusal(500, "content_policy_invalid", "This model's content policy cannot be applied.")
        self.pii = outcome
        self.upstream_request = outcome.request
        self.record.pii_masked = sum(outcome.counts.values())

    async def reserve_budget(self, *, count_request: bool = True) -> None:
        """Reserve the call's estimate against every budget of its key, application and tenant
        (reconciled with the real usage after the call). ``count_request`` False: a further
        model call made for the same client request (a prompt API's JSON repair) reserves its
        tokens and spend, but is not one more request against a requests-per-minute budget."""
        key, route = self.key, self.ai_route
        assert key is not None and route is not None
        budgets = self.snapshot.ai.budgets
        policies = (
            budgets.get(("key", key.id), ())
            + budgets.get(("application", key.application_id), ())
            + budgets.get(("tenant", key.tenant_id), ())
        )
        if not count_request:
            policies = tuple(replace(policy, requests_per_minute=None) for policy in policies)
        if not policies:
            return
        prompt = tokens.estimate_prompt_tokens(self.upstream_request)
        completion = (
            0
            if self.endpoint == "embeddings"
            else tokens.estimate_max_completion(self.upstream_request, route.default_max_tokens)
        )
        # The dearest model the call may end on, fallbacks included: a call that falls back
        # must not spend more than it reserved.
        candidates = [target for _weight, target in route.targets] + list(route.fallbacks)
        costs = [
            c for target in candidates if (c := pricing.estimate_cost(prompt, completion, target.prices)) is not None
        ]
        decision = await self.gateway.budgets.reserve(policies, prompt + completion, max(costs) if costs else None)
        if isinstance(decision, BudgetRefusal):
            raise Refusal(decision.status, decision.kind, decision.message, decision.headers)
        self.reservation = decision

    async def reconcile_budget(self) -> None:
        reservation = self.reservation
        if reservation is None:
            return
        self.reservation = None
        usage, target = self.reserved_usage(), self.served_by
        if usage is None or target is None:
            await self.gateway.budgets.reconcile(reservation, 0, Decimal(0))
            return
        await self.gateway.budgets.reconcile(reservation, usage.total_tokens, pricing.cost(usage, target.prices))

    def reserved_usage(self) -> Usage | None:
        """What the open reservation is settled with: the call's usage."""
        return self.usage

    def cache_namespace(self) -> str:
        """The LLM cache's namespace for this call's answers (llmcache.cache_key): direct calls share one."""
        return ""

    async def answer_from_cache(self) -> bool:
        route, key = self.ai_route, self.key
        assert route is not None and key is not None
        if not route.cache_ttl or self.endpoint != "chat":
            return False
        self.llm_cache_key = cache_key(
            key.tenant_id,
            route.alias,
            self.upstream_request,
            cache_nondeterministic=route.cache_nondeterministic,
            namespace=self.cache_namespace(),
        )
        if self.llm_cache_key is None:
            self.headers_out.append((b"x-cache", b"MISS"))  # not cacheable (temperature > 0, n > 1)
            return False
        cached = await self.gateway.llm_cache.lookup(self.llm_cache_key)
        if cached is None:
            self.headers_out.append((b"x-cache", b"MISS"))
            return False
        self.headers_out.append((b"x-cache", b"HIT"))
        self.record.cache_hit = True
        self.usage = None  # nothing was spent upstream: the reservation is given back
        completion = restore_completion(self.pii, cached) if self.pii is not None else cached
        self.note_usage(completion.get("usage"), None)
        if self.stream:
            encoder = self.format.stream_encoder(route.alias, self.request)
            await self.start_stream(str(completion.get("model") or ""))
            for chunk in completion_to_chunks(completion):
                out = encoder.chunk(chunk)
                if out:
                    await self.send({"type": "http.response.body", "body": out, "more_body": True})
            await self.finish(encoder.finish(self.usage))
        else:
            body = self.format.render_chat(completion, route.alias)
            await self.answer_json(200, body, cached_model=str(completion.get("model") or ""))
        self.usage = None
        return True

    # -- calling providers ------------------------------------------------------------------

    async def call_provider(self) -> None:
        """Try the route's targets, then its fallbacks, until one answers. A stream's status is
        committed only at its first content event, so failures before it fall back too."""
        route = self.ai_route
        assert route is not None
        attempts = self.gateway.router.attempts(route)
        last: ProviderError | None = None
        marks = self.marks
        for tried, (target, key) in enumerate(attempts):
            if tried:
                self.record.fallbacks += 1
            if marks is not None:
                attributes = {"gen_ai.system": target.provider_kind, "gen_ai.request.model": target.upstream_model}
                marks.append(("provider", perf_counter_ns(), attributes))
            error = await self.attempt(target, key)
            if error is None:
                # A stream broken after it was committed still counts against its target.
                attempts.report(self.stream_failure)
                return
            attempts.report(error)
            last = error
            if not falls_back(error):
                raise self.provider_refusal(error, relayed=True)
        if last is None:
            raise Refusal(503, "no_provider", "No provider target or key is available for this model.")
        raise self.provider_refusal(last, relayed=False)

    def provider_refusal(self, error: ProviderError, *, relayed: bool) -> Refusal:
        kind = error.kind if relayed else FAILED_KIND.get(error.kind, error.kind)
        status = self.format.error_status(kind)
        headers = []
        if error.retry_after is not None and kind == "rate_limited":
            headers.append((b"retry-after", b"%d" % max(1, round(error.retry_after))))
        self.record.error_code = f"provider_{error.kind}"
        prefix = "" if relayed else "Every provider target failed; the last said: "
        return Refusal(status, f"provider_{error.kind}", prefix + error.message, headers)

    async def attempt(self, target: ModelTarget, key: ProviderKey) -> ProviderError | None:
        """One try on one target with one key: None when the answer went to the client."""
        adapter = adapter_for(target.provider_kind)
        route = self.ai_route
        assert route is not None
        try:
            if self.endpoint == "embeddings":
                upstream = adapter.embeddings_request(target, key, self.upstream_request)
            else:
                upstream = adapter.chat_request(target, key, self.upstream_request, self.stream)
        except ProviderError as error:  # e.g. a key that cannot be sent in a header
            return error
        except InvalidRequest as invalid:  # e.g. an image type this provider does not take: the client's 400
            raise Refusal(400, invalid.code, invalid.message, param=invalid.param) from None
        pool_key, host, path = _upstream_address(upstream.url)
        # Head and body in one write: the body is small and already whole. The provider joins
        # the trace under the gateway's span (OpenAI-compatible servers such as vLLM record
        # it; others ignore it); the client's tracestate is its own business, not a provider's.
        message = b"".join(
            [
                b"%s %s HTTP/1.1\r\nhost: %s\r\ncontent-length: %d\r\n"
                % (upstream.method, path, host, len(upstream.body)),
                *(b"%s: %s\r\n" % pair for pair in upstream.headers),
                traceparent_line(self.trace_id, self.span_id, self.trace_flags, None),
                b"\r\n",
                upstream.body,
            ]
        )
        waited = time.perf_counter()
        try:
            response = await self.gateway.proxy.pool.request(
                pool_key,
                message,
                None,
                chunked=False,
                head_request=False,
                connect_timeout=min(route.first_byte_timeout_seconds, 10.0),
                read_timeout=route.first_byte_timeout_seconds,
                total_timeout=route.timeout_seconds,
                replayable=False,
            )
        except TimeoutError:
            return ProviderError("timeout", f"{target.provider_kind} did not answer in time")
        except UpstreamConnectError as error:
            return ProviderError("connection", f"cannot reach {target.provider_kind}: {error}")
        except UpstreamProtocolError as error:
            return ProviderError("server", f"{target.provider_kind} answered with invalid HTTP: {error}")
        finally:
            self.upstream_wait += time.perf_counter() - waited
        try:
            if response.status != 200:
                body = await self.read_upstream(response)
                return adapter.error(response.status, response.headers, body)
            if self.endpoint == "embeddings":
                answer = adapter.embeddings_response(target, await self.read_upstream(response))
                self.served(target)
                await self.answer_embeddings(answer)
                return None
            if not self.stream:
                completion = adapter.chat_response(target, await self.read_upstream(response))
                self.served(target)
                await self.answer_completion(completion)
                return None
            return await self.relay_stream(target, adapter.stream_decoder(target), response)
        except ProviderError as error:
            return error
        except TimeoutError:
            return ProviderError("timeout", f"{target.provider_kind} stopped answering in time")
        except (UpstreamConnectError, UpstreamProtocolError) as error:
            return ProviderError("server", f"{target.provider_kind} broke off its answer: {error}")
        finally:
            response.release()

    async def read_upstream(self, response: UpstreamResponse) -> bytes:
        waited = time.perf_counter()
        parts = []
        size = 0
        try:
            async for chunk in response.iter_chunks():
                size += len(chunk)
                if size > MAX_UPSTREAM_BODY:
                    raise ProviderError("server", "the provider's answer is too large")
                parts.append(chunk)
        finally:
            self.upstream_wait += time.perf_counter() - waited
        return b"".join(parts)

    def served(self, target: ModelTarget) -> None:
        self.served_by = target
        record = self.record
        record.provider = target.provider_kind
        record.upstream_model = target.upstream_model

    # -- answering --------------------------------------------------------------------------

    def portico_headers(self, cached_model: str | None = None) -> list[tuple[bytes, bytes]]:
        """X-Portico-Model and -Provider say who answered: for a cache hit, the model the
        cached answer came from and the provider ``cache``."""
        target = self.served_by
        overhead = (time.perf_counter() - self.started - self.upstream_wait) * 1000
        headers = [(b"x-portico-overhead-ms", b"%.3f" % overhead)]
        if target is not None:
            headers += [
                (b"x-portico-model", target.upstream_model.encode("latin-1", "replace")),
                (b"x-portico-provider", target.provider_kind.encode()),
            ]
        elif cached_model is not None:
            headers += [
                (b"x-portico-model", cached_model.encode("latin-1", "replace")),
                (b"x-portico-provider", b"cache"),
            ]
        return headers

    async def answer_json(self, status: int, body: bytes, cached_model: str | None = None) -> None:
        self.record.status = status
        self.record.bytes_out = len(body)
        headers = [
            JSON_TYPE,
            (b"content-length", b"%d" % len(body)),
            *self.portico_headers(cached_model),
            *self.headers_out,
        ]
        await self.start_response(status, headers)
        await self.finish(body)

    async def answer_completion(self, completion: Json) -> None:
        route = self.ai_route
        assert route is not None
        self.note_usage(completion.get("usage"), completion)
        self.record.ttft_ms = round((time.perf_counter() - self.started) * 1000, 3)
        if self.llm_cache_key is not None and route.cache_ttl:
            await self.gateway.llm_cache.store(self.llm_cache_key, completion, route.cache_ttl)
        if self.pii is not None:
            completion = restore_completion(self.pii, completion)
        self.capture(completion)
        await self.answer_json(200, self.format.render_chat(completion, route.alias))

    async def answer_embeddings(self, answer: Json) -> None:
        route = self.ai_route
        assert route is not None
        usage = answer.get("usage") or {}
        prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        if isinstance(prompt, int):
            self.usage = Usage(prompt_tokens=prompt)
        else:
            self.usage = Usage(prompt_tokens=tokens.estimate_prompt_tokens(self.upstream_request), estimated=True)
        self.fill_usage_record()
        body = self.format.render_embeddings(answer, route.alias, self.request)  # type: ignore[attr-defined]
        await self.answer_json(200, body)

    async def start_stream(self, cached_model: str | None = None) -> None:
        self.record.status = 200
        self.record.ttft_ms = round((time.perf_counter() - self.started) * 1000, 3)
        await self.start_response(200, [*SSE_HEADERS, *self.portico_headers(cached_model), *self.headers_out])

    async def relay_stream(self, target: ModelTarget, decoder: Any, response: UpstreamResponse) -> ProviderError | None:
        """Read until the first content event (a failure before it falls back), then commit
        and relay; a failure after it is an in-band error event, and the stream then ends
        without the format's normal end."""
        route = self.ai_route
        assert route is not None
        chunks = response.iter_chunks().__aiter__()
        pending: list[Json] = []
        ended = False
        waited = time.perf_counter()
        try:
            while not _has_content(pending):
                try:
                    data = await chunks.__anext__()
                except StopAsyncIteration:
                    pending += decoder.close()
                    ended = True
                    break
                pending += decoder.feed(data)
        finally:
            self.upstream_wait += time.perf_counter() - waited
        # Committed: from here on the client has a 200 and a stream.
        self.served(target)
        encoder: StreamEncoder = self.format.stream_encoder(route.alias, self.request)
        restorer = self.pii.chunk_restorer() if self.pii is not None else None
        kept: list[Json] | None = [] if (self.llm_cache_key is not None or route.capture) else None
        counter = tokens.StreamTokenCounter()
        await self.start_stream()
        sent = 0

        async def write(batch: list[Json]) -> None:
            """Chunks as the client sees them (PII already restored), in its format."""
            nonlocal sent
            for chunk in batch:
                out = encoder.chunk(chunk)
                if out:  # an empty chunk would end a chunked answer
                    sent += len(out)
                    await self.send({"type": "http.response.body", "body": out, "more_body": True})

        async def emit(batch: list[Json]) -> None:
            """Chunks as the provider sent them: kept for the cache and capture, counted."""
            for chunk in batch:
                if kept is not None:
                    kept.append(chunk)
                counter.feed_chunk(chunk)
            await write([restorer.feed(chunk) for chunk in batch] if restorer is not None else batch)

        try:
            await emit(pending)
            while not ended:
                waited = time.perf_counter()
                try:
                    data = await chunks.__anext__()
                except StopAsyncIteration:
                    batch = decoder.close()
                    ended = True
                else:
                    batch = decoder.feed(data)
                finally:
                    self.upstream_wait += time.perf_counter() - waited
                await emit(batch)
        except (ProviderError, TimeoutError, UpstreamConnectError, UpstreamProtocolError) as failure:
            error = (
                failure
                if isinstance(failure, ProviderError)
                else ProviderError("timeout" if isinstance(failure, TimeoutError) else "server", str(failure))
            )
            self.record.error_code = "upstream_stream_broken"
            if restorer is not None:  # text held back for a possible placeholder goes out first
                await write(restorer.flush())
            self.note_usage(decoder.usage, None, streamed_tokens=counter.tokens)
            out = encoder.error(error.kind, f"The provider's stream broke off: {error.message}")
            self.record.bytes_out = sent + len(out)
            await self.finish(out)
            self.stream_failure = error
            return None
        if restorer is not None:
            await write(restorer.flush())
        self.note_usage(decoder.usage, None, streamed_tokens=counter.tokens)
        tail = encoder.finish(self.usage)
        self.record.bytes_out = sent + len(tail)
        if kept is not None:
            completion = chunks_to_completion(kept, self.usage)
            self.capture(completion)
            if route.cache_ttl and self.llm_cache_key is not None:
                await self.gateway.llm_cache.store(self.llm_cache_key, completion, route.cache_ttl)
        await self.finish(tail)
        return None

    # -- accounting -------------------------------------------------------------------------

    def note_usage(self, reported: Any, completion: Json | None, *, streamed_tokens: int | None = None) -> None:
        """Usage in the canonical meaning; estimated (and marked) when the provider gave none."""
        if isinstance(reported, Usage):
            self.usage = reported
        elif (usage := Usage.from_openai(reported)) is not None:
            self.usage = usage
        else:
            if streamed_tokens is not None:
                completion_tokens = streamed_tokens
            else:
                completion_tokens = tokens.estimate_text_tokens(_answer_text(completion or {}))
            self.usage = Usage(
                prompt_tokens=tokens.estimate_prompt_tokens(self.upstream_request),
                completion_tokens=completion_tokens,
                estimated=True,
            )
        self.fill_usage_record()

    def fill_usage_record(self) -> None:
        usage, record = self.usage, self.record
        if usage is None:
            return
        record.tokens_in = usage.prompt_tokens
        record.tokens_out = usage.completion_tokens
        record.tokens_cached = usage.cached_tokens
        record.tokens_estimated = usage.estimated
        target = self.served_by
        if target is not None and not record.cache_hit:
            cost = pricing.cost(usage, target.prices)
            record.cost = None if cost is None else str(cost)
        elif record.cache_hit:
            record.cost = "0"  # served from the cache: nothing was bought

    def capture(self, completion: Json) -> None:
        route = self.ai_route
        if route is None or not route.capture:
            return
        record = self.record
        record.prompt_capture = mask_for_capture(
            orjson.dumps(self.upstream_request.get("messages") or self.upstream_request.get("input")).decode(),
            CAPTURE_BYTES,
        )
        record.response_capture = mask_for_capture(_answer_text(completion), CAPTURE_BYTES)

    def record_call(self) -> None:
        record = self.record
        if self.upstream_wait:
            record.upstream_latency_ms = round(self.upstream_wait * 1000, 3)
        if record.overhead_ms is None:
            record.overhead_ms = round((time.perf_counter() - self.started - self.upstream_wait) * 1000, 3)
        super().record_call()
        metrics.count_ai_call(record.provider, record.tokens_in, record.tokens_out, record.cost)

    # -- refusals in the client's format ----------------------------------------------------

    async def refuse(self, refusal: Refusal) -> None:
        record = self.record
        record.status = refusal.status
        record.error_code = record.error_code or refusal.code
        if self.responded:
            raise ResponseAborted(refusal.code)
        kind = KIND_OF_STATUS.get(refusal.status, "internal")
        body = self.format.error_body(kind, refusal.message, param=refusal.param, code=refusal.code)
        record.bytes_out = len(body)
        headers = [
            JSON_TYPE,
            (b"content-length", b"%d" % len(body)),
            *self.portico_headers(),
            *self.headers_out,
            *refusal.headers,
        ]
        if refusal.status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="portico"'))
        await self.start_response(refusal.status, headers)
        await self.finish(b"" if self.method == "HEAD" else body)
