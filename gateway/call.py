"""One request through the gateway: its state, and its steps in the order they run.

``Call.run`` reads as the step table of docs/gateway.md:

    route -> authenticate -> authorize -> admit -> check_body -> answer_from_cache
          -> proxy -> relay -> record

Each step reads and fills the call's own fields (``__slots__``: one object per request,
no argument lists threaded through). A step that refuses raises ``Refusal``; ``run``
answers every refusal in one place (``refuse``), and ``record`` appends the call record
exactly once, in a ``finally``, whatever happened. No database query and no Django here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

from gateway import metrics, tracing
from gateway.auth import AuthFailure, authenticate, key_from_query, presented_key
from gateway.callrecord import CallRecord
from gateway.errors import JSON, Headers, Refusal, ResponseAborted, Send, error_body
from gateway.routing import BadPath, RequestPath, forwarded_remainder, parse_request_path

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway.app import Gateway
    from gateway.httpclient import UpstreamResponse
    from gateway.snapshot import Grant, KeyEntry, Route, Snapshot
    from gateway.upstreams import Balancer, TargetState

    Receive = Callable[[], Awaitable[dict[str, Any]]]

log = logging.getLogger("portico.gateway")

CORS_EXPOSE = (
    b"access-control-expose-headers",
    b"x-request-id, x-cache, ratelimit, ratelimit-policy, ratelimit-limit, ratelimit-remaining, ratelimit-reset, "
    b"retry-after, deprecation, sunset, link",
)
WWW_AUTHENTICATE = (b"www-authenticate", b'Bearer realm="portico"')
MAX_REQUEST_ID = 128
_ID_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-")


class ClientGone(Exception):
    """The client disconnected while its request body was being read."""


def _sane_request_id(value: bytes) -> bool:
    return 8 <= len(value) <= MAX_REQUEST_ID and all(c in _ID_CHARS for c in value)


class Call:
    # What this kind of call records (the LLM endpoints record more: aicall.AiCall).
    record_class: type[CallRecord] = CallRecord

    __slots__ = (
        "gateway",
        "snapshot",
        "scope",
        "receive",
        "send",
        "started",
        "method",
        "fields",
        "record",
        "echo_id",
        "client_ip",
        "forwarded_for",
        "headers_out",
        "path",
        "forward_path",
        "query",
        "route",
        "key",
        "key_header",
        "grant",
        "content_length",
        "chunked_body",
        "has_body",
        "body_bytes",
        "cache_key",
        "responded",
        "recorded",
        "trace_id",
        "span_id",
        "parent_id",
        "trace_flags",
        "tracestate",
        "trace_lines",
        "marks",
    )

    def __init__(self, gateway: Gateway, scope: dict[str, Any], receive: Receive, send: Send):
        self.started = time.perf_counter()
        self.gateway = gateway
        self.snapshot: Snapshot = gateway.snapshot  # one snapshot for the whole request
        self.scope = scope
        self.receive = receive
        self.send = send
        self.method: str = scope["method"]
        # One C call instead of a Python loop over every header; a repeated header's last
        # value wins. (The server refuses repeated framing headers before we get here.)
        self.fields: dict[bytes, bytes] = dict(scope["headers"])
        request_id = gateway.new_request_id()
        client_id = self.fields.get(b"x-request-id")
        sane = client_id is not None and _sane_request_id(client_id)
        self.echo_id: bytes = client_id if sane and client_id is not None else request_id.encode()
        peer = scope["client"][0] if scope.get("client") else ""
        self.client_ip, self.forwarded_for = gateway.client_addresses.resolve(peer, self.fields.get(b"x-forwarded-for"))
        # trace_lines: the traceparent (and tracestate) lines upstream_head sends, made once.
        (self.trace_id, self.span_id, self.parent_id, self.trace_flags, self.tracestate, self.trace_lines) = (
            tracing.start(self.fields, scope["headers"], gateway.trace_sample_bound)
        )
        # Each step's start, for the spans of a sampled call when spans are exported
        # (gateway/otlp.py); otherwise None, and a step pays one `is None` test.
        self.marks: list[tuple[str, int, dict[str, str] | None]] | None = (
            [] if gateway.spans is not None and self.trace_flags & tracing.SAMPLED else None
        )
        # Positional: keyword arguments cost twice as much here (0.6 against 0.3 us).
        self.record = self.record_class(
            request_id,
            time.time(),
            self.method,
            scope["path"][:2000],
            self.client_ip,
            self.echo_id.decode() if sane else None,
            self.trace_id,
        )
        self.headers_out: Headers = [(b"x-request-id", self.echo_id)]
        self.path: RequestPath | None = None
        self.forward_path = b"/"
        self.query: bytes = scope["query_string"]
        self.route: Route | None = None
        self.key: KeyEntry | None = None
        self.key_header: bytes | None = None
        self.grant: Grant | None = None
        self.content_length: int | None = None
        self.chunked_body = False
        self.has_body = False
        self.body_bytes = 0
        self.cache_key: str | None = None
        self.responded = False
        self.recorded = False

    # -- the pipeline ---------------------------------------------------------------------

    async def run(self) -> None:
        """The steps, and what every kind of call does when one fails."""
        try:
            await self.steps()
        except Refusal as refusal:
            await self.refuse(refusal)
        except ClientGone:
            self.record.status = 499
            self.record.error_code = "client_disconnected"
        except ResponseAborted:
            raise  # the server closes the connection without ending the message
        except Exception:
            log.exception("unexpected error on %s %s", self.method, self.record.path)
            self.record.error_code = self.record.error_code or "internal_error"
            if self.responded:
                raise ResponseAborted("internal_error") from None
            await self.refuse(Refusal(500, "internal_error", "The gateway failed; this is logged."))
        finally:
            if not self.recorded:
                self.record_call()
            if self.marks is not None and self.gateway.spans is not None:
                self.gateway.spans.export(self)  # after the answer left; the export is another thread's

    async def steps(self) -> None:
        marks = self.marks
        if self.is_preflight():
            await self.answer_preflight()
            return
        self.route_request()
        if self.route.prompt is not None:  # type: ignore[union-attr]
            await self.hand_to_prompt()
            return
        if marks is not None:
            marks.append(("auth", perf_counter_ns(), None))
        await self.authenticate()
        self.authorize()
        if marks is not None:
            marks.append(("limits", perf_counter_ns(), None))
        await self.admit()
        self.check_body()
        if self.route.cache_ttl:  # type: ignore[union-attr]
            if marks is not None:
                marks.append(("cache", perf_counter_ns(), None))
            if await self.answer_from_cache():
                return
        if marks is not None:
            marks.append(("upstream", perf_counter_ns(), None))
        response, state, balancer = await self.proxy()
        if marks is not None:
            marks.append(("relay", perf_counter_ns(), None))
        try:
            await self.relay(response, state, balancer)
        finally:
            state.active -= 1
            response.release()

    def span_path(self) -> str:
        """What a span may say of the path: the route's base path (the rest may carry ids or
        secrets), or nothing when no route matched."""
        return self.route.base_path if self.route is not None else ""

    async def hand_to_prompt(self) -> None:
        """A prompt API's route: the prompt pipeline (gateway/promptcall.py) takes the call
        over from here and records it itself. Imported here, once routed, so REST calls
        never pay for it."""
        from gateway.promptcall import PromptCall

        self.recorded = True
        prompt_call = PromptCall.taking_over(self)
        self.marks = None  # its spans are the prompt call's
        await prompt_call.run()

    def is_preflight(self) -> bool:
        origin = self.fields.get(b"origin")
        if origin is None or origin not in self.gateway.cors_origins:
            return False
        # The portal's try-it console calls the gateway from the browser.
        self.headers_out += [(b"access-control-allow-origin", origin), (b"vary", b"origin"), CORS_EXPOSE]
        return self.method == "OPTIONS"

    async def answer_preflight(self) -> None:
        requested = self.fields.get(b"access-control-request-headers")
        self.headers_out += [
            (b"access-control-allow-methods", b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            (b"access-control-allow-headers", requested or b"authorization, x-api-key, content-type"),
            (b"access-control-max-age", b"600"),
        ]
        self.record.status = 204
        await self.start_response(204, self.headers_out)
        await self.finish(b"")

    def route_request(self) -> None:
        """Route by longest base path (and host); the forwarded path is cut by segments."""
        raw_path = self.scope.get("raw_path") or self.scope["path"].encode()
        try:
            path = self.path = parse_request_path(raw_path)
        except BadPath as error:
            raise Refusal(400, "bad_path", str(error)) from None
        host = self.fields.get(b"host")
        host_name = host.split(b":", 1)[0].decode("latin-1").lower() if host else ""
        route, _rest = self.snapshot.routes.match(path.decoded, host_name)
        if route is None:
            raise Refusal(404, "route_not_found", "No API at this path.")
        self.enter_route(route, path)

    def enter_route(self, route: Route, path: RequestPath) -> None:
        """The call is ``route``'s from here (found by path, or an MCP tool's): recorded as
        its, refused when retired, told when deprecated, and forwarded below its base path."""
        self.route = route
        self.record.api_id = route.api_id
        self.record.version_id = route.version_id
        if route.state == "retired":
            raise Refusal(410, "version_retired", "This API version is retired.")
        self.headers_out.extend(route.deprecation_headers)
        self.forward_path = forwarded_remainder(path, route)

    async def authenticate(self) -> None:
        """The key from Authorization/X-API-Key (or the opt-in query parameter). A failed key
        counts against its client address; once the address is over its allowance, failed
        keys are answered 429, while valid keys from it still pass."""
        fields = self.fields
        presented, self.key_header = presented_key(fields.get(b"authorization"), fields.get(b"x-api-key"))
        param = self.gateway.settings.key_query_param
        if param and self.query:
            # Removed from what goes upstream even when a header carried the key.
            from_query, self.query = key_from_query(self.query, param)
            presented = presented or from_query
        try:
            key = authenticate(self.snapshot.keys, presented)
        except AuthFailure as failure:
            failures = self.gateway.auth_failures
            if presented and await failures.record_failure(self.client_ip):
                retry = (b"retry-after", b"%d" % failures.window)
                raise Refusal(429, "too_many_auth_failures", "Too many failed attempts; wait.", [retry]) from None
            raise Refusal(401, failure.code, failure.message, [WWW_AUTHENTICATE]) from None
        self.key = key
        record = self.record
        record.key_prefix = key.prefix
        record.tenant_id = key.tenant_id
        record.application_id = key.application_id

    def authorize(self) -> None:
        """An approved subscription of the key's application to this API."""
        assert self.key is not None and self.route is not None
        grant = self.snapshot.grants.get((self.key.application_id, self.route.api_id))
        if grant is None:
            raise Refusal(403, "not_subscribed", "This application has no approved subscription to this API.")
        self.grant = grant

    async def admit(self) -> None:
        """Plan limits: most requests are admitted from this worker's reserved units without
        an await; the rest cost one Redis script call."""
        grant = self.grant
        assert grant is not None
        limiter = self.gateway.limiter
        decision = limiter.admit_reserved(grant.subscription_id, grant.limits)
        if decision is None:
            decision = await limiter.check(grant.subscription_id, grant.limits)
        self.headers_out.extend(decision.headers)
        if not decision.allowed:
            status = 503 if decision.error_code == "limits_unavailable" else 429
            raise Refusal(status, decision.error_code or "rate_limited", decision.message or "Limit reached.")

    def check_body(self) -> None:
        """The declared body size against the route's limit (a chunked body is counted as it
        streams, in ``body_chunks``)."""
        assert self.route is not None
        fields = self.fields
        declared = fields.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                raise Refusal(400, "bad_content_length", "Content-Length is not a number.")
            self.content_length = int(declared)
            if self.content_length > self.route.max_request_bytes:
                raise Refusal(
                    413, "request_too_large", f"The request body exceeds {self.route.max_request_bytes} bytes."
                )
        # A body without Content-Length (chunked from the client) goes upstream chunked too.
        self.chunked_body = declared is None and b"transfer-encoding" in fields
        self.has_body = self.chunked_body or (self.content_length is not None and self.content_length > 0)

    async def answer_from_cache(self) -> bool:
        route = self.route
        key = self.key
        assert route is not None and key is not None
        if not route.cache_ttl:
            return False
        cache = self.gateway.cache
        if self.has_body or not cache.request_allows_cache(self.method, self.scope["headers"]):
            self.headers_out.append((b"x-cache", b"MISS"))
            return False
        assert self.path is not None
        self.cache_key = cache.key_for(route.version_id, key.application_id, self.path.decoded, self.query)
        cached = await cache.lookup(self.cache_key)
        if cached is None:
            self.headers_out.append((b"x-cache", b"MISS"))
            return False
        record = self.record
        record.cache_hit = True
        record.status = cached.status
        record.bytes_out = len(cached.body)
        await self.start_response(cached.status, [*cached.headers, *self.headers_out, (b"x-cache", b"HIT")])
        await self.finish(b"" if self.method == "HEAD" else cached.body)
        return True

    # The steps below hand back the awaitable of the module that does the work instead of
    # awaiting it themselves: a coroutine frame per step cost a visible share of a request.

    def proxy(self) -> Awaitable[tuple[UpstreamResponse, TargetState, Balancer]]:
        """Pick a target and send; retries and timeouts in ``proxy.UpstreamProxy.send``."""
        return self.gateway.proxy.send(self)

    def relay(self, response: UpstreamResponse, state: TargetState, balancer: Balancer) -> Awaitable[None]:
        """Stream the answer back (``proxy.UpstreamProxy.relay``)."""
        return self.gateway.proxy.relay(self, response, state, balancer)

    def record_call(self) -> None:
        """Append the call record, once per request: just before the answer's last message
        (``finish``), or in ``run``'s ``finally`` when no answer completed."""
        self.recorded = True
        elapsed = time.perf_counter() - self.started
        record = self.record
        if not record.status:
            record.status = 500
        record.bytes_in = self.body_bytes
        record.latency_ms = round(elapsed * 1000, 3)
        self.gateway.calllog.append(record)
        metrics.count_request(record.status, elapsed)

    # -- answering ------------------------------------------------------------------------

    def start_response(self, status: int, headers: Headers) -> Awaitable[None]:
        self.responded = True
        return self.send({"type": "http.response.start", "status": status, "headers": headers})

    def finish(self, body: bytes) -> Awaitable[None]:
        """Send the answer's last body message. The call is recorded just before it leaves, so
        a worker killed once the client has its answer has already put the record in its
        ring (calllog.py), where the next worker finds it."""
        self.record_call()
        return self.send({"type": "http.response.body", "body": body})

    async def refuse(self, refusal: Refusal) -> None:
        record = self.record
        record.status = refusal.status
        record.error_code = refusal.code
        if self.responded:  # too late to say so; the client sees the connection close
            raise ResponseAborted(refusal.code)
        body = error_body(refusal.code, refusal.message)
        record.bytes_out = len(body)
        headers = [JSON, (b"content-length", b"%d" % len(body)), *self.headers_out, *refusal.headers]
        await self.start_response(refusal.status, headers)
        await self.finish(b"" if self.method == "HEAD" else body)

    # -- the request body -----------------------------------------------------------------

    async def body_chunks(self, limit: int | None = None) -> AsyncIterator[bytes]:
        """The request body as it arrives, counted against ``limit`` (the route's by default)."""
        if limit is None:
            assert self.route is not None
            limit = self.route.max_request_bytes
        more = True
        while more:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                if message.get("reason") == "body_timeout":
                    raise Refusal(408, "body_timeout", "The request body stopped arriving.")
                raise ClientGone()
            chunk: bytes = message.get("body", b"")
            more = message.get("more_body", False)
            self.body_bytes += len(chunk)
            if self.body_bytes > limit:
                raise Refusal(413, "request_too_large", f"The request body exceeds {limit} bytes.")
            if chunk:
                yield chunk

    async def whole_body(self, limit: int) -> bytes:
        """The whole body, for endpoints that parse it (AI calls, MCP): at most ``limit`` bytes,
        a declared length over it refused before anything is read."""
        declared = self.fields.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise Refusal(413, "request_too_large", f"The request body exceeds {limit} bytes.")
        return b"".join([chunk async for chunk in self.body_chunks(limit)])
