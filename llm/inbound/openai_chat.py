"""The OpenAI wire format on the client side: ``POST /v1/chat/completions``,
``POST /v1/embeddings`` and ``GET /v1/models``.

Canonical = OpenAI Chat Completions, so a chat body is validated rather than translated:
what the official ``openai`` SDK (or a hostile client) sends is checked field by field and
refused with a 400 naming the parameter; fields we do not know are passed through
untouched, so new OpenAI parameters reach an OpenAI upstream.

Errors are ``{"error": {"message", "type", "param", "code"}}`` with the status the SDK maps
to its exception class (``openai._client.OpenAI._make_status_error``). In a stream, an
error is a ``data: {"error": {...}}`` event followed by nothing: the SDK's ``Stream``
raises ``APIError`` on a data event whose JSON has an ``error`` key, whereas a stream
that merely stops would end the client's loop as if the answer were complete.
"""

from __future__ import annotations

import array
import base64
import binascii
import os
import re
import sys
import time
from collections.abc import Iterable
from typing import Any

import orjson

from llm.canonical import InvalidRequest, Json, ProviderError, Usage
from llm.inbound import validation as v
from llm.inbound.refusal import Refusal, refusal_headers

# kind -> (status, error type, default code). Statuses follow the SDK's classes: 400
# BadRequestError, 401 AuthenticationError, 403 PermissionDeniedError, 404 NotFoundError,
# 429 RateLimitError, >= 500 InternalServerError (413 has no class: APIStatusError).
# "request_too_large" and "internal" are the gateway's own kinds (not provider kinds).
ERRORS: dict[str, tuple[int, str, str | None]] = {
    "invalid_request": (400, "invalid_request_error", None),
    "authentication": (401, "authentication_error", "invalid_api_key"),
    "permission": (403, "permission_error", None),
    "not_found": (404, "invalid_request_error", "model_not_found"),
    "rate_limited": (429, "rate_limit_error", "rate_limit_exceeded"),
    "context_length": (400, "invalid_request_error", "context_length_exceeded"),
    "overloaded": (503, "server_error", "overloaded"),
    "server": (502, "server_error", "upstream_error"),  # the upstream failed: we are a gateway
    "timeout": (504, "server_error", "timeout"),
    "connection": (502, "server_error", "upstream_unreachable"),
    "request_too_large": (413, "invalid_request_error", "request_too_large"),
    "internal": (500, "server_error", None),
}
_UNKNOWN_KIND = (500, "server_error", None)

_ROLES = ("system", "developer", "user", "assistant", "tool")
_USER_PARTS = ("text", "image_url", "input_audio", "file")
_TEXT_PARTS = ("text",)
_ASSISTANT_PARTS = ("text", "refusal")
_FUNCTION_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_MAX_INT64 = 2**63 - 1


def _required(body: Json, key: str, param: str) -> Any:
    value = body.get(key)
    if value is None:
        raise InvalidRequest(f"Missing required parameter: '{param}'.", param)
    return value


def _function_name(value: object, param: str) -> str:
    name = v.text(value, param, allow_empty=False)
    if not _FUNCTION_NAME.fullmatch(name):
        raise InvalidRequest(f"Invalid '{param}': a function name is 1-64 of a-z, A-Z, 0-9, '_' and '-'.", param)
    return name


# -- chat request --------------------------------------------------------------------------------


def _parts(value: object, param: str, allowed: tuple[str, ...]) -> None:
    for i, raw in enumerate(v.array(value, param, allow_empty=False)):
        p = f"{param}[{i}]"
        part = v.obj(raw, p)
        kind = v.one_of(part.get("type"), f"{p}.type", allowed)
        if kind == "text":
            v.text(_required(part, "text", f"{p}.text"), f"{p}.text")
        elif kind == "refusal":
            v.text(_required(part, "refusal", f"{p}.refusal"), f"{p}.refusal")
        elif kind == "image_url":
            image = v.obj(_required(part, "image_url", f"{p}.image_url"), f"{p}.image_url")
            v.text(_required(image, "url", f"{p}.image_url.url"), f"{p}.image_url.url", allow_empty=False)
            if image.get("detail") is not None:
                v.one_of(image["detail"], f"{p}.image_url.detail", ("auto", "low", "high"))
        elif kind == "input_audio":
            audio = v.obj(_required(part, "input_audio", f"{p}.input_audio"), f"{p}.input_audio")
            v.text(_required(audio, "data", f"{p}.input_audio.data"), f"{p}.input_audio.data", allow_empty=False)
            v.one_of(audio.get("format"), f"{p}.input_audio.format", ("wav", "mp3"))
        else:  # file
            v.obj(_required(part, "file", f"{p}.file"), f"{p}.file")


def _content(message: Json, param: str, allowed: tuple[str, ...], *, required: bool) -> bool:
    """Checks ``content``; says whether there is any."""
    content = message.get("content")
    if content is None:
        if required:
            raise InvalidRequest(f"Missing required parameter: '{param}.content'.", f"{param}.content")
        return False
    if isinstance(content, str):
        v.text(content, f"{param}.content")
    else:
        _parts(content, f"{param}.content", allowed)
    return True


def _tool_calls(value: object, param: str) -> list[str]:
    ids = []
    for i, raw in enumerate(v.array(value, param, allow_empty=False)):
        p = f"{param}[{i}]"
        call = v.obj(raw, p)
        ids.append(v.identifier(_required(call, "id", f"{p}.id"), f"{p}.id"))
        v.one_of(call.get("type", "function"), f"{p}.type", ("function",))
        function = v.obj(_required(call, "function", f"{p}.function"), f"{p}.function")
        v.text(_required(function, "name", f"{p}.function.name"), f"{p}.function.name", allow_empty=False)
        v.text(_required(function, "arguments", f"{p}.function.arguments"), f"{p}.function.arguments")
    return ids


def _messages(value: object) -> None:
    messages = v.array(value, "messages", allow_empty=False)
    # Tool calls of the latest assistant message still waiting for their tool message:
    # a tool message must answer one of them (OpenAI refuses it otherwise, and providers
    # that pair calls and results, Anthropic and Gemini, cannot translate it).
    pending: set[str] = set()
    for i, raw in enumerate(messages):
        p = f"messages[{i}]"
        message = v.obj(raw, p)
        role = message.get("role")
        if role == "function":
            raise InvalidRequest(
                f"'{p}.role': the deprecated 'function' role is not supported; use 'tool'.", f"{p}.role"
            )
        if role is None:
            raise InvalidRequest(f"Missing required parameter: '{p}.role'.", f"{p}.role")
        v.one_of(role, f"{p}.role", _ROLES)
        if message.get("name") is not None:
            v.identifier(message["name"], f"{p}.name")
        if role == "tool":
            call_id = v.identifier(_required(message, "tool_call_id", f"{p}.tool_call_id"), f"{p}.tool_call_id")
            if call_id not in pending:
                raise InvalidRequest(
                    f"'{p}' is a tool message answering {call_id!r}, but no preceding assistant message's "
                    "tool_calls is waiting for that id (tool messages must follow the assistant message "
                    "that made the call).",
                    f"{p}.tool_call_id",
                )
            pending.discard(call_id)
            _content(message, p, _TEXT_PARTS, required=True)
            continue
        pending.clear()
        if role == "assistant":
            has_content = _content(message, p, _ASSISTANT_PARTS, required=False)
            if message.get("refusal") is not None:
                v.text(message["refusal"], f"{p}.refusal")
            if message.get("tool_calls") is not None:
                pending.update(_tool_calls(message["tool_calls"], f"{p}.tool_calls"))
            elif not has_content and message.get("function_call") is None and message.get("audio") is None:
                raise InvalidRequest(f"'{p}': an assistant message needs 'content' or 'tool_calls'.", f"{p}.content")
        elif role == "user":
            _content(message, p, _USER_PARTS, required=True)
        else:  # system, developer
            _content(message, p, _TEXT_PARTS, required=True)


def _tools(value: object) -> set[str]:
    names: set[str] = set()
    for i, raw in enumerate(v.array(value, "tools")):
        p = f"tools[{i}]"
        tool = v.obj(raw, p)
        v.one_of(tool.get("type"), f"{p}.type", ("function",))
        function = v.obj(_required(tool, "function", f"{p}.function"), f"{p}.function")
        names.add(_function_name(_required(function, "name", f"{p}.function.name"), f"{p}.function.name"))
        if function.get("description") is not None:
            v.text(function["description"], f"{p}.function.description")
        if function.get("parameters") is not None:
            v.obj(function["parameters"], f"{p}.function.parameters")
        if function.get("strict") is not None:
            v.boolean(function["strict"], f"{p}.function.strict")
    return names


def _tool_choice(value: object, tool_names: set[str] | None) -> None:
    if isinstance(value, str):
        choice = v.one_of(value, "tool_choice", ("none", "auto", "required"))
        if choice == "required" and not tool_names:
            raise InvalidRequest("'tool_choice' is 'required' but no 'tools' are given.", "tool_choice")
        return
    choice_obj = v.obj(value, "tool_choice")
    kind = v.one_of(choice_obj.get("type"), "tool_choice.type", ("function", "allowed_tools"))
    if kind == "function":
        function = v.obj(_required(choice_obj, "function", "tool_choice.function"), "tool_choice.function")
        name = v.text(_required(function, "name", "tool_choice.function.name"), "tool_choice.function.name")
        if tool_names is None or name not in tool_names:
            raise InvalidRequest(
                f"'tool_choice' names the function {name!r:.80}, which is not in 'tools'.", "tool_choice"
            )


def _response_format(value: object) -> None:
    fmt = v.obj(value, "response_format")
    kind = v.one_of(fmt.get("type"), "response_format.type", ("text", "json_object", "json_schema"))
    if kind != "json_schema":
        return
    spec = v.obj(_required(fmt, "json_schema", "response_format.json_schema"), "response_format.json_schema")
    _function_name(_required(spec, "name", "response_format.json_schema.name"), "response_format.json_schema.name")
    if spec.get("schema") is not None:
        v.obj(spec["schema"], "response_format.json_schema.schema")
    if spec.get("strict") is not None:
        v.boolean(spec["strict"], "response_format.json_schema.strict")
    if spec.get("description") is not None:
        v.text(spec["description"], "response_format.json_schema.description")


def parse_chat_request(body: bytes | bytearray | memoryview) -> Json:
    """A ``/v1/chat/completions`` body, checked, as the canonical request (``model`` = the
    client's alias, ``stream`` a bool). Raises InvalidRequest naming the parameter."""
    request = v.load_object(body)
    v.identifier(_required(request, "model", "model"), "model")
    _messages(_required(request, "messages", "messages"))

    def given(key: str) -> bool:
        return request.get(key) is not None

    if given("temperature"):
        v.number(request["temperature"], "temperature", 0, 2)
    if given("top_p"):
        v.number(request["top_p"], "top_p", 0, 1)
    if given("n") and v.integer(request["n"], "n", 1, 128) != 1:
        raise InvalidRequest("Only n=1 is supported by this gateway: send one request per choice.", "n")
    for key in ("max_tokens", "max_completion_tokens"):
        if given(key):
            request[key] = v.integer(request[key], key, 1, v.MAX_TOKENS_LIMIT)
    for key in ("presence_penalty", "frequency_penalty"):
        if given(key):
            v.number(request[key], key, -2, 2)
    if given("logit_bias"):
        for token, bias in v.obj(request["logit_bias"], "logit_bias").items():
            v.number(bias, f"logit_bias.{token:.20}", -100, 100)
    if given("logprobs"):
        v.boolean(request["logprobs"], "logprobs")
    if given("top_logprobs"):
        v.integer(request["top_logprobs"], "top_logprobs", 0, 20)
    if given("stop"):
        v.stop_sequences(request["stop"], "stop")
    if given("seed"):
        v.integer(request["seed"], "seed", -_MAX_INT64 - 1, _MAX_INT64)
    if given("user"):
        v.text(request["user"], "user", max_length=256)
    stream = v.boolean(request["stream"], "stream") if given("stream") else False
    request["stream"] = stream
    if given("stream_options"):
        if not stream:
            raise InvalidRequest("'stream_options' is only allowed when 'stream' is true.", "stream_options")
        options = v.obj(request["stream_options"], "stream_options")
        if options.get("include_usage") is not None:
            v.boolean(options["include_usage"], "stream_options.include_usage")
    tool_names = _tools(request["tools"]) if given("tools") else None
    if given("tool_choice"):
        _tool_choice(request["tool_choice"], tool_names)
    if given("parallel_tool_calls"):
        v.boolean(request["parallel_tool_calls"], "parallel_tool_calls")
    if given("response_format"):
        _response_format(request["response_format"])
    return request


# -- chat answer and stream ----------------------------------------------------------------------


def _completion_id() -> str:
    return "chatcmpl-" + os.urandom(12).hex()


def render_chat_completion(completion: Json, alias: str) -> bytes:
    """A canonical ``chat.completion`` as the client's answer: its ``model`` is the alias
    the client asked for (never the upstream model)."""
    answer = {**completion, "model": alias}
    answer.setdefault("id", _completion_id())
    answer.setdefault("object", "chat.completion")
    answer.setdefault("created", int(time.time()))
    return orjson.dumps(answer)


def _error_object(kind: str, message: str, param: str | None, code: str | None) -> Json:
    _, error_type, default_code = ERRORS.get(kind, _UNKNOWN_KIND)
    return {"message": message, "type": error_type, "param": param, "code": code or default_code}


class OpenAIStreamEncoder:
    """Canonical chunks -> ``data: {chunk}\\n\\n`` events with the client's alias as model.

    Usage leaves exactly once, in ``finish``, as OpenAI's own final chunk (``choices: []``)
    and only when the client asked with ``stream_options.include_usage``: the gateway may
    have asked the upstream for usage on its own account, and the canonical stream may
    carry it on a content chunk or a chunk of its own."""

    __slots__ = ("_alias", "_include_usage", "_identity_of_stream")

    def __init__(self, alias: str, request: Json):
        options = request.get("stream_options")
        self._alias = alias
        self._include_usage = isinstance(options, dict) and options.get("include_usage") is True
        self._identity_of_stream: tuple[str, int] | None = None

    def _identity(self, chunk: Json) -> tuple[str, int]:
        """One id and creation time for every chunk (the first chunk's, or made up)."""
        if self._identity_of_stream is None:
            given_id, given_created = chunk.get("id"), chunk.get("created")
            self._identity_of_stream = (
                given_id if isinstance(given_id, str) and given_id else _completion_id(),
                given_created if isinstance(given_created, int) else int(time.time()),
            )
        return self._identity_of_stream

    def chunk(self, chunk: Json) -> bytes:
        if not chunk.get("choices"):
            return b""  # a usage-only chunk: finish() writes the usage, once
        chunk_id, created = self._identity(chunk)
        event = {**chunk, "id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": self._alias}
        if self._include_usage:
            event["usage"] = None  # as OpenAI: every chunk but the last has "usage": null
        else:
            event.pop("usage", None)
        return b"data: " + orjson.dumps(event) + b"\n\n"

    def finish(self, usage: Usage | None) -> bytes:
        if not self._include_usage:
            return b"data: [DONE]\n\n"
        chunk_id, created = self._identity({})
        event = {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": self._alias,
            "choices": [],
            "usage": usage.to_openai() if usage is not None else None,
        }
        return b"data: " + orjson.dumps(event) + b"\n\ndata: [DONE]\n\n"

    def error(self, kind: str, message: str) -> bytes:
        return b"data: " + orjson.dumps({"error": _error_object(kind, message, None, None)}) + b"\n\n"


# -- embeddings ----------------------------------------------------------------------------------


def _embedding_input(value: object) -> None:
    if isinstance(value, str):
        v.text(value, "input", allow_empty=False)
        return
    items = v.array(value, "input", allow_empty=False)
    first = items[0]
    if isinstance(first, str):
        for i, item in enumerate(items):
            v.text(item, f"input[{i}]", allow_empty=False)
    elif isinstance(first, list):
        for i, tokens in enumerate(items):
            for j, token in enumerate(v.array(tokens, f"input[{i}]", allow_empty=False)):
                v.integer(token, f"input[{i}][{j}]", 0, 2**32 - 1)
    else:
        for i, token in enumerate(items):
            v.integer(token, f"input[{i}]", 0, 2**32 - 1)


def parse_embeddings_request(body: bytes | bytearray | memoryview) -> Json:
    """A ``/v1/embeddings`` body, checked. ``input``: a string, a list of strings, a list
    of token ids or a list of token-id lists. ``encoding_format`` is kept as the client sent
    it (the openai SDK sends ``base64`` unless told otherwise): ``render_embeddings``
    honours it whatever the upstream returned."""
    request = v.load_object(body)
    v.identifier(_required(request, "model", "model"), "model")
    _embedding_input(_required(request, "input", "input"))
    if request.get("encoding_format") is not None:
        v.one_of(request["encoding_format"], "encoding_format", ("float", "base64"))
    if request.get("dimensions") is not None:
        request["dimensions"] = v.integer(request["dimensions"], "dimensions", 1, 65536)
    if request.get("user") is not None:
        v.text(request["user"], "user", max_length=256)
    return request


def floats_to_base64(vector: list[float]) -> str:
    """Little-endian float32, base64: what OpenAI sends for ``encoding_format=base64``."""
    packed = array.array("f", vector)
    if sys.byteorder != "little":  # pragma: no cover - every platform we run on is little-endian
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def base64_to_floats(encoded: str) -> list[float]:
    raw = base64.b64decode(encoded)
    packed = array.array("f")
    packed.frombytes(raw[: len(raw) - len(raw) % 4])
    if sys.byteorder != "little":  # pragma: no cover
        packed.byteswap()
    return packed.tolist()


def render_embeddings_response(response: Json, alias: str, request: Json) -> bytes:
    """A canonical embeddings answer (vectors as float lists, or as base64 strings when the
    upstream was asked for them) in the encoding the client asked for."""
    want_base64 = request.get("encoding_format") == "base64"
    data = []
    for index, item in enumerate(response.get("data") or ()):
        vector = item.get("embedding")
        try:
            if want_base64 and isinstance(vector, list):
                vector = floats_to_base64(vector)
            elif not want_base64 and isinstance(vector, str):
                vector = base64_to_floats(vector)
        except (TypeError, ValueError, OverflowError, binascii.Error) as exc:
            # The upstream's fault, not the client's.
            raise ProviderError("server", f"The upstream's embedding {index} is malformed: {exc}") from None
        data.append({"object": "embedding", "index": item.get("index", index), "embedding": vector})
    usage = response.get("usage") or {}
    prompt_tokens = usage.get("prompt_tokens", 0)
    answer = {
        "object": "list",
        "data": data,
        "model": alias,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": usage.get("total_tokens", prompt_tokens)},
    }
    return orjson.dumps(answer)


# -- models --------------------------------------------------------------------------------------


def render_models_list(aliases: Iterable[str], *, created: int = 0, owned_by: str = "portico") -> bytes:
    """``GET /v1/models``: one ``model`` object per alias the calling key may use."""
    data = [{"id": alias, "object": "model", "created": created, "owned_by": owned_by} for alias in aliases]
    return orjson.dumps({"object": "list", "data": data})


# -- errors --------------------------------------------------------------------------------------


def status_for(kind: str) -> int:
    return ERRORS.get(kind, _UNKNOWN_KIND)[0]


def error_json(kind: str, message: str, *, param: str | None = None, code: str | None = None) -> bytes:
    return orjson.dumps({"error": _error_object(kind, message, param, code)})


class OpenAIFormat:
    """The ``InboundFormat`` named ``openai`` (plus embeddings, models and refusals)."""

    name = "openai"

    def parse_chat(self, body: bytes) -> Json:
        return parse_chat_request(body)

    def render_chat(self, completion: Json, alias: str) -> bytes:
        return render_chat_completion(completion, alias)

    def stream_encoder(self, alias: str, request: Json) -> OpenAIStreamEncoder:
        return OpenAIStreamEncoder(alias, request)

    def error_status(self, kind: str) -> int:
        return status_for(kind)

    def error_body(self, kind: str, message: str, *, param: str | None = None, code: str | None = None) -> bytes:
        return error_json(kind, message, param=param, code=code)

    def parse_embeddings(self, body: bytes) -> Json:
        return parse_embeddings_request(body)

    def render_embeddings(self, response: Json, alias: str, request: Json) -> bytes:
        return render_embeddings_response(response, alias, request)

    def render_models(self, aliases: Iterable[str], *, created: int = 0) -> bytes:
        return render_models_list(aliases, created=created)

    def refusal(
        self,
        kind: str,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        should_retry: bool | None = None,
        request_id: str | None = None,
    ) -> Refusal:
        """A whole error answer, e.g. an exhausted budget: ``refusal("rate_limited", ...,
        code="budget_exceeded", should_retry=False)``; a token-rate limit:
        ``refusal("rate_limited", ..., code="tokens_per_minute", retry_after=12.5)``."""
        headers = refusal_headers(
            retry_after=retry_after, should_retry=should_retry, request_id=request_id, request_id_header=b"x-request-id"
        )
        return Refusal(status_for(kind), headers, error_json(kind, message, param=param, code=code))

    def invalid(self, exc: InvalidRequest) -> Refusal:
        """The 400 for a body ``parse_chat``/``parse_embeddings`` refused."""
        code = None if exc.code == "invalid_request_error" else exc.code
        return self.refusal("invalid_request", exc.message, param=exc.param, code=code)


OPENAI = OpenAIFormat()
