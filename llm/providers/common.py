"""What every provider adapter needs: JSON in and out without letting a broken body raise
anything but ProviderError, the status → error-kind table, retry-after parsing, data URLs,
and the canonical shapes (answers, chunks, tool calls) built the same way everywhere."""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
import time
from collections.abc import Iterable, Sequence
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from llm.canonical import InvalidRequest, Json, ProviderError, Usage

JSON_HEADERS: tuple[tuple[bytes, bytes], ...] = ((b"content-type", b"application/json"),)
SSE_ACCEPT: tuple[bytes, bytes] = (b"accept", b"text/event-stream")

# -- JSON ----------------------------------------------------------------------------------------


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def loads_object(body: bytes | str, what: str, status: int = 200) -> Json:
    """A JSON object from a provider, or ProviderError("server"): a provider that sends
    something else is broken, and a broken provider is a server failure (fall back)."""
    try:
        value = orjson.loads(body)
    except (orjson.JSONDecodeError, TypeError, ValueError):
        raise ProviderError("server", f"{what}: the provider sent a body that is not JSON", status=status) from None
    if not isinstance(value, dict):
        raise ProviderError("server", f"{what}: the provider sent JSON that is not an object", status=status)
    return value


def as_dict(value: Any) -> Json:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_int(value: Any) -> int:
    """A token count from a provider: a non-negative int whatever was sent (a broken count must
    not break the call log)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        return max(value, 0)
    if isinstance(value, float) and math.isfinite(value):
        return max(int(value), 0)
    return 0


def as_str(value: Any) -> str:
    return value if isinstance(value, str) else ""


# -- errors --------------------------------------------------------------------------------------


def kind_for_status(status: int) -> str:
    if status in (400, 413, 422):
        return "invalid_request"
    if status == 401:
        return "authentication"
    if status in (402, 403):  # 402: the account cannot pay (Anthropic billing_error): that key is unusable
        return "permission"
    if status == 404:
        return "not_found"
    if status == 408:
        return "timeout"
    if status == 429:
        return "rate_limited"
    if status in (503, 529):
        return "overloaded"
    if status == 504:
        return "timeout"
    if 400 <= status < 500:
        return "invalid_request"
    return "server"  # 500, 502, other 5xx, and statuses that mean nothing as an error


_CONTEXT_LENGTH_PATTERNS = re.compile(
    r"context[ _-]length|context window|maximum context|prompt is too long|too many (input )?tokens"
    r"|input token count .*exceeds|exceeds the maximum number of tokens|token limit|reduce the length"
    r"|input is too long|prompt too long",
    re.IGNORECASE,
)


def looks_like_context_length(message: str) -> bool:
    return bool(_CONTEXT_LENGTH_PATTERNS.search(message))


def header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def parse_retry_after(headers: Sequence[tuple[bytes, bytes]], now: float | None = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` (OpenAI), ``retry-after`` (seconds or an
    HTTP date), or None. Negative or absurd values are ignored."""
    value = header(headers, b"retry-after-ms")
    if value is not None:
        seconds = _number(value)
        if seconds is not None:
            return seconds / 1000.0
    value = header(headers, b"retry-after")
    if value is not None:
        seconds = _number(value)
        if seconds is not None:
            return seconds
        try:
            when = parsedate_to_datetime(value.decode("latin-1"))
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        delta = when.timestamp() - (time.time() if now is None else now)
        return max(delta, 0.0)
    return None


def _number(value: bytes) -> float | None:
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0 or seconds > 7 * 86400:
        return None
    return seconds


def error_message(body: bytes) -> tuple[Json, str]:
    """(the error object, its message) from an OpenAI/Anthropic/Gemini-shaped error body; an
    unparseable body gives ({}, the body's start as text)."""
    try:
        value = orjson.loads(body)
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return {}, body[:500].decode("utf-8", "replace").strip()
    if not isinstance(value, dict):
        return {}, body[:500].decode("utf-8", "replace").strip()
    error = value.get("error")
    if isinstance(error, dict):
        return error, as_str(error.get("message")) or as_str(value.get("message"))
    if isinstance(error, str):  # some OpenAI-compatible servers: {"error": "text"}
        return {"message": error}, error
    return value, as_str(value.get("message")) or as_str(value.get("detail"))


# -- requests ------------------------------------------------------------------------------------


def join_url(base: str, path: str) -> str:
    return base.rstrip("/") + path


_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^;,]*)*?);base64,(?P<data>.*)", re.DOTALL)


def parse_data_url(url: str) -> tuple[str, str] | None:
    """(mime type, base64 data) of a ``data:...;base64,`` URL, or None when it is not one. The
    base64 is checked, so a broken image is the client's 400, not the provider's."""
    if not url.startswith("data:"):
        return None
    match = _DATA_URL.fullmatch(url)
    if match is None:
        raise InvalidRequest("an image data URL must look like data:<type>;base64,<data>", param="messages")
    data = match.group("data")
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("an image data URL carries invalid base64", param="messages") from None
    return (match.group("mime") or "application/octet-stream").lower(), data


def content_text(content: Any, param: str = "messages") -> str:
    """The text of a message's content: a string, or a list of parts of which only text parts
    are allowed here (system and tool messages)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise InvalidRequest("only text parts are allowed in this message's content", param=param)
            texts.append(part["text"])
        return "".join(texts)
    raise InvalidRequest("message content must be a string or a list of parts", param=param)


def tool_arguments(call: Json, param: str = "messages") -> Json:
    """An assistant tool call's arguments as an object (Anthropic ``input``, Gemini ``args``)."""
    function = as_dict(call.get("function"))
    raw = function.get("arguments")
    if raw is None or raw == "":
        return {}
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str):
        raise InvalidRequest("tool call arguments must be a JSON string", param=param)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequest("tool call arguments must be a JSON object", param=param) from None
    if not isinstance(value, dict):
        raise InvalidRequest("tool call arguments must be a JSON object", param=param)
    return value


def stop_sequences(stop: Any) -> list[str] | None:
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(item, str) for item in stop):
        return list(stop)
    raise InvalidRequest("stop must be a string or a list of strings", param="stop")


def max_output_tokens(request: Json) -> int | None:
    value = request.get("max_completion_tokens")
    if value is None:
        value = request.get("max_tokens")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest("max_tokens must be a positive integer", param="max_tokens")
    return value


def messages_of(request: Json) -> list[Json]:
    messages = request.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise InvalidRequest("messages must be a list of message objects", param="messages")
    return messages


def function_tools(request: Json) -> list[Json]:
    """The request's function definitions ({"name", "description"?, "parameters"?})."""
    tools = request.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise InvalidRequest("tools must be a list", param="tools")
    functions = []
    for tool in tools:
        function = as_dict(tool).get("function") if as_dict(tool).get("type", "function") == "function" else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidRequest("each tool must be {type: function, function: {name, ...}}", param="tools")
        functions.append(function)
    return functions


# -- answers -------------------------------------------------------------------------------------


def stable_call_id(*parts: str) -> str:
    """A tool-call id for providers that give none (Gemini): the same call in the same answer
    gets the same id, so a replayed or cached answer keeps its ids."""
    return "call_" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


def completion(id: str, model: str, created: int, choices: list[Json], usage: Usage | None, **extra: Any) -> Json:
    answer: Json = {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if usage is not None:
        answer["usage"] = usage.to_openai()
    answer.update(extra)
    return answer


def chunk(id: str, model: str, created: int, delta: Json, finish_reason: str | None = None, index: int = 0) -> Json:
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }


def now() -> int:
    return int(time.time())


def usage_from_openai(usage: Any) -> Usage | None:
    """OpenAI's usage already has the canonical meaning (prompt_tokens include cached ones)."""
    if not isinstance(usage, dict):
        return None
    details = as_dict(usage.get("prompt_tokens_details"))
    return Usage(
        prompt_tokens=as_int(usage.get("prompt_tokens")),
        completion_tokens=as_int(usage.get("completion_tokens")),
        cached_tokens=as_int(details.get("cached_tokens")),
    )


# -- embeddings ----------------------------------------------------------------------------------


def embedding_inputs(request: Json) -> list[str]:
    value = request.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return list(value)
    raise InvalidRequest("input must be a string or a non-empty list of strings for this model", param="input")


def embeddings_answer(model: str, vectors: Iterable[Any], usage: Usage | None) -> Json:
    answer: Json = {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "model": model,
    }
    if usage is not None:
        answer["usage"] = {"prompt_tokens": usage.prompt_tokens, "total_tokens": usage.prompt_tokens}
    return answer
