"""Routing, authentication, conformance, faults and answers: one request in, one reply out.

URL layout (one process stands for every provider):

| kind              | prefix        | paths                                                              |
|-------------------|---------------|--------------------------------------------------------------------|
| openai            | /openai       | /v1/chat/completions, /v1/embeddings                               |
| openai-compatible | /compatible   | same                                                               |
| mistral           | /mistral      | same                                                               |
| azure-openai      | /azure        | /openai/deployments/{deployment}/chat/completions?api-version=...  |
|                   |               | (and /embeddings)                                                  |
| anthropic         | /anthropic    | /v1/messages                                                       |
| gemini            | /gemini       | /v1beta/models/{model}:generateContent, :streamGenerateContent     |
|                   |               | ?alt=sse, :batchEmbedContents, :embedContent                       |
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import orjson

from llm.mock_provider import anthropic_format, gemini_format, openai_format
from llm.mock_provider.answers import OFF_SCHEMA_TEXT, Answer, answer, with_text
from llm.mock_provider.control import Control, ControlError, Fault, Record, last4
from llm.mock_provider.errors import auth_error, conformance_error, context_length_error, error_reply, in_stream_error
from llm.mock_provider.httpserver import Delivery, Reply, Request

Json = dict[str, Any]

OPENAI_FAMILY = {"openai": "openai", "compatible": "openai-compatible", "mistral": "mistral"}
SSE = b"text/event-stream"
JSON_CONTENT = b"application/json"
DEFAULT_FAULT_MS = {"slow_first_byte": 1000, "slow_stream": 200}


@dataclass(slots=True, frozen=True)
class Route:
    kind: str
    endpoint: str  # chat | embeddings
    model: str  # from the path (Azure deployment, Gemini model); "" when the body names it
    method: str = ""  # Gemini: generateContent | streamGenerateContent | batchEmbedContents | embedContent


FIXED_ROUTES = {
    f"/{prefix}/v1/{tail}": Route(kind, endpoint, "")
    for prefix, kind in OPENAI_FAMILY.items()
    for tail, endpoint in (("chat/completions", "chat"), ("embeddings", "embeddings"))
} | {"/anthropic/v1/messages": Route("anthropic", "chat", "")}
ANSWER_CACHE_SIZE = 4096


def parse_route(path: str) -> Route | str | None:
    """The route, or the kind whose prefix matched a path it does not serve, or None."""
    if (fixed := FIXED_ROUTES.get(path)) is not None:
        return fixed
    _, _, rest = path.partition("/")
    prefix, _, tail = rest.partition("/")
    tail = "/" + tail
    if prefix in OPENAI_FAMILY:
        kind = OPENAI_FAMILY[prefix]
        if tail == "/v1/chat/completions":
            return Route(kind, "chat", "")
        if tail == "/v1/embeddings":
            return Route(kind, "embeddings", "")
        return kind
    if prefix == "azure":
        parts = tail.split("/")  # ['', 'openai', 'deployments', name, ...]
        if len(parts) >= 5 and parts[1] == "openai" and parts[2] == "deployments" and parts[3]:
            endpoint = "/".join(parts[4:])
            if endpoint == "chat/completions":
                return Route("azure-openai", "chat", parts[3])
            if endpoint == "embeddings":
                return Route("azure-openai", "embeddings", parts[3])
        return "azure-openai"
    if prefix == "anthropic":
        return Route("anthropic", "chat", "") if tail == "/v1/messages" else "anthropic"
    if prefix == "gemini":
        for version in ("/v1beta/models/", "/v1/models/"):
            if tail.startswith(version):
                model, _, method = tail[len(version) :].rpartition(":")
                if model and "/" not in model:
                    if method in ("generateContent", "streamGenerateContent"):
                        return Route("gemini", "chat", model, method)
                    if method in ("batchEmbedContents", "embedContent"):
                        return Route("gemini", "embeddings", model, method)
        return "gemini"
    return None


def api_key(kind: str, request: Request) -> str | None:
    headers = request.headers
    if kind == "azure-openai":
        value = headers.get(b"api-key")
    elif kind == "anthropic":
        # x-api-key as documented; the anthropic SDK (2.x) sends its API key as a Bearer token.
        value = headers.get(b"x-api-key")
        if value is None and (bearer := headers.get(b"authorization", b"")).startswith(b"Bearer "):
            value = bearer[7:]
    elif kind == "gemini":
        value = headers.get(b"x-goog-api-key")
        if value is None and "key=" in request.query:
            return parse_qs(request.query).get("key", [None])[-1]
    else:
        value = headers.get(b"authorization")
        if value is None or not value.startswith(b"Bearer "):
            return None
        value = value[7:]
    return value.decode("latin-1") if value is not None else None


def header_problems(kind: str, route: Route, request: Request, key: str | None) -> list[str]:
    problems: list[str] = []
    if key is None and kind != "openai-compatible":
        header = {"azure-openai": "api-key", "anthropic": "x-api-key", "gemini": "x-goog-api-key"}.get(
            kind, "Authorization: Bearer"
        )
        problems.append(f"missing API key: the {kind} API takes it in the {header} header")
    content_type = request.headers.get(b"content-type", b"")
    if not content_type.lower().startswith(b"application/json"):
        problems.append(f"Content-Type must be application/json, got {content_type.decode('latin-1')!r}")
    if kind == "anthropic":
        problems += anthropic_format.check_headers(request.headers)
    if kind == "azure-openai" and not parse_qs(request.query).get("api-version"):
        problems.append("The api-version query parameter (?api-version=) is required for all requests.")
    if kind == "gemini" and route.method == "streamGenerateContent" and parse_qs(request.query).get("alt") != ["sse"]:
        problems.append(
            "streamGenerateContent is asked for with alt=sse (server-sent events); "
            "without it the answer is a JSON array"
        )
    return problems


def parse_error(kind: str) -> Reply:
    if kind == "anthropic":
        return error_reply(kind, 400, "There was an error parsing the body of your request: expected a JSON object")
    if kind == "gemini":
        return error_reply(kind, 400, "Invalid JSON payload received. Expected a JSON object.")
    return error_reply(
        kind,
        400,
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
        "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
    )


class MockProvider:
    """The request handler. ``check``: validate every request against its provider's
    documented format (off for benchmarks). ``stream_delay``: seconds between stream
    events for every stream (holds streams open, as a generating model does)."""

    def __init__(self, *, check: bool = True, stream_delay: float = 0.0, workers: int = 1) -> None:
        self.check = check
        self.stream_delay = stream_delay
        self.workers = workers
        self.control = Control()
        # Answers by (kind, body): they are a function of the request, and a benchmark sends
        # the same body again and again.
        self.answers: dict[tuple[str, bytes], Answer] = {}

    def __call__(self, request: Request) -> tuple[Reply, Delivery | None]:
        if request.path.startswith("/_mock/"):
            return self.control_reply(request), None
        route = parse_route(request.path)
        if not isinstance(route, Route):
            message = f"Unknown request URL: {request.method} {request.path}."
            reply = (
                error_reply(route, 404, message) if route else Reply(404, orjson.dumps({"error": {"message": message}}))
            )
            return reply, None
        key = api_key(route.kind, request)
        record = Record(
            seq=self.control.next_seq(),
            at=time.time(),
            kind=route.kind,
            endpoint=route.endpoint,
            model=route.model,
            stream=False,
            method=request.method,
            target=request.target,
            raw_headers=request.raw_headers,
            body=request.body,
            key_last4=last4(key) if key else "",
            problems=None,
        )
        self.control.record(record)
        reply, delivery = self.answer(route, request, key, record)
        record.status = reply.status
        return reply, delivery

    def answer(self, route: Route, request: Request, key: str | None, record: Record) -> tuple[Reply, Delivery | None]:
        kind = route.kind
        problems = header_problems(kind, route, request, key) if self.check else None
        if request.method != "POST":
            record.problems = [*(problems or ()), f"{request.method} is not allowed here: the API takes POST"]
            return error_reply(
                kind, 404 if kind != "anthropic" else 405, f"Invalid method for URL ({request.method} {request.path})"
            ), None
        if key is None and kind != "openai-compatible":
            record.problems = problems
            return auth_error(kind, None), None
        if key is not None and "invalid" in key:
            record.problems = problems
            return auth_error(kind, key), None
        try:
            body = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            body = None
        if not isinstance(body, dict):
            record.problems = [*(problems or ()), "the body is not a JSON object"]
            return parse_error(kind), None
        model = route.model or (body["model"] if isinstance(body.get("model"), str) else "")
        stream = route.method == "streamGenerateContent" if kind == "gemini" else body.get("stream") is True
        record.model, record.stream = model, stream
        if problems is not None:
            problems += self.body_problems(route, body)
            record.problems = problems
            if problems:
                return conformance_error(kind, problems), None
        fault = (
            self.control.take_fault(kind, model, record.key_last4, stream, route.endpoint)
            if self.control.faults
            else None
        )
        if fault is not None:
            record.fault = fault.name
        try:
            return self.render(route, body, request.body, model, stream, record.seq, fault)
        except (AttributeError, TypeError, KeyError, ValueError, IndexError) as error:
            # Only reachable with --no-check: a body the provider would have refused.
            return conformance_error(kind, [f"malformed request: {error}"]), None

    def body_problems(self, route: Route, body: Json) -> list[str]:
        kind = route.kind
        if kind == "anthropic":
            return anthropic_format.check_messages_request(body)
        if kind == "gemini":
            if route.endpoint == "embeddings":
                return gemini_format.check_embed(body, route.model, route.method == "batchEmbedContents")
            return gemini_format.check_generate(body)
        if route.endpoint == "embeddings":
            return openai_format.check_embeddings(kind, body)
        return openai_format.check_chat(kind, body)

    def render(
        self, route: Route, body: Json, raw: bytes, model: str, stream: bool, seq: int, fault: Fault | None
    ) -> tuple[Reply, Delivery | None]:
        kind = route.kind
        name = fault.name if fault is not None else ""
        params = fault.params if fault is not None else {}
        if name == "status" or (name == "stream_error" and not stream):
            retry_after = params.get("retry_after")
            status = int(params.get("status", 500))
            return error_reply(kind, status, params.get("message"), retry_after=retry_after), None
        if name == "context_length":
            return context_length_error(kind, 0), None
        usage = name != "no_usage"
        headers = self.success_headers(kind, seq)
        if route.endpoint == "embeddings":
            if kind == "gemini":
                payload = gemini_format.render_embeddings(model, body, route.method == "batchEmbedContents")
            else:
                payload = openai_format.render_embeddings(kind, model, body, usage=usage)
            reply = Reply(200, payload, headers)
        else:
            said = self.chat_answer(kind, body, raw)
            if name == "off_schema":
                said = with_text(said, str(params.get("text", OFF_SCHEMA_TEXT)))
            reply = self.chat_reply(kind, body, model, stream, seq, said, usage)
            reply.headers = headers
        if name == "bad_json":
            if reply.events is None:
                reply.body = reply.body[: len(reply.body) // 2]
            else:
                reply.events.insert(1, self.broken_event(kind))
        if name == "stream_error" and reply.events is not None:
            after = int(params.get("after_events", max(1, len(reply.events) // 2)))
            status = int(params.get("status", 529 if kind == "anthropic" else 500))
            reply.events = [*reply.events[:after], in_stream_error(kind, status, params.get("message"))]
        return reply, self.delivery(name, params, reply)

    def chat_answer(self, kind: str, body: Json, raw: bytes) -> Answer:
        said = self.answers.get((kind, raw))
        if said is not None:
            return said
        if kind == "anthropic":
            said = answer(kind, anthropic_format.prompt(body), preface_tool_call=True)
        elif kind == "gemini":
            said = answer(kind, gemini_format.prompt(body))
        else:
            said = answer(kind, openai_format.prompt(body))
        if len(self.answers) >= ANSWER_CACHE_SIZE:
            self.answers.clear()
        self.answers[(kind, raw)] = said
        return said

    def chat_reply(self, kind: str, body: Json, model: str, stream: bool, seq: int, said: Answer, usage: bool) -> Reply:
        created = int(time.time())
        if kind == "anthropic":
            if stream:
                return Reply(
                    200, content_type=SSE, events=anthropic_format.stream_events(model, seq, said, usage=usage)
                )
            return Reply(200, anthropic_format.render_message(model, seq, said, usage=usage))
        if kind == "gemini":
            if stream:
                return Reply(200, content_type=SSE, events=gemini_format.stream_events(model, seq, said, usage=usage))
            return Reply(200, gemini_format.render_generate(model, seq, said, usage=usage))
        if stream:
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and options.get("include_usage") is True
            events = openai_format.stream_events(
                kind, model, seq, created, said, include_usage=include_usage, usage=usage
            )
            return Reply(200, content_type=SSE, events=events)
        return Reply(200, openai_format.render_chat(kind, model, seq, created, said, usage=usage))

    @staticmethod
    def success_headers(kind: str, seq: int) -> tuple[tuple[bytes, bytes], ...]:
        if kind == "anthropic":
            return ((b"request-id", b"req_mock%016d" % seq),)
        if kind in ("openai", "azure-openai"):
            return ((b"x-request-id", b"req_mock%016d" % seq),)
        return ()

    @staticmethod
    def broken_event(kind: str) -> bytes:
        if kind == "anthropic":
            return anthropic_format.broken_event()
        if kind == "gemini":
            return gemini_format.broken_event()
        return openai_format.broken_event()

    def delivery(self, name: str, params: Json, reply: Reply) -> Delivery | None:
        event_delay = self.stream_delay if reply.events is not None else 0.0
        if not name or name in ("no_usage", "bad_json", "stream_error"):
            return Delivery(event_delay=event_delay) if event_delay else None
        if name == "hang":
            return Delivery(hang=True)
        ms = float(params.get("ms", DEFAULT_FAULT_MS.get(name, 0))) / 1000
        if name == "slow_first_byte":
            return Delivery(first_byte_delay=ms, event_delay=event_delay)
        if name == "slow_stream":
            return Delivery(event_delay=ms)
        if name == "cut_stream":
            events = len(reply.events) if reply.events is not None else 0
            after = int(params.get("after_events", max(1, events // 2)))
            return Delivery(cut_after=after, event_delay=event_delay)
        return None

    # -- control endpoints -------------------------------------------------------------------

    def control_reply(self, request: Request) -> Reply:
        route = (request.method, request.path)
        if route == ("GET", "/_mock/health"):
            return _json(200, {"ok": True, "check": self.check, "workers": self.workers})
        if route == ("GET", "/_mock/requests"):
            return _json(200, {"requests": self.control.requests(request.query)})
        if route == ("GET", "/_mock/faults"):
            return _json(200, {"faults": [fault.to_json() for fault in self.control.faults]})
        if route == ("POST", "/_mock/reset"):
            self.control.reset()
            return _json(200, {"reset": True})
        if route == ("POST", "/_mock/faults"):
            if self.workers > 1:
                return _json(409, {"error": "faults live in one process: start the mock with --workers 1 to arm them"})
            try:
                fault = self.control.arm(orjson.loads(request.body or b"null"))
            except orjson.JSONDecodeError:
                return _json(400, {"error": "the fault is not valid JSON"})
            except ControlError as error:
                return _json(400, {"error": str(error)})
            return _json(201, {"armed": fault.to_json()})
        return _json(404, {"error": f"no control endpoint {request.method} {request.path}"})


def _json(status: int, value: Json) -> Reply:
    return Reply(status, orjson.dumps(value))
