"""Anthropic Messages API (``POST {base}/v1/messages``, ``x-api-key``,
``anthropic-version: 2023-06-01``).

Requests from canonical:
- system (and developer) messages → top-level ``system`` (their texts joined by a blank
  line, wherever they stood); consecutive same-role messages are merged into one turn (the
  API wants alternating turns); tool results → ``tool_result`` blocks in a user turn, ahead
  of any text there; assistant ``tool_calls`` → ``tool_use`` blocks with the arguments parsed.
- images: data URLs → base64 image blocks (jpeg/png/gif/webp, others refused with 400);
  http(s) URLs → URL image blocks (Anthropic fetches them itself); PDFs given as ``file``
  parts with a data URL → document blocks.
- ``max_tokens`` is required: the request's ``max_completion_tokens``/``max_tokens``, else
  ``DEFAULT_MAX_TOKENS``.
- ``temperature`` is clamped to Anthropic's 0..1 (OpenAI allows up to 2).
- ``response_format``: ``json_schema`` → ``output_config.format`` (Anthropic's structured
  outputs, JSON schema); ``json_object`` has no Anthropic equivalent (a schema is required),
  so it becomes an instruction at the end of ``system`` to answer with one JSON object only.
- ``n`` > 1 is refused (one answer per call).
- a tool's ``strict`` flag is dropped: Anthropic's strict tool use exists only on recent
  models and an older one would refuse the whole request for it, while without it the tool
  still works (only the schema guarantee is lost).

Answers: text blocks → content, ``tool_use`` → ``tool_calls``, thinking blocks dropped;
``stop_reason`` mapped by ``FINISH_REASONS``; usage: prompt = input + cache reads + cache
writes, cached = cache reads.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from llm.canonical import InvalidRequest, Json, ModelTarget, ProviderError, ProviderKey, UpstreamRequest, Usage
from llm.providers import common
from llm.providers.openai import secret_header
from llm.sse import SSEError, SSEParser

ANTHROPIC_VERSION = b"2023-06-01"
DEFAULT_MAX_TOKENS = 4096  # every current Claude model can produce at least this many
JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object and nothing else."
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

ERROR_TYPES = {
    "invalid_request_error": "invalid_request",
    "request_too_large": "invalid_request",
    "authentication_error": "authentication",
    "permission_error": "permission",
    "billing_error": "permission",
    "not_found_error": "not_found",
    "rate_limit_error": "rate_limited",
    "api_error": "server",
    "overloaded_error": "overloaded",
    "timeout_error": "timeout",
}

_TOOL_ID = re.compile(r"[a-zA-Z0-9_-]+")
_NOT_ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


def tool_use_id(call_id: Any) -> str:
    """Anthropic requires ``^[a-zA-Z0-9_-]+$`` for tool_use ids; other providers' ids are made
    to fit the same way on both sides of a call/result pair."""
    text = common.as_str(call_id)
    if _TOOL_ID.fullmatch(text):
        return text
    if not text:
        raise InvalidRequest("a tool call and its result need an id", param="messages")
    return _NOT_ID_CHARS.sub("_", text)


def usage_from_anthropic(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    cache_read = common.as_int(usage.get("cache_read_input_tokens"))
    return Usage(
        prompt_tokens=common.as_int(usage.get("input_tokens"))
        + cache_read
        + common.as_int(usage.get("cache_creation_input_tokens")),
        completion_tokens=common.as_int(usage.get("output_tokens")),
        cached_tokens=cache_read,
    )


def finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def error_from_object(error: Any, status: int = 0) -> ProviderError:
    error_obj = common.as_dict(error)
    message = common.as_str(error_obj.get("message")) or "the provider reported an error"
    kind = ERROR_TYPES.get(common.as_str(error_obj.get("type")), "server")
    if kind == "invalid_request" and common.looks_like_context_length(message):
        kind = "context_length"
    return ProviderError(kind, message, status=status)


class AnthropicAdapter:
    kind = "anthropic"
    default_base_url = "https://api.anthropic.com"

    # -- chat request ----------------------------------------------------------------------------

    def chat_request(self, target: ModelTarget, key: ProviderKey, request: Json, stream: bool) -> UpstreamRequest:
        body = self.chat_body(target, request, stream)
        headers = common.JSON_HEADERS + (
            (b"x-api-key", secret_header(key.secret)),
            (b"anthropic-version", ANTHROPIC_VERSION),
        )
        url = common.join_url(target.base_url or self.default_base_url, "/v1/messages")
        return UpstreamRequest(b"POST", url, headers, common.dumps(body))

    def chat_body(self, target: ModelTarget, request: Json, stream: bool) -> Json:
        n = request.get("n")
        if n is not None and n != 1:
            raise InvalidRequest("this model gives one choice per request (n must be 1)", param="n")
        system: list[str] = []
        turns: list[Json] = []
        for message in common.messages_of(request):
            role = message.get("role")
            if role in ("system", "developer"):
                text = common.content_text(message.get("content"))
                if text:
                    system.append(text)
                continue
            if role == "user":
                blocks = self._user_blocks(message.get("content"))
            elif role == "assistant":
                blocks = self._assistant_blocks(message)
            elif role == "tool":
                role = "user"
                blocks = [self._tool_result(message)]
            else:
                raise InvalidRequest(f"unsupported message role {role!r}", param="messages")
            if not blocks:
                continue  # Anthropic refuses empty turns; an empty message says nothing
            if turns and turns[-1]["role"] == role:
                turns[-1]["content"].extend(blocks)
            else:
                turns.append({"role": role, "content": blocks})
        for turn in turns:
            if turn["role"] == "user":  # tool results must open their turn
                turn["content"].sort(key=lambda block: block["type"] != "tool_result")
        body: Json = {
            "model": target.upstream_model,
            "max_tokens": common.max_output_tokens(request) or DEFAULT_MAX_TOKENS,
            "messages": turns,
        }
        response_format = common.as_dict(request.get("response_format"))
        format_type = response_format.get("type")
        if format_type == "json_object":
            system.append(JSON_OBJECT_INSTRUCTION)
        elif format_type == "json_schema":
            schema = common.as_dict(response_format.get("json_schema")).get("schema")
            if not isinstance(schema, dict):
                raise InvalidRequest("response_format.json_schema.schema must be an object", param="response_format")
            body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        elif format_type not in (None, "text"):
            raise InvalidRequest(f"unsupported response_format type {format_type!r}", param="response_format")
        if system:
            body["system"] = "\n\n".join(system)
        temperature = request.get("temperature")
        if temperature is not None:
            if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature < 0:
                raise InvalidRequest("temperature must be a non-negative number", param="temperature")
            body["temperature"] = min(float(temperature), 1.0)
        if request.get("top_p") is not None:
            body["top_p"] = request["top_p"]
        stops = common.stop_sequences(request.get("stop"))
        if stops:
            body["stop_sequences"] = stops
        self._tools(request, body)
        user = request.get("user")
        if isinstance(user, str) and user:
            body["metadata"] = {"user_id": user}
        if stream:
            body["stream"] = True
        return body

    def _user_blocks(self, content: Any) -> list[Json]:
        if content is None:
            return []
        if isinstance(content, str):
            return [{"type": "text", "text": content}] if content else []
        if not isinstance(content, list):
            raise InvalidRequest("message content must be a string or a list of parts", param="messages")
        blocks: list[Json] = []
        for part in content:
            part = common.as_dict(part)
            kind = part.get("type")
            if kind == "text":
                text = part.get("text")
                if not isinstance(text, str):
                    raise InvalidRequest("a text part needs a text string", param="messages")
                if text:
                    blocks.append({"type": "text", "text": text})
            elif kind == "image_url":
                blocks.append(self._image(part.get("image_url")))
            elif kind == "file":
                blocks.append(self._document(common.as_dict(part.get("file"))))
            else:
                raise InvalidRequest(f"this model does not take {kind!r} content parts", param="messages")
        return blocks

    def _image(self, image_url: Any) -> Json:
        url = image_url if isinstance(image_url, str) else common.as_str(common.as_dict(image_url).get("url"))
        inline = common.parse_data_url(url)
        if inline is not None:
            mime, data = inline
            if mime not in IMAGE_TYPES:
                raise InvalidRequest(f"this model takes jpeg, png, gif or webp images, not {mime}", param="messages")
            return {"type": "image", "source": {"type": "base64", "media_type": mime, "data": data}}
        if url.startswith(("https://", "http://")):
            return {"type": "image", "source": {"type": "url", "url": url}}
        raise InvalidRequest("an image must be a data URL or an http(s) URL", param="messages")

    def _document(self, file: Json) -> Json:
        inline = common.parse_data_url(common.as_str(file.get("file_data")))
        if inline is None or inline[0] != "application/pdf":
            raise InvalidRequest("this model takes files as PDF data URLs only", param="messages")
        return {"type": "document", "source": {"type": "base64", "media_type": inline[0], "data": inline[1]}}

    def _assistant_blocks(self, message: Json) -> list[Json]:
        blocks: list[Json] = []
        content = message.get("content")
        if isinstance(content, list):  # text and refusal parts
            text = "".join(common.as_str(p.get("text") or p.get("refusal")) for p in content if isinstance(p, dict))
        else:
            text = common.content_text(content)
        if text:
            blocks.append({"type": "text", "text": text})
        calls = message.get("tool_calls")
        if calls is not None and not isinstance(calls, list):
            raise InvalidRequest("tool_calls must be a list", param="messages")
        for call in calls or []:
            call = common.as_dict(call)
            blocks.append(
                {
                    "type": "tool_use",
                    "id": tool_use_id(call.get("id")),
                    "name": common.as_str(common.as_dict(call.get("function")).get("name")),
                    "input": common.tool_arguments(call),
                }
            )
        return blocks

    def _tool_result(self, message: Json) -> Json:
        block: Json = {"type": "tool_result", "tool_use_id": tool_use_id(message.get("tool_call_id"))}
        text = common.content_text(message.get("content"))
        if text:
            block["content"] = text
        return block

    def _tools(self, request: Json, body: Json) -> None:
        functions = common.function_tools(request)
        choice = request.get("tool_choice")
        if not functions:
            return  # a tool_choice without tools means nothing to Anthropic (and is refused)
        tools = []
        for function in functions:
            tool: Json = {
                "name": function["name"],
                "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
            }
            if isinstance(function.get("description"), str):
                tool["description"] = function["description"]
            tools.append(tool)
        body["tools"] = tools
        mapped: Json | None
        if choice is None or choice == "auto":
            mapped = {"type": "auto"} if request.get("parallel_tool_calls") is False else None
        elif choice == "required":
            mapped = {"type": "any"}
        elif choice == "none":
            mapped = {"type": "none"}
        elif isinstance(choice, dict) and isinstance(common.as_dict(choice.get("function")).get("name"), str):
            mapped = {"type": "tool", "name": choice["function"]["name"]}
        else:
            raise InvalidRequest("tool_choice must be auto, none, required or a function", param="tool_choice")
        if mapped is not None:
            if request.get("parallel_tool_calls") is False and mapped["type"] != "none":
                mapped["disable_parallel_tool_use"] = True
            body["tool_choice"] = mapped

    # -- answers ---------------------------------------------------------------------------------

    def chat_response(self, target: ModelTarget, body: bytes) -> Json:
        message = common.loads_object(body, "message")
        if message.get("type") == "error":
            raise error_from_object(message.get("error"), status=200)
        content = message.get("content")
        if not isinstance(content, list):
            raise ProviderError("server", "message: the provider sent no content list", status=200)
        texts: list[str] = []
        calls: list[Json] = []
        for block in content:
            block = common.as_dict(block)
            if block.get("type") == "text":
                texts.append(common.as_str(block.get("text")))
            elif block.get("type") == "tool_use":
                calls.append(
                    {
                        "id": common.as_str(block.get("id")),
                        "type": "function",
                        "function": {
                            "name": common.as_str(block.get("name")),
                            "arguments": common.dumps(block.get("input") or {}).decode(),
                        },
                    }
                )
        text = "".join(texts)
        reply: Json = {"role": "assistant", "content": text if text or not calls else None}
        if calls:
            reply["tool_calls"] = calls
        choice = {
            "index": 0,
            "message": reply,
            "finish_reason": finish_reason(message.get("stop_reason")),
            "logprobs": None,
        }
        return common.completion(
            common.as_str(message.get("id")) or "msg-portico",
            common.as_str(message.get("model")) or target.upstream_model,
            common.now(),
            [choice],
            usage_from_anthropic(message.get("usage")),
        )

    def stream_decoder(self, target: ModelTarget) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder(target)

    # -- embeddings ------------------------------------------------------------------------------

    def embeddings_request(self, target: ModelTarget, key: ProviderKey, request: Json) -> UpstreamRequest:
        raise InvalidRequest("this model does not do embeddings", param="model")

    def embeddings_response(self, target: ModelTarget, body: bytes) -> Json:
        raise InvalidRequest("this model does not do embeddings", param="model")

    # -- errors ----------------------------------------------------------------------------------

    def error(self, status: int, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> ProviderError:
        error, message = common.error_message(body)
        kind = common.kind_for_status(status)
        if kind == "invalid_request" and common.looks_like_context_length(message):
            kind = "context_length"
        retry_after = common.parse_retry_after(headers)
        if retry_after is None and status == 429:
            retry_after = ratelimit_reset(headers)
        return ProviderError(kind, message or f"the provider answered {status}", status=status, retry_after=retry_after)


_LIMITS = (b"requests", b"tokens", b"input-tokens", b"output-tokens")


def ratelimit_reset(headers: Sequence[tuple[bytes, bytes]], now: float | None = None) -> float | None:
    """Seconds until the exhausted limit resets, from ``anthropic-ratelimit-*-reset`` (RFC 3339
    times); the latest reset when none says it is exhausted (``-remaining: 0``)."""
    current = time.time() if now is None else now
    resets: list[float] = []
    exhausted: list[float] = []
    for limit in _LIMITS:
        value = common.header(headers, b"anthropic-ratelimit-" + limit + b"-reset")
        if value is None:
            continue
        try:
            when = datetime.fromisoformat(value.decode("latin-1").strip())
        except ValueError:
            continue
        if when.tzinfo is None:
            continue
        seconds = max(when.timestamp() - current, 0.0)
        resets.append(seconds)
        if common.header(headers, b"anthropic-ratelimit-" + limit + b"-remaining") == b"0":
            exhausted.append(seconds)
    chosen = exhausted or resets
    return max(chosen) if chosen else None


class AnthropicStreamDecoder:
    """message_start, then per content block content_block_start / *_delta / _stop, then
    message_delta (stop_reason, cumulative usage) and message_stop; ping anywhere; an
    ``error`` event raises. Unknown event types are ignored (Anthropic may add some)."""

    def __init__(self, target: ModelTarget) -> None:
        self.target = target
        self._parser = SSEParser()
        self._id = "msg-portico"
        self._model = target.upstream_model
        self._created = common.now()
        self._raw_usage: Json = {}
        self._started = False
        self._done = False
        self._tool_index: dict[int, int] = {}  # content block index → tool call index

    @property
    def usage(self) -> Usage | None:
        return usage_from_anthropic(self._raw_usage) if self._raw_usage else None

    def feed(self, data: bytes) -> list[Json]:
        try:
            events = self._parser.feed(data)
        except SSEError as error:
            raise ProviderError("server", str(error)) from None
        out: list[Json] = []
        for event in events:
            out.extend(self._event(event.event, event.data))
        return out

    def close(self) -> list[Json]:
        out: list[Json] = []
        for event in self._parser.close():
            out.extend(self._event(event.event, event.data))
        if not self._done:
            raise ProviderError("server", "the provider's stream ended before message_stop")
        return out

    def _chunk(self, delta: Json, finish: str | None = None) -> Json:
        return common.chunk(self._id, self._model, self._created, delta, finish)

    def _event(self, name: str, data: str) -> list[Json]:
        if self._done:
            return []
        payload = common.loads_object(data, "stream event")
        kind = common.as_str(payload.get("type")) or name
        if kind == "error" or name == "error":
            raise error_from_object(payload.get("error"))
        if kind == "message_start":
            message = common.as_dict(payload.get("message"))
            self._id = common.as_str(message.get("id")) or self._id
            self._model = common.as_str(message.get("model")) or self._model
            self._merge_usage(message.get("usage"))
            self._started = True
            return [self._chunk({"role": "assistant", "content": ""})]
        if not self._started:
            if kind == "ping":
                return []
            raise ProviderError("server", f"the provider's stream sent {kind!r} before message_start")
        if kind == "content_block_start":
            block = common.as_dict(payload.get("content_block"))
            index = payload.get("index")
            if block.get("type") == "tool_use" and isinstance(index, int):
                call_index = len(self._tool_index)
                self._tool_index[index] = call_index
                arguments = common.dumps(block["input"]).decode() if block.get("input") else ""
                call = {
                    "index": call_index,
                    "id": common.as_str(block.get("id")),
                    "type": "function",
                    "function": {"name": common.as_str(block.get("name")), "arguments": arguments},
                }
                return [self._chunk({"tool_calls": [call]})]
            if block.get("type") == "text" and common.as_str(block.get("text")):
                return [self._chunk({"content": block["text"]})]
            return []
        if kind == "content_block_delta":
            delta = common.as_dict(payload.get("delta"))
            if delta.get("type") == "text_delta":
                return [self._chunk({"content": common.as_str(delta.get("text"))})]
            if delta.get("type") == "input_json_delta":
                block_index = payload.get("index")
                known = self._tool_index.get(block_index) if isinstance(block_index, int) else None
                if known is None:
                    raise ProviderError("server", "the provider's stream sent tool input for no tool call")
                fragment = {"index": known, "function": {"arguments": common.as_str(delta.get("partial_json"))}}
                return [self._chunk({"tool_calls": [fragment]})]
            return []  # thinking, signature and citation deltas are not canonical content
        if kind == "message_delta":
            self._merge_usage(payload.get("usage"))
            stop_reason = common.as_dict(payload.get("delta")).get("stop_reason")
            return [self._chunk({}, finish_reason(stop_reason))]
        if kind == "message_stop":
            self._done = True
        return []  # ping, content_block_stop, unknown events

    def _merge_usage(self, usage: Any) -> None:
        """message_start carries the input counts, message_delta the cumulative output (and,
        lately, cumulative input counts too): the later value of each field wins."""
        if isinstance(usage, dict):
            self._raw_usage.update({k: v for k, v in usage.items() if v is not None})
