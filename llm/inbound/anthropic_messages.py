"""Anthropic's Messages API on the client side (``POST /v1/messages``), translated to and
from the canonical format (OpenAI chat), so the official ``anthropic`` SDK works against
any provider behind the gateway.

Request: ``system`` -> a system message; user ``tool_result`` blocks -> ``tool`` messages
(placed before the rest of that user turn, as OpenAI wants them right after the call);
assistant ``tool_use`` blocks -> ``tool_calls``; ``tools[].input_schema`` -> function
``parameters``; ``tool_choice`` auto/any/tool/none -> auto/required/function/none;
``stop_sequences`` -> ``stop``; ``output_config.format`` -> ``response_format``
(json_schema); ``metadata.user_id`` -> ``user``; ``temperature``/``top_p`` as they are
(the current SDK no longer offers them, older clients still send them); ``top_k`` stays as
an extra canonical field (providers that have it use it, the others drop it). Fields with no
canonical meaning (``thinking``, ``service_tier``, ``container``, ...) are ignored; blocks
the canonical format cannot carry (documents, server tools, images inside tool results)
are refused with a 400 rather than silently dropped. Earlier ``thinking`` blocks of
assistant turns are dropped (no canonical place for them).

Answer: content blocks (text, then tool_use with the parsed arguments as ``input``),
``stop_reason`` from the finish reason, usage in Anthropic's meaning (``input_tokens``
excludes cache reads, which are ``cache_read_input_tokens``).

Stream: exactly Anthropic's event sequence (``message_start``, ``ping``, per block
``content_block_start``/``content_block_delta``/``content_block_stop``, then
``message_delta`` and ``message_stop``). A failure after the stream started is an
``event: error`` and nothing after it: the SDK raises on that event, and without
``message_stop`` nothing looks finished.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

import orjson

from llm.canonical import InvalidRequest, Json, Usage
from llm.inbound import validation as v
from llm.inbound.refusal import Refusal, refusal_headers

# kind -> (status, Anthropic error type), per docs.anthropic.com/en/api/errors and the
# SDK's classes (anthropic._error_classes: 400 BadRequestError, 401 AuthenticationError,
# 403 PermissionDeniedError, 404 NotFoundError, 413 ContentTooLargeError, 429
# RateLimitError, 504 GatewayTimeoutError, 529 OverloadedError, other 5xx
# InternalServerError). A prompt too long for the model is Anthropic's 400
# invalid_request_error ("prompt is too long"). "request_too_large" and "internal" are the
# gateway's own kinds.
ERRORS: dict[str, tuple[int, str]] = {
    "invalid_request": (400, "invalid_request_error"),
    "authentication": (401, "authentication_error"),
    "permission": (403, "permission_error"),
    "not_found": (404, "not_found_error"),
    "rate_limited": (429, "rate_limit_error"),
    "context_length": (400, "invalid_request_error"),
    "overloaded": (529, "overloaded_error"),
    "server": (502, "api_error"),  # the upstream failed: we are a gateway
    "timeout": (504, "timeout_error"),
    "connection": (502, "api_error"),
    "request_too_large": (413, "request_too_large"),
    "internal": (500, "api_error"),
}
_UNKNOWN_KIND = (500, "api_error")

# Canonical finish_reason -> Anthropic stop_reason.
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")


def _required(body: Json, key: str, param: str) -> Any:
    value = body.get(key)
    if value is None:
        raise InvalidRequest(f"{param}: Field required", param)
    return value


def _unsupported(param: str, what: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {what} is not supported by this gateway.", param)


# -- request -------------------------------------------------------------------------------------


def _system(value: object) -> str:
    if isinstance(value, str):
        return v.text(value, "system")
    texts = []
    for i, raw in enumerate(v.array(value, "system")):
        block = v.obj(raw, f"system[{i}]")
        v.one_of(block.get("type"), f"system[{i}].type", ("text",))
        texts.append(v.text(_required(block, "text", f"system[{i}].text"), f"system[{i}].text"))
    return "\n".join(texts)


def _image_part(block: Json, param: str) -> Json:
    source = v.obj(_required(block, "source", f"{param}.source"), f"{param}.source")
    kind = v.one_of(source.get("type"), f"{param}.source.type", ("base64", "url"))
    if kind == "url":
        url = v.text(_required(source, "url", f"{param}.source.url"), f"{param}.source.url", allow_empty=False)
    else:
        media_type = v.one_of(source.get("media_type"), f"{param}.source.media_type", _IMAGE_TYPES)
        data = v.text(_required(source, "data", f"{param}.source.data"), f"{param}.source.data", allow_empty=False)
        url = f"data:{media_type};base64,{data}"
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result(block: Json, param: str, pending: set[str]) -> Json:
    call_id = v.identifier(_required(block, "tool_use_id", f"{param}.tool_use_id"), f"{param}.tool_use_id")
    if call_id not in pending:
        raise InvalidRequest(
            f"{param}: unexpected `tool_use_id` found in `tool_result` blocks: {call_id}. Each `tool_result` block "
            "must have a corresponding `tool_use` block in the previous message.",
            f"{param}.tool_use_id",
        )
    pending.discard(call_id)
    content = block.get("content")
    if content is None:
        result = ""
    elif isinstance(content, str):
        result = v.text(content, f"{param}.content")
    else:
        texts = []
        for j, raw in enumerate(v.array(content, f"{param}.content")):
            p = f"{param}.content[{j}]"
            inner = v.obj(raw, p)
            if inner.get("type") == "image":
                raise _unsupported(p, "an image inside a tool_result")
            v.one_of(inner.get("type"), f"{p}.type", ("text",))
            texts.append(v.text(_required(inner, "text", f"{p}.text"), f"{p}.text"))
        result = "\n".join(texts)
    if block.get("is_error") is not None and v.boolean(block["is_error"], f"{param}.is_error"):
        # The canonical format has no error flag on a tool result: say it in the text.
        result = f"Error: {result}"
    return {"role": "tool", "tool_call_id": call_id, "content": result}


def _user_turn(content: object, param: str, pending: set[str], out: list[Json]) -> None:
    if isinstance(content, str):
        out.append({"role": "user", "content": v.text(content, param)})
        return
    tool_messages: list[Json] = []
    parts: list[Json] = []
    for j, raw in enumerate(v.array(content, param, allow_empty=False)):
        p = f"{param}[{j}]"
        block = v.obj(raw, p)
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": v.text(_required(block, "text", f"{p}.text"), f"{p}.text")})
        elif kind == "image":
            parts.append(_image_part(block, p))
        elif kind == "tool_result":
            tool_messages.append(_tool_result(block, p, pending))
        elif isinstance(kind, str) and kind:
            raise _unsupported(f"{p}.type", f"a '{kind:.40}' content block in a user turn")
        else:
            raise v.wrong_type(f"{p}.type", "a content block type", kind)
    out.extend(tool_messages)
    if len(parts) == 1 and parts[0]["type"] == "text":
        out.append({"role": "user", "content": parts[0]["text"]})
    elif parts:
        out.append({"role": "user", "content": parts})


def _assistant_turn(content: object, param: str, out: list[Json]) -> set[str]:
    """Appends the assistant message; returns the ids of the tool calls it made."""
    if isinstance(content, str):
        out.append({"role": "assistant", "content": v.text(content, param)})
        return set()
    texts: list[str] = []
    calls: list[Json] = []
    for j, raw in enumerate(v.array(content, param, allow_empty=False)):
        p = f"{param}[{j}]"
        block = v.obj(raw, p)
        kind = block.get("type")
        if kind == "text":
            texts.append(v.text(_required(block, "text", f"{p}.text"), f"{p}.text"))
        elif kind == "tool_use":
            call_id = v.identifier(_required(block, "id", f"{p}.id"), f"{p}.id")
            name = v.identifier(_required(block, "name", f"{p}.name"), f"{p}.name")
            arguments = v.obj(_required(block, "input", f"{p}.input"), f"{p}.input")
            calls.append(
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": orjson.dumps(arguments).decode()},
                }
            )
        elif kind in ("thinking", "redacted_thinking"):
            continue  # no canonical place; Anthropic itself ignores thinking of earlier turns
        elif isinstance(kind, str) and kind:
            raise _unsupported(f"{p}.type", f"a '{kind:.40}' content block in an assistant turn")
        else:
            raise v.wrong_type(f"{p}.type", "a content block type", kind)
    message: Json = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    out.append(message)
    return {call["id"] for call in calls}


def _messages(value: object) -> list[Json]:
    out: list[Json] = []
    pending: set[str] = set()  # tool_use ids of the previous assistant turn, not yet answered
    for i, raw in enumerate(v.array(value, "messages", allow_empty=False)):
        p = f"messages[{i}]"
        message = v.obj(raw, p)
        role = v.one_of(_required(message, "role", f"{p}.role"), f"{p}.role", ("user", "assistant"))
        content = _required(message, "content", f"{p}.content")
        if role == "user":
            _user_turn(content, f"{p}.content", pending, out)
            pending = set()
        else:
            pending = _assistant_turn(content, f"{p}.content", out)
    return out


def _tools(value: object) -> tuple[list[Json], set[str]]:
    tools: list[Json] = []
    names: set[str] = set()
    for i, raw in enumerate(v.array(value, "tools")):
        p = f"tools[{i}]"
        tool = v.obj(raw, p)
        if tool.get("type") not in (None, "custom"):
            raise _unsupported(f"{p}.type", f"the server tool {str(tool.get('type')):.60}")
        name = v.text(_required(tool, "name", f"{p}.name"), f"{p}.name", allow_empty=False)
        if not _TOOL_NAME.fullmatch(name):
            raise InvalidRequest(f"{p}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'", f"{p}.name")
        schema = v.obj(_required(tool, "input_schema", f"{p}.input_schema"), f"{p}.input_schema")
        function: Json = {"name": name, "parameters": schema}
        if tool.get("description") is not None:
            function["description"] = v.text(tool["description"], f"{p}.description")
        if tool.get("strict") is not None:
            function["strict"] = v.boolean(tool["strict"], f"{p}.strict")
        tools.append({"type": "function", "function": function})
        names.add(name)
    return tools, names


def _tool_choice(value: object, tool_names: set[str], request: Json) -> None:
    choice = v.obj(value, "tool_choice")
    kind = v.one_of(choice.get("type"), "tool_choice.type", ("auto", "any", "tool", "none"))
    if kind == "tool":
        name = v.text(_required(choice, "name", "tool_choice.name"), "tool_choice.name")
        if name not in tool_names:
            raise InvalidRequest(f"tool_choice.name: the tool {name!r:.80} is not in 'tools'.", "tool_choice.name")
        request["tool_choice"] = {"type": "function", "function": {"name": name}}
    elif kind in ("any", "tool") and not tool_names:
        raise InvalidRequest(f"tool_choice: type '{kind}' needs 'tools'.", "tool_choice")
    else:
        request["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[kind]
    if choice.get("disable_parallel_tool_use") is not None:
        disabled = v.boolean(choice["disable_parallel_tool_use"], "tool_choice.disable_parallel_tool_use")
        if disabled and tool_names:
            request["parallel_tool_calls"] = False


def _output_config(value: object, request: Json) -> None:
    """Structured outputs: ``output_config.format`` (a JSON schema the answer must match)
    -> ``response_format`` json_schema. ``effort`` has no canonical meaning: ignored."""
    config = v.obj(value, "output_config")
    if config.get("format") is None:
        return
    fmt = v.obj(config["format"], "output_config.format")
    v.one_of(fmt.get("type"), "output_config.format.type", ("json_schema",))
    schema = v.obj(_required(fmt, "schema", "output_config.format.schema"), "output_config.format.schema")
    request["response_format"] = {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": schema, "strict": True},
    }


def parse_messages_request(body: bytes | bytearray | memoryview) -> Json:
    """A ``/v1/messages`` body, checked, as the canonical request (``model`` = the client's
    alias). ``max_tokens`` is required, as Anthropic requires it. A streamed request asks
    for usage (``stream_options.include_usage``): Anthropic's stream always reports it."""
    body_obj = v.load_object(body)
    model = v.identifier(_required(body_obj, "model", "model"), "model")
    max_tokens = v.integer(_required(body_obj, "max_tokens", "max_tokens"), "max_tokens", 1, v.MAX_TOKENS_LIMIT)
    tools, tool_names = _tools(body_obj["tools"]) if body_obj.get("tools") is not None else ([], set())
    messages = _messages(_required(body_obj, "messages", "messages"))
    if body_obj.get("system") is not None:
        system = _system(body_obj["system"])
        if system:
            messages.insert(0, {"role": "system", "content": system})
    request: Json = {"model": model, "messages": messages, "max_tokens": max_tokens}
    if tools:
        request["tools"] = tools
    if body_obj.get("tool_choice") is not None:
        _tool_choice(body_obj["tool_choice"], tool_names, request)
    if body_obj.get("stop_sequences") is not None:
        stop = v.stop_sequences(body_obj["stop_sequences"], "stop_sequences")
        if stop:
            request["stop"] = stop if isinstance(stop, list) else [stop]
    if body_obj.get("temperature") is not None:
        request["temperature"] = v.number(body_obj["temperature"], "temperature", 0, 1)
    if body_obj.get("top_p") is not None:
        request["top_p"] = v.number(body_obj["top_p"], "top_p", 0, 1)
    if body_obj.get("top_k") is not None:
        request["top_k"] = v.integer(body_obj["top_k"], "top_k", 1, 2**31 - 1)
    if body_obj.get("output_config") is not None:
        _output_config(body_obj["output_config"], request)
    if body_obj.get("metadata") is not None:
        metadata = v.obj(body_obj["metadata"], "metadata")
        if metadata.get("user_id") is not None:
            request["user"] = v.text(metadata["user_id"], "metadata.user_id", max_length=256)
    stream = v.boolean(body_obj["stream"], "stream") if body_obj.get("stream") is not None else False
    request["stream"] = stream
    if stream:
        request["stream_options"] = {"include_usage": True}
    return request


# -- answer --------------------------------------------------------------------------------------


def usage_from_openai(usage: object) -> Usage | None:
    """A canonical usage dict as Usage (None when absent or malformed)."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else 0
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, cached_tokens=cached if isinstance(cached, int) else 0
    )


def anthropic_usage(usage: Usage | None) -> Json:
    """Anthropic's meaning: input_tokens are the uncached part; cache reads are counted
    apart (canonical prompt_tokens = input_tokens + cache_read_input_tokens)."""
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0}
    cached = min(max(usage.cached_tokens, 0), usage.prompt_tokens)
    return {
        "input_tokens": usage.prompt_tokens - cached,
        "cache_read_input_tokens": cached,
        "output_tokens": usage.completion_tokens,
    }


def stop_reason(finish_reason: object, stop_sequence: object) -> tuple[str, str | None]:
    """Anthropic's (stop_reason, stop_sequence). OpenAI's ``stop`` does not say whether a
    stop sequence ended the answer; a canonical choice carrying a non-standard
    ``stop_sequence`` string (what an Anthropic upstream reported) says it did. Without
    it the answer ended its turn. A missing or unknown finish reason is ``end_turn``."""
    if finish_reason == "stop" and isinstance(stop_sequence, str):
        return "stop_sequence", stop_sequence
    reason = STOP_REASONS.get(finish_reason, "end_turn") if isinstance(finish_reason, str) else "end_turn"
    return reason, None


def _message_id(completion_id: object) -> str:
    if isinstance(completion_id, str) and completion_id:
        if completion_id.startswith("msg_"):
            return completion_id
        return "msg_" + completion_id.removeprefix("chatcmpl-")
    return "msg_" + os.urandom(12).hex()


def _tool_input(arguments: object) -> Json:
    """A tool call's arguments as the ``input`` object. Arguments that are not a JSON
    object (a model's broken output) are kept whole rather than lost."""
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, dict):
        return arguments
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str | bytes) else None
    except orjson.JSONDecodeError:
        parsed = None
    return parsed if isinstance(parsed, dict) else {"_unparsed_arguments": arguments}


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def render_message(completion: Json, alias: str) -> bytes:
    """A canonical ``chat.completion`` as an Anthropic ``message``."""
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    blocks: list[Json] = []
    text = _text_of(message.get("content")) or _text_of(message.get("refusal"))
    if text:
        blocks.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id") or "toolu_" + os.urandom(12).hex(),
                "name": function.get("name") or "",
                "input": _tool_input(function.get("arguments")),
            }
        )
    reason, sequence = stop_reason(choice.get("finish_reason"), choice.get("stop_sequence"))
    answer = {
        "id": _message_id(completion.get("id")),
        "type": "message",
        "role": "assistant",
        "model": alias,
        "content": blocks,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": anthropic_usage(usage_from_openai(completion.get("usage"))),
    }
    return orjson.dumps(answer)


# -- stream --------------------------------------------------------------------------------------


def _event(name: bytes, data: Json) -> bytes:
    return b"event: " + name + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class AnthropicStreamEncoder:
    """Canonical chunks -> Anthropic's stream events. One open content block at a time:
    text deltas go to a text block, each tool call (by its canonical ``index``) to a
    tool_use block of its own; a change of kind or of tool call closes the open block.
    (Providers send a tool call's deltas together, so no block needs reopening.)"""

    __slots__ = (
        "_alias",
        "_input_tokens",
        "_started",
        "_blocks",
        "_open",
        "_open_tool",
        "_finish_reason",
        "_stop_sequence",
    )

    def __init__(self, alias: str, request: Json, *, input_tokens: int | None = None):
        self._alias = alias
        self._input_tokens = input_tokens  # the gateway's estimate, for message_start
        self._started = False
        self._blocks = 0  # content blocks opened so far (the next block's index)
        self._open: str | None = None  # "text" | "tool_use"
        self._open_tool: object = None  # canonical index of the open tool call
        self._finish_reason: object = None
        self._stop_sequence: object = None

    def _start(self, chunk: Json) -> bytes:
        self._started = True
        message: Json = {
            "id": _message_id(chunk.get("id")),
            "type": "message",
            "role": "assistant",
            "model": self._alias,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self._input_tokens or 0, "output_tokens": 0},
        }
        return _event(b"message_start", {"type": "message_start", "message": message}) + _event(
            b"ping", {"type": "ping"}
        )

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return _event(b"content_block_stop", {"type": "content_block_stop", "index": self._blocks - 1})

    def _open_block(self, block: Json) -> bytes:
        closed = self._close()
        self._open = block["type"]
        self._blocks += 1
        return closed + _event(
            b"content_block_start", {"type": "content_block_start", "index": self._blocks - 1, "content_block": block}
        )

    def _delta(self, delta: Json) -> bytes:
        return _event(
            b"content_block_delta", {"type": "content_block_delta", "index": self._blocks - 1, "delta": delta}
        )

    def chunk(self, chunk: Json) -> bytes:
        out = b"" if self._started else self._start(chunk)
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content") or delta.get("refusal")
            if isinstance(text, str) and text:
                if self._open != "text":
                    out += self._open_block({"type": "text", "text": ""})
                out += self._delta({"type": "text_delta", "text": text})
            for call in delta.get("tool_calls") or ():
                function = call.get("function") or {}
                index = call.get("index", 0)
                if self._open != "tool_use" or index != self._open_tool:
                    block: Json = {
                        "type": "tool_use",
                        "id": call.get("id") or "toolu_" + os.urandom(12).hex(),
                        "name": function.get("name") or "",
                        "input": {},
                    }
                    out += self._open_block(block)
                    self._open_tool = index
                arguments = function.get("arguments")
                if isinstance(arguments, str) and arguments:
                    out += self._delta({"type": "input_json_delta", "partial_json": arguments})
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
                self._stop_sequence = choice.get("stop_sequence")
        return out

    def finish(self, usage: Usage | None) -> bytes:
        out = b"" if self._started else self._start({})
        out += self._close()
        reason, sequence = stop_reason(self._finish_reason, self._stop_sequence)
        delta_usage = anthropic_usage(usage)
        if usage is None:
            delta_usage = {"output_tokens": 0}
        out += _event(
            b"message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": sequence},
                "usage": delta_usage,
            },
        )
        return out + _event(b"message_stop", {"type": "message_stop"})

    def error(self, kind: str, message: str) -> bytes:
        return _event(b"error", _error_object(kind, message, None))


# -- models --------------------------------------------------------------------------------------


def render_models_list(aliases: Iterable[str], *, created_at: str = "1970-01-01T00:00:00Z") -> bytes:
    """Anthropic's ``GET /v1/models`` page (for a client that lists models with the
    anthropic SDK; the gateway picks it when the request has ``anthropic-version``)."""
    data = [{"type": "model", "id": alias, "display_name": alias, "created_at": created_at} for alias in aliases]
    return orjson.dumps(
        {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
    )


# -- errors --------------------------------------------------------------------------------------


def status_for(kind: str) -> int:
    return ERRORS.get(kind, _UNKNOWN_KIND)[0]


def _error_object(kind: str, message: str, request_id: str | None) -> Json:
    error: Json = {"type": "error", "error": {"type": ERRORS.get(kind, _UNKNOWN_KIND)[1], "message": message}}
    if request_id:
        error["request_id"] = request_id
    return error


def error_json(kind: str, message: str, *, request_id: str | None = None) -> bytes:
    """``{"type": "error", "error": {"type", "message"}}`` (+ ``request_id`` as Anthropic
    adds it). Anthropic's errors have no ``param`` or ``code``: the message says which
    parameter, and ``x-should-retry`` / ``retry-after`` say what to do."""
    return orjson.dumps(_error_object(kind, message, request_id))


class AnthropicFormat:
    """The ``InboundFormat`` named ``anthropic`` (plus models and refusals)."""

    name = "anthropic"

    def parse_chat(self, body: bytes) -> Json:
        return parse_messages_request(body)

    def render_chat(self, completion: Json, alias: str) -> bytes:
        return render_message(completion, alias)

    def stream_encoder(self, alias: str, request: Json, *, input_tokens: int | None = None) -> AnthropicStreamEncoder:
        return AnthropicStreamEncoder(alias, request, input_tokens=input_tokens)

    def error_status(self, kind: str) -> int:
        return status_for(kind)

    def error_body(self, kind: str, message: str, *, param: str | None = None, code: str | None = None) -> bytes:
        return error_json(kind, message)

    def render_models(self, aliases: Iterable[str]) -> bytes:
        return render_models_list(aliases)

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
        """A whole error answer; ``request_id`` goes in the ``request-id`` header (the
        SDK's ``APIStatusError.request_id``) and the body, as Anthropic sends it."""
        headers = refusal_headers(
            retry_after=retry_after, should_retry=should_retry, request_id=request_id, request_id_header=b"request-id"
        )
        return Refusal(status_for(kind), headers, error_json(kind, message, request_id=request_id))

    def invalid(self, exc: InvalidRequest) -> Refusal:
        """The 400 for a body ``parse_chat`` refused."""
        return self.refusal("invalid_request", exc.message, param=exc.param)


ANTHROPIC = AnthropicFormat()
