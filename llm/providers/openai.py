"""OpenAI Chat Completions and Embeddings (``/v1/chat/completions``, ``/v1/embeddings``).

The canonical format IS this wire format, so a request goes out nearly as the client sent
it: the upstream model name, ``stream``, and ``stream_options.include_usage: true`` on
streams (usage then arrives in a last chunk with empty ``choices``, before ``[DONE]``; the
gateway strips it again if the client did not ask). ``OpenAIAdapter`` is also the base of the
OpenAI-shaped providers (Azure OpenAI, Mistral, OpenAI-compatible servers), which override
the URL, the credential header, the body and the finish-reason table.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from llm.canonical import Json, ModelTarget, ProviderError, ProviderKey, UpstreamRequest, Usage
from llm.providers import common
from llm.sse import SSEError, SSEParser

_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})

# Error ``type``/``code`` values of an in-band (or body) error → kind.
_ERROR_TYPE_KINDS = {
    "invalid_request_error": "invalid_request",
    "context_length_exceeded": "context_length",
    "string_above_max_length": "context_length",
    "authentication_error": "authentication",
    "invalid_api_key": "authentication",
    "permission_error": "permission",
    "not_found_error": "not_found",
    "model_not_found": "not_found",
    "rate_limit_exceeded": "rate_limited",
    "rate_limit_error": "rate_limited",
    "insufficient_quota": "rate_limited",
    "tokens": "rate_limited",
    "requests": "rate_limited",
    "server_error": "server",
    "api_error": "server",
    "internal_error": "server",
    "overloaded_error": "overloaded",
    "service_unavailable": "overloaded",
    "timeout": "timeout",
}

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: bytes) -> float | None:
    """OpenAI's ``x-ratelimit-reset-*`` durations: ``1s``, ``6m0s``, ``20ms``, ``1h2m3.5s``."""
    text = value.decode("latin-1").strip()
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def secret_header(secret: str) -> bytes:
    """A credential as a header value; one that could split the head (CR, LF, NUL) or is not
    ASCII is a broken key, refused like one the provider rejected."""
    try:
        value = secret.encode("ascii")
    except UnicodeEncodeError:
        raise ProviderError("authentication", "the provider key is not ASCII") from None
    if not value or b"\r" in value or b"\n" in value or b"\x00" in value:
        raise ProviderError("authentication", "the provider key is empty or holds control characters")
    return value


class OpenAIAdapter:
    kind = "openai"
    default_base_url = "https://api.openai.com/v1"
    require_done = True  # a stream must end with data: [DONE]
    ask_stream_usage = True  # send stream_options.include_usage on streams

    # -- URLs and credentials (overridden by Azure) ---------------------------------------------

    def base_url(self, target: ModelTarget) -> str:
        return target.base_url or self.default_base_url

    def chat_url(self, target: ModelTarget) -> str:
        return common.join_url(self.base_url(target), "/chat/completions")

    def embeddings_url(self, target: ModelTarget) -> str:
        return common.join_url(self.base_url(target), "/embeddings")

    def auth_headers(self, key: ProviderKey) -> tuple[tuple[bytes, bytes], ...]:
        return ((b"authorization", b"Bearer " + secret_header(key.secret)),)

    # -- chat ------------------------------------------------------------------------------------

    def chat_body(self, target: ModelTarget, request: Json, stream: bool) -> Json:
        body = dict(request)
        body["model"] = target.upstream_model
        if stream:
            body["stream"] = True
            if self.ask_stream_usage:
                options = common.as_dict(body.get("stream_options"))
                body["stream_options"] = {**options, "include_usage": True}
            else:
                body.pop("stream_options", None)
        else:
            body.pop("stream", None)
            body.pop("stream_options", None)  # OpenAI refuses stream_options without stream
        messages = body.get("messages")
        if isinstance(messages, list) and any(isinstance(m, dict) and m.get("tool_calls") for m in messages):
            body["messages"] = [self.outgoing_message(m) if isinstance(m, dict) else m for m in messages]
        return body

    def outgoing_message(self, message: Json) -> Json:
        """Drop what only another provider understands from replayed tool calls (Gemini's
        thought signatures travel in ``extra_content``, as in Google's own OpenAI layer)."""
        calls = message.get("tool_calls")
        if not isinstance(calls, list) or not any(isinstance(c, dict) and "extra_content" in c for c in calls):
            return message
        stripped = [{k: v for k, v in c.items() if k != "extra_content"} if isinstance(c, dict) else c for c in calls]
        return {**message, "tool_calls": stripped}

    def chat_request(self, target: ModelTarget, key: ProviderKey, request: Json, stream: bool) -> UpstreamRequest:
        body = self.chat_body(target, request, stream)
        headers = common.JSON_HEADERS + self.auth_headers(key)
        return UpstreamRequest(b"POST", self.chat_url(target), headers, common.dumps(body))

    def finish_reason(self, reason: Any) -> str | None:
        """The provider's finish reason in canonical terms; None while a stream goes on."""
        if reason is None:
            return None
        if reason in _FINISH_REASONS:
            return str(reason)
        return "stop"

    def chat_response(self, target: ModelTarget, body: bytes) -> Json:
        answer = common.loads_object(body, "chat completion")
        if "error" in answer and not answer.get("choices"):
            raise self.stream_error(answer["error"])
        raw_choices = answer.get("choices")
        if not isinstance(raw_choices, list):
            raise ProviderError("server", "chat completion: the provider sent no choices", status=200)
        choices = []
        for position, raw in enumerate(raw_choices):
            choice = common.as_dict(raw)
            index = choice.get("index")
            choices.append(
                {
                    "index": index if isinstance(index, int) and not isinstance(index, bool) else position,
                    "message": self.answer_message(common.as_dict(choice.get("message"))),
                    "finish_reason": self.finish_reason(choice.get("finish_reason")) or "stop",
                    "logprobs": choice.get("logprobs"),
                }
            )
        extra = {}
        if isinstance(answer.get("system_fingerprint"), str):
            extra["system_fingerprint"] = answer["system_fingerprint"]
        created = answer.get("created")
        return common.completion(
            common.as_str(answer.get("id")) or "chatcmpl-portico",
            common.as_str(answer.get("model")) or target.upstream_model,
            created if isinstance(created, int) and not isinstance(created, bool) else common.now(),
            choices,
            self.usage(answer.get("usage")),
            **extra,
        )

    def usage(self, usage: Any) -> Usage | None:
        return common.usage_from_openai(usage)

    def answer_message(self, message: Json) -> Json:
        out: Json = {"role": "assistant", "content": self.text(message.get("content"))}
        calls = message.get("tool_calls")
        if isinstance(calls, list) and calls:
            out["tool_calls"] = [self.answer_tool_call(common.as_dict(c), i) for i, c in enumerate(calls)]
        for name in ("refusal", "annotations", "audio", "function_call"):
            if message.get(name) is not None:
                out[name] = message[name]
        return out

    def answer_tool_call(self, call: Json, position: int) -> Json:
        function = common.as_dict(call.get("function"))
        arguments = function.get("arguments")
        return {
            "id": common.as_str(call.get("id")) or f"call_{position}",
            "type": "function",
            "function": {
                "name": common.as_str(function.get("name")),
                "arguments": arguments if isinstance(arguments, str) else common.dumps(arguments or {}).decode(),
            },
        }

    def text(self, content: Any) -> str | None:
        """Message or delta content as text (Mistral may send a list of chunks; only text
        chunks are content, its ``thinking`` chunks are not)."""
        if content is None or isinstance(content, str):
            return content
        if isinstance(content, list):
            return "".join(
                common.as_str(part.get("text"))
                for part in content
                if isinstance(part, dict) and part.get("type", "text") == "text"
            )
        return None

    def stream_decoder(self, target: ModelTarget) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder(self, target)

    # -- embeddings ------------------------------------------------------------------------------

    def embeddings_body(self, target: ModelTarget, request: Json) -> Json:
        return {**request, "model": target.upstream_model}

    def embeddings_request(self, target: ModelTarget, key: ProviderKey, request: Json) -> UpstreamRequest:
        body = self.embeddings_body(target, request)
        headers = common.JSON_HEADERS + self.auth_headers(key)
        return UpstreamRequest(b"POST", self.embeddings_url(target), headers, common.dumps(body))

    def embeddings_response(self, target: ModelTarget, body: bytes) -> Json:
        """The provider's list, vectors untouched: floats, or base64 strings when the client
        asked ``encoding_format: base64`` (passed through)."""
        answer = common.loads_object(body, "embeddings")
        data = answer.get("data")
        if not isinstance(data, list):
            raise ProviderError("server", "embeddings: the provider sent no data list", status=200)
        vectors = [common.as_dict(item).get("embedding") for item in data]
        if any(not isinstance(v, (list, str)) for v in vectors):
            raise ProviderError("server", "embeddings: an item has no embedding", status=200)
        usage = common.as_dict(answer.get("usage"))
        reported = Usage(prompt_tokens=common.as_int(usage.get("prompt_tokens"))) if usage else None
        return common.embeddings_answer(common.as_str(answer.get("model")) or target.upstream_model, vectors, reported)

    # -- errors ----------------------------------------------------------------------------------

    def error(self, status: int, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> ProviderError:
        error, message = common.error_message(body)
        kind = common.kind_for_status(status)
        if kind == "invalid_request":
            code = common.as_str(error.get("code"))
            if code in ("context_length_exceeded", "string_above_max_length") or common.looks_like_context_length(
                message
            ):
                kind = "context_length"
        retry_after = common.parse_retry_after(headers)
        if retry_after is None and status == 429:
            retry_after = self.ratelimit_reset(headers)
        return ProviderError(kind, message or f"the provider answered {status}", status=status, retry_after=retry_after)

    def ratelimit_reset(self, headers: Sequence[tuple[bytes, bytes]]) -> float | None:
        """OpenAI's ``x-ratelimit-reset-{requests,tokens}``: the reset of the exhausted limit
        (remaining 0), else the later of the two."""
        resets: list[float] = []
        exhausted: list[float] = []
        for limit in (b"requests", b"tokens"):
            value = common.header(headers, b"x-ratelimit-reset-" + limit)
            seconds = parse_duration(value) if value is not None else None
            if seconds is None:
                continue
            resets.append(seconds)
            if common.header(headers, b"x-ratelimit-remaining-" + limit) == b"0":
                exhausted.append(seconds)
        chosen = exhausted or resets
        return max(chosen) if chosen else None

    def stream_error(self, error: Any) -> ProviderError:
        """An error sent in place of an answer or inside a stream: ``{"error": {...}}``."""
        error_obj = error if isinstance(error, dict) else {"message": common.as_str(error)}
        message = common.as_str(error_obj.get("message")) or "the provider reported an error"
        kind = ""
        for field in ("code", "type"):
            value = error_obj.get(field)
            if isinstance(value, str) and value in _ERROR_TYPE_KINDS:
                kind = _ERROR_TYPE_KINDS[value]
                break
            if isinstance(value, int) and not isinstance(value, bool) and value >= 400:
                kind = common.kind_for_status(value)
                break
        if not kind:
            kind = "server"
        if kind == "invalid_request" and common.looks_like_context_length(message):
            kind = "context_length"
        status = error_obj.get("status") if isinstance(error_obj.get("status"), int) else 0
        return ProviderError(kind, message, status=status if isinstance(status, int) else 0)


class OpenAIStreamDecoder:
    """``data: {chat.completion.chunk}`` events until ``data: [DONE]``. Usage (a last chunk
    with empty ``choices``) is kept in ``usage``, not passed on: the inbound encoder emits it
    at the end when the client asked. Chunks with neither choices nor usage (Azure's prompt
    filter results) mean nothing to a client and are dropped."""

    def __init__(self, adapter: OpenAIAdapter, target: ModelTarget) -> None:
        self.adapter = adapter
        self.target = target
        self._parser = SSEParser()
        self._usage: Usage | None = None
        self._done = False
        self._finished = False  # a choice carried a finish_reason
        self._fallback_id = "chatcmpl-portico"
        self._created = 0
        self._tool_indexes: dict[tuple[int, str], int] = {}  # (choice, call id) → index
        self._provider_indexes: dict[tuple[int, int], int] = {}  # (choice, provider's index) → index
        self._last_tool_index: dict[int, int] = {}
        self._named: set[tuple[int, int]] = set()

    @property
    def usage(self) -> Usage | None:
        return self._usage

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
        if not self._done and (self.adapter.require_done or not self._finished):
            raise ProviderError("server", "the provider's stream ended before its end marker")
        return out

    def _event(self, name: str, data: str) -> list[Json]:
        if self._done:
            return []  # nothing after [DONE] counts
        if data.strip() == "[DONE]":
            self._done = True
            return []
        payload = common.loads_object(data, "stream event")
        if "error" in payload or name == "error":
            raise self.adapter.stream_error(payload.get("error", payload))
        if "usage" in payload and payload["usage"] is not None:
            self._usage = self.adapter.usage(payload["usage"])
        raw_choices = payload.get("choices")
        if not isinstance(raw_choices, list) or not raw_choices:
            return []
        if not self._created:
            created = payload.get("created")
            self._created = created if isinstance(created, int) and not isinstance(created, bool) else common.now()
        choices = []
        for position, raw in enumerate(raw_choices):
            choice = common.as_dict(raw)
            index = choice.get("index")
            index = index if isinstance(index, int) and not isinstance(index, bool) else position
            raw_reason = choice.get("finish_reason")
            if raw_reason == "error":  # Mistral: the generation failed part-way
                raise ProviderError("server", "the provider ended the generation with an error")
            reason = self.adapter.finish_reason(raw_reason)
            if reason is not None:
                self._finished = True
            choices.append(
                {
                    "index": index,
                    "delta": self._delta(index, common.as_dict(choice.get("delta"))),
                    "finish_reason": reason,
                    "logprobs": choice.get("logprobs"),
                }
            )
        return [
            {
                "id": common.as_str(payload.get("id")) or self._fallback_id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": common.as_str(payload.get("model")) or self.target.upstream_model,
                "choices": choices,
            }
        ]

    def _delta(self, choice: int, delta: Json) -> Json:
        out: Json = {}
        if isinstance(delta.get("role"), str):
            out["role"] = "assistant"
        if "content" in delta:
            out["content"] = self.adapter.text(delta["content"])
        if delta.get("refusal") is not None:
            out["refusal"] = delta["refusal"]
        calls = delta.get("tool_calls")
        if isinstance(calls, list) and calls:
            out["tool_calls"] = [self._tool_call_delta(choice, common.as_dict(c)) for c in calls]
        return out

    def _tool_call_delta(self, choice: int, call: Json) -> Json:
        """OpenAI numbers calls with ``index`` and sends id and name once, then argument
        fragments with the index only. Some OpenAI-shaped providers send each call whole with
        ``index`` 0 for all (Mistral) or repeat id and name in every fragment: a new id means a
        new call, and a call's id and name are passed on once."""
        call_id = common.as_str(call.get("id"))
        raw = call.get("index")
        raw_index = raw if isinstance(raw, int) and not isinstance(raw, bool) else None
        announced = False
        if call_id:
            key = (choice, call_id)
            if key in self._tool_indexes:
                index = self._tool_indexes[key]
            else:
                announced = True
                used = {i for (c, _), i in self._tool_indexes.items() if c == choice}
                wanted = raw_index if raw_index is not None else len(used)
                index = wanted if wanted not in used else max(used) + 1
                self._tool_indexes[key] = index
                if raw_index is not None:
                    self._provider_indexes[(choice, raw_index)] = index
        elif raw_index is not None:
            index = self._provider_indexes.get((choice, raw_index), raw_index)
        else:
            index = self._last_tool_index.get(choice, 0)
        self._last_tool_index[choice] = index
        out: Json = {"index": index}
        function = common.as_dict(call.get("function"))
        fragment: Json = {}
        if announced:
            out["id"] = call_id
            out["type"] = "function"
        name = function.get("name")
        if isinstance(name, str) and name and (choice, index) not in self._named:
            fragment["name"] = name
            self._named.add((choice, index))
        arguments = function.get("arguments")
        if arguments is not None:
            fragment["arguments"] = arguments if isinstance(arguments, str) else common.dumps(arguments).decode()
        out["function"] = fragment
        return out
