"""One call to a prompt API: ``POST <base path>`` with the prompt's input as a JSON body.

A prompt API is "a model plus a prompt" sold as an ordinary API, so its call is an AI call
(``gateway/aicall.py``: budgets, PII policy, LLM cache, provider attempts and fallbacks,
usage, cost, the AI call record) whose client speaks the prompt's own small wire format
instead of OpenAI's, and whose plan and subscription are the prompt API's (the caller
needs none to the AI API owning the model route). ``PromptCall.steps``:

    (routed by Call.route_request: 410 retired, deprecation headers)
    method -> authenticate -> authorize (prompt API) -> admit (its plan) -> route_model
      -> read_body -> parse (JSON, depth, input schema -> 422, render, canonical request)
      -> apply_policy -> reserve_budget -> answer_from_cache -> call_provider
      -> [JSON mode: check the answer; one repair attempt; else 502] -> reconcile_budget

Wire format (docs/llm.md, "Prompt APIs"):

- success: ``{"output": <text | parsed JSON>, "usage": {"prompt_tokens", "completion_tokens",
  "total_tokens", "cost_usd"}, "model": "<route alias>"}`` (``cost_usd`` left out when a
  price is unknown); the model that answered is in ``X-Portico-Model``;
- errors: ``{"error": {"code", "message"}}``, plus ``"fields": [{"path", "message"}]`` for
  ``invalid_input`` (422) and ``invalid_model_output`` (502);
- ``"stream": true`` (a reserved body key, never an input variable): SSE ``data:`` events
  ``{"type": "delta", "text"}``, then ``{"type": "usage", "usage", "model"}``, then
  ``data: [DONE]``; a failure after the start is ``{"type": "error", "error"}`` and no
  ``[DONE]``.

``call_prompt`` runs the same pipeline without HTTP for a key already authenticated (the
MCP server's ``tools/call``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

from gateway.aicall import AiCall
from gateway.call import Call
from gateway.callrecord import AiCallRecord
from gateway.errors import Refusal
from llm.canonical import Json, Usage
from llm.inbound.openai_chat import status_for
from llm.pii import restore_completion
from llm.prompts import (
    MAX_BODY_BYTES,
    MAX_INPUT_DEPTH,
    FieldError,
    PromptSpec,
    RenderTooLarge,
    answer_text,
    chat_request,
    check_output,
    input_of,
    render,
    repair_request,
    structured_output,
    too_deep,
    validate_input,
)

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.call import Receive
    from gateway.errors import Send
    from gateway.snapshot import KeyEntry, Route

log = logging.getLogger("portico.gateway.prompt")

# A chat call to the providers; the client-facing format is replaced by PromptFormat.
ENDPOINT = ("chat", "openai")
DONE = b"data: [DONE]\n\n"


def _event(payload: Json) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class PromptStream:
    """Canonical chunks in, the prompt's SSE events out (``llm.canonical.StreamEncoder``)."""

    __slots__ = ("call",)

    def __init__(self, call: PromptCall) -> None:
        self.call = call

    def chunk(self, chunk: Json) -> bytes:
        texts = []
        for choice in chunk.get("choices") or ():
            content = (choice.get("delta") or {}).get("content")
            if isinstance(content, str) and content:
                texts.append(content)
        return _event({"type": "delta", "text": "".join(texts)}) if texts else b""

    def finish(self, usage: Usage | None) -> bytes:
        return _event({"type": "usage", **self.call.usage_fields()}) + DONE

    def error(self, kind: str, message: str) -> bytes:
        return _event({"type": "error", "error": {"code": f"provider_{kind}", "message": message}})


class PromptFormat:
    """The prompt API's wire format, in the place of an inbound format (``llm/inbound``):
    how answers, streams and errors are written to the client."""

    name = "prompt"
    __slots__ = ("call",)

    def __init__(self, call: PromptCall) -> None:
        self.call = call

    def parse_chat(self, body: bytes) -> Json:  # the prompt call parses its own body (PromptCall.parse)
        raise NotImplementedError

    def render_chat(self, completion: Json, alias: str) -> bytes:
        call = self.call
        output: Any = answer_text(completion)
        if call.spec.json_output:
            output = call.output  # validated by settle_json
            if output is None:  # a cache hit: checked against this schema when stored (cache_namespace)
                parsed, _problems = check_output(call.spec, answer_text(completion))
                output = parsed if parsed is not None else answer_text(completion)
        return orjson.dumps({"output": output, **call.usage_fields()})

    def stream_encoder(self, alias: str, request: Json) -> PromptStream:
        return PromptStream(self.call)

    def error_status(self, kind: str) -> int:
        return status_for(kind)

    def error_body(self, kind: str, message: str, *, param: str | None = None, code: str | None = None) -> bytes:
        error: Json = {"code": code or kind, "message": message}
        fields = self.call.field_errors
        if fields:
            error["fields"] = [f.to_json() for f in fields]
        return orjson.dumps({"error": error})


class PromptCall(AiCall):
    __slots__ = (
        "spec",
        "client_stream",
        "output",
        "held",
        "repaired",
        "first_spend",
        "attempt_usage",
        "field_errors",
        "preauthenticated",
    )

    def __init__(
        self,
        gateway: Gateway,
        scope: dict[str, Any],
        receive: Receive,
        send: Send,
        route: Route,
    ):
        super().__init__(gateway, scope, receive, send, ENDPOINT)
        assert route.prompt is not None
        self.route = route
        self.spec: PromptSpec = route.prompt
        self.format = PromptFormat(self)  # the InboundFormat protocol (it parses its own body: parse)
        self.client_stream = False
        self.output: Any = None  # the validated JSON answer (JSON mode)
        self.held: Json | None = None  # a JSON-mode completion waiting for its check
        self.repaired = False
        self.first_spend: tuple[Usage, str | None] | None = None  # the first attempt's usage and cost, when repaired
        self.attempt_usage: Usage | None = None  # the latest model call's own usage (self.usage sums both)
        self.field_errors: list[FieldError] = []
        self.preauthenticated: KeyEntry | None = None

    @classmethod
    def taking_over(cls, call: Call) -> PromptCall:
        """The prompt call of a request the REST pipeline routed: same snapshot, start time,
        request id, record so far and response headers (CORS, deprecation)."""
        assert call.route is not None
        self = cls(call.gateway, call.scope, call.receive, call.send, call.route)
        self.snapshot = call.snapshot
        self.started = call.started
        self.record = AiCallRecord(**call.record.__dict__)
        self.echo_id = call.echo_id
        self.headers_out = call.headers_out
        self.path = call.path
        self.forward_path = call.forward_path
        self.query = call.query
        # The same trace and span as the record and the upstream's traceparent (tracing.py);
        # the prompt call exports the spans (Call.hand_to_prompt).
        self.trace_id, self.span_id, self.parent_id = call.trace_id, call.span_id, call.parent_id
        self.trace_flags, self.tracestate, self.marks = call.trace_flags, call.tracestate, call.marks
        self.trace_lines = call.trace_lines
        return self

    # -- the pipeline ---------------------------------------------------------------------

    async def steps(self) -> None:
        try:
            if self.method != "POST":
                raise Refusal(405, "method_not_allowed", "Call a prompt API with POST.", [(b"allow", b"POST")])
            if self.forward_path != b"/":
                raise Refusal(404, "route_not_found", "A prompt API has one operation: POST to its base path.")
            if self.spec.broken:
                log.error("prompt version %s cannot be served: %s", self.spec.version_id, self.spec.broken)
                raise Refusal(503, "prompt_unavailable", "This API is misconfigured and cannot be called now.")
            await self.authenticate()
            self.authorize()  # Call.authorize: a subscription to the PROMPT API (self.route)
            await self.admit()
            self.route_model()
            await self.read_body()
            self.parse()
            self.apply_policy()
            await self.reserve_budget()
            if await self.answer_from_cache():
                return
            await self.call_provider()
            if self.spec.json_output:
                await self.settle_json()
        finally:
            await self.reconcile_budget()

    async def authenticate(self) -> None:
        key = self.preauthenticated
        if key is None:
            await super().authenticate()
            return
        self.key = key  # call_prompt: the caller (MCP) authenticated the key already
        record = self.record
        record.key_prefix = key.prefix
        record.tenant_id = key.tenant_id
        record.application_id = key.application_id

    def authorize(self) -> None:
        Call.authorize(self)  # the route's API (the prompt API), not the model route's

    def route_model(self) -> None:
        """The spec's model route; its API's lifecycle and subscriptions do not concern the
        prompt's callers (the call stays billed to the prompt API: record.api_id)."""
        route = self.snapshot.ai.routes.get(self.spec.route_alias)
        if route is None or route.state == "retired":
            raise Refusal(503, "model_unavailable", "The model behind this API is not available.")
        self.ai_route = route
        self.record.model = route.alias

    def max_body_bytes(self) -> int:
        assert self.route is not None
        return min(self.route.max_request_bytes, self.gateway.settings.llm_max_body_bytes, MAX_BODY_BYTES)

    def parse(self) -> None:
        """JSON object, depth, the input schema (422 with every field), then the rendered
        prompt as the canonical request."""
        try:
            body = orjson.loads(self.body)
        except orjson.JSONDecodeError:  # orjson also refuses nesting beyond 1024 levels here
            raise Refusal(400, "invalid_json", "The request body is not valid JSON.") from None
        if too_deep(body):
            raise Refusal(400, "too_deeply_nested", f"The request body nests deeper than {MAX_INPUT_DEPTH} levels.")
        errors = validate_input(self.spec, body)
        if errors:
            self.field_errors = errors
            raise Refusal(422, "invalid_input", "The request body does not match the input schema.")
        spec, route = self.spec, self.ai_route
        assert route is not None
        self.client_stream = body.get("stream") is True
        # JSON answers are checked whole before the client sees them: streamed as one delta.
        self.stream = self.client_stream and not spec.json_output
        try:
            system, user = render(spec, input_of(body))
        except RenderTooLarge as too_large:
            raise Refusal(413, "prompt_too_large", str(too_large)) from None
        self.request = chat_request(spec, system, user, structured=structured_output(route))
        if self.stream:
            self.request["stream"] = True

    def cache_namespace(self) -> str:
        """Prompt answers never share entries with direct chat calls, even the same tenant's
        sending the very same request: a direct call's answer was never checked against the
        output schema. A JSON-mode key also names the schema, so every hit is an answer that
        was checked against this schema before it was stored (settle_json) and needs no
        check on read. Cheaper than validating each hit (nothing to parse or validate, and
        no miss that overwrites the direct call's entry) and sound by construction: the
        namespace is the gateway's, outside anything a client sends."""
        spec = self.spec
        if not spec.json_output:
            return "prompt"
        return "prompt-json:" + hashlib.sha256(spec.output_key or orjson.dumps(spec.output_schema)).hexdigest()

    async def answer_from_cache(self) -> bool:
        if self.client_stream and self.spec.json_output:
            return False  # the cached answer would be rendered as a body, not as the asked stream
        return await super().answer_from_cache()

    # -- JSON mode --------------------------------------------------------------------------

    async def answer_completion(self, completion: Json) -> None:
        if not self.spec.json_output:
            await super().answer_completion(completion)
            return
        self.note_usage(completion.get("usage"), completion)
        self.held = completion  # answered by settle_json once it conforms

    async def settle_json(self) -> None:
        completion = self.held
        assert completion is not None
        restored = restore_completion(self.pii, completion) if self.pii is not None else completion
        text = answer_text(restored)
        value, problems = check_output(self.spec, text)
        if problems:
            # One repair attempt: the bad answer and what is wrong with it, back to the model.
            self.repaired = True
            self.first_spend = (self.usage or Usage(), self.record.cost)
            # The repair is a second model call the first reservation does not cover: settle
            # the first attempt's reservation with its own usage, then reserve the repair's
            # estimate like any call (a refusal is the budget error the first call would have
            # had; the record keeps the first attempt's tokens). Unreserved, concurrent
            # repairs could overshoot a token or spend budget by up to 2x.
            await self.reconcile_budget()
            self.request = repair_request(self.request, text, problems)
            self.apply_policy()
            await self.reserve_budget(count_request=False)
            self.held = None
            self.attempt_usage = None
            await self.call_provider()
            completion = self.held
            assert completion is not None
            restored = restore_completion(self.pii, completion) if self.pii is not None else completion
            text = answer_text(restored)
            value, problems = check_output(self.spec, text)
        if problems:
            self.capture(restored)
            self.field_errors = problems
            raise Refusal(502, "invalid_model_output", "The model's answer does not match this API's output schema.")
        self.output = value
        route = self.ai_route
        assert route is not None
        self.record.ttft_ms = self.elapsed_ms()
        if self.llm_cache_key is not None and route.cache_ttl:
            await self.gateway.llm_cache.store(self.llm_cache_key, completion, route.cache_ttl)
        self.capture(restored)
        if self.client_stream:
            await self.start_stream()
            body = _event({"type": "delta", "text": orjson.dumps(value).decode()})
            tail = _event({"type": "usage", **self.usage_fields()}) + DONE
            await self.send({"type": "http.response.body", "body": body, "more_body": True})
            self.record.bytes_out = len(body) + len(tail)
            await self.finish(tail)
            return
        await self.answer_json(200, self.format.render_chat(restored, route.alias))

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 3)

    # -- accounting -------------------------------------------------------------------------

    def reserved_usage(self) -> Usage | None:
        """After a repair the reservation is the repair's: settled with that attempt's own
        usage (nothing when it was refused or failed), not with the sum of both."""
        return self.usage if self.first_spend is None else self.attempt_usage

    def note_usage(self, reported: Any, completion: Json | None, *, streamed_tokens: int | None = None) -> None:
        """After a repair, the record carries both attempts' tokens and cost."""
        super().note_usage(reported, completion, streamed_tokens=streamed_tokens)
        self.attempt_usage = self.usage
        if self.first_spend is None or self.usage is None:
            return
        first, first_cost = self.first_spend
        this = self.usage
        self.usage = Usage(
            prompt_tokens=first.prompt_tokens + this.prompt_tokens,
            completion_tokens=first.completion_tokens + this.completion_tokens,
            cached_tokens=first.cached_tokens + this.cached_tokens,
            estimated=first.estimated or this.estimated,
        )
        this_cost = self.record.cost
        self.fill_usage_record()
        both = (first_cost, this_cost)
        self.record.cost = None if None in both else str(Decimal(first_cost or 0) + Decimal(this_cost or 0))

    def usage_fields(self) -> Json:
        usage = self.usage or Usage()
        fields: Json = {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        }
        cost = self.record.cost
        if cost is not None:
            fields["cost_usd"] = float(cost)
        route = self.ai_route
        return {"usage": fields, "model": route.alias if route is not None else ""}


async def call_prompt(
    gateway: Gateway,
    route: Route,
    key: KeyEntry,
    arguments: Json,
    *,
    path: str | None = None,
    client_ip: str = "",
    headers: Iterable[tuple[bytes, bytes]] = (),
    channel: str = "",
    response_headers: list[tuple[bytes, bytes]] | None = None,
) -> tuple[int, Json]:
    """Run a prompt API's call for a key the caller has already authenticated, without HTTP:
    the same pipeline (subscription to the prompt API, plan limits, budgets, PII, cache,
    provider attempts, JSON checks and repair) and one call record (``path``: what the call
    log shows, default the route's base path). Returns (status, the JSON body a client would
    have got: ``{"output", "usage", "model"}`` or ``{"error": ...}``). Never streams (a
    ``stream`` argument is dropped). Retired versions answer 410, deprecated ones run and
    send the Deprecation/Sunset/Link headers a direct call gets. ``response_headers``, when
    given, receives the answer's headers (request id, Retry-After, deprecation)."""
    if route.prompt is None:
        raise ValueError(f"route {route.base_path} is not a prompt API's")
    body = orjson.dumps({k: v for k, v in arguments.items() if k != "stream"})
    shown = path or route.base_path
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": shown,
        "raw_path": shown.encode(),
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)), *headers],
        "client": (client_ip, 0) if client_ip else None,
    }
    sent_body = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    status = 0
    parts: list[bytes] = []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            if response_headers is not None:
                response_headers.extend(message.get("headers") or ())
        else:
            parts.append(message.get("body", b""))

    call = PromptCall(gateway, scope, receive, send, route)
    call.preauthenticated = key
    call.record.channel = channel  # "mcp": the call log says the call came as a tool call
    call.record.api_id = route.api_id
    call.record.version_id = route.version_id
    if route.state == "retired":
        await call.refuse(Refusal(410, "version_retired", "This API version is retired."))
    else:
        call.headers_out.extend(route.deprecation_headers)  # as Call.route_request does for a direct call
        await call.run()
    answer = b"".join(parts)
    try:
        parsed = orjson.loads(answer) if answer else {}
    except orjson.JSONDecodeError:
        parsed = {"error": {"code": "internal_error", "message": "The answer was not JSON."}}
    return status, parsed if isinstance(parsed, dict) else {"output": parsed}
