"""The LLM response cache: exact match on the normalized canonical request, per tenant.

A key is the SHA-256 of the tenant, the route's alias and the canonical request with
everything that does not change the answer removed (``stream``, ``stream_options``,
``user``, null fields, ``n: 1``) and the rest in canonical JSON (sorted keys, no
whitespace, integral floats as integers, tool-call arguments re-encoded). The tenant is
part of every key (LiteLLM #29955 served one tenant's answers to another): there is no
shared entry, even for identical prompts.

Only deterministic requests are cacheable unless the route says otherwise
(``AiRoute.cache_nondeterministic``): ``temperature`` 0. An absent temperature is the
provider's default, 1 for every provider we speak to, so it is *not* deterministic. Asking
for several choices (``n`` > 1) is never cached.

An entry is the canonical ``chat.completion`` with its usage. A streamed request is
answered from it as a replayed stream: ``completion_to_chunks`` splits the completion into
canonical chunks (role, text in several deltas, tool calls with their arguments in pieces,
the finish reason, usage last), which the gateway feeds to the inbound format's encoder as
it would a provider's; ``chunks_to_completion`` assembles a streamed answer into the
completion to store. Each lookup and each store is one Redis round trip; each route holds
at most ``max_entries_per_route`` entries (the gateway's response-cache script: a sorted-set
index per route, updated and trimmed in the storing call); any Redis failure is a miss.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from typing import Any

import orjson
from redis.exceptions import NoScriptError, RedisError

from gateway.cache import STORE_SCRIPT
from llm.canonical import Json, Usage

log = logging.getLogger(__name__)

KEY_PREFIX = "portico:llm:cache:"
INDEX_PREFIX = "portico:llm:cache-idx:"
KEY_VERSION = "1"  # change when the normalization changes: old entries then simply miss
NOT_IN_KEY = frozenset({"stream", "stream_options", "user", "model"})  # model: the alias is keyed itself
PIECE_CHARS = 24  # characters per replayed text delta
DEFAULT_TEMPERATURE = 1.0  # OpenAI's, Anthropic's, Mistral's and Gemini's default
_MESSAGE_PARTS = ("role", "content", "refusal", "tool_calls", "function_call")


# -- keys --------------------------------------------------------------------------------------


def _canonical_numbers(value: Any) -> Any:
    """1.0 and 1 mean the same to every provider; bools stay bools."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {k: _canonical_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical_numbers(v) for v in value]
    return value


def _canonical_arguments(messages: Any) -> Any:
    """Earlier tool calls' arguments are JSON text: ``{"a": 1}`` and ``{"a":1}`` are one call."""
    if not isinstance(messages, list):
        return messages
    out = []
    for message in messages:
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        if isinstance(calls, list):
            message = dict(message)
            message["tool_calls"] = [_canonical_call(call) for call in calls]
        out.append(message)
    return out


def _canonical_call(call: Any) -> Any:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
        return call
    try:
        arguments = orjson.dumps(orjson.loads(function["arguments"]), option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONDecodeError:
        return call
    return {**call, "function": {**function, "arguments": arguments}}


def normalize_request(request: Json) -> Json:
    """The part of a canonical request that decides the answer, in one spelling."""
    normal = {k: v for k, v in request.items() if k not in NOT_IN_KEY and v is not None}
    if normal.get("n") == 1:
        del normal["n"]
    if "messages" in normal:
        normal["messages"] = _canonical_arguments(normal["messages"])
    normalized: Json = _canonical_numbers(normal)
    return normalized


def is_cacheable(request: Json, *, cache_nondeterministic: bool = False) -> bool:
    n = request.get("n")
    if n is not None and (type(n) is not int or n > 1):
        return False
    temperature = request.get("temperature")
    if temperature is None:
        temperature = DEFAULT_TEMPERATURE
    if type(temperature) not in (int, float):
        return False  # a bool or a string: the provider will refuse it; nothing to cache
    return temperature == 0 or cache_nondeterministic


def cache_key(
    tenant_id: int,
    route_alias: str,
    request: Json,
    *,
    cache_nondeterministic: bool = False,
    namespace: str = "",
) -> str | None:
    """The request's entry key, scoped to the tenant; None when it must not be cached.
    ``cache_nondeterministic``: the route's ``AiRoute.cache_nondeterministic``.
    ``namespace``: the gateway's own (never the client's) name for a kind of caller whose
    entries must not be shared with direct calls of the same request (a prompt API's
    checked JSON answers); "" is the direct calls' and leaves their keys unchanged."""
    if not is_cacheable(request, cache_nondeterministic=cache_nondeterministic):
        return None
    material = {"v": KEY_VERSION, "tenant": tenant_id, "route": route_alias, "request": normalize_request(request)}
    if namespace:
        material["ns"] = namespace
    try:
        encoded = orjson.dumps(material, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # not JSON (a non-string key): not something we can vouch for
        return None
    digest = hashlib.sha256(encoded).hexdigest()
    return f"{KEY_PREFIX}{_route_tag(route_alias)}:{tenant_id}:{digest}"


def _route_tag(route_alias: str) -> str:
    """Aliases may hold any character: keys and indexes name a route by a digest of it."""
    return hashlib.sha256(route_alias.encode()).hexdigest()[:16]


def index_key_for(key: str) -> str:
    """The index of the route an entry key belongs to."""
    return INDEX_PREFIX + key[len(KEY_PREFIX) :].split(":", 1)[0]


# -- entries -------------------------------------------------------------------------------------


def _storable(completion: Any) -> bool:
    """A whole answer: a completion whose every choice says why it ended (a cut stream's
    assembly has no finish reason and must never be served as an answer)."""
    if not isinstance(completion, dict) or completion.get("object") != "chat.completion":
        return False
    choices = completion.get("choices")
    return (
        isinstance(choices, list)
        and bool(choices)
        and all(isinstance(c, dict) and isinstance(c.get("message"), dict) and c.get("finish_reason") for c in choices)
    )


class LlmCache:
    """Lookup and store over FastRedis or redis-py's asyncio client (``get``, ``evalsha``,
    ``script_load``)."""

    def __init__(self, redis: Any, *, max_entry_bytes: int = 1 << 20, max_entries_per_route: int = 10_000) -> None:
        self._redis = redis
        self.max_entry_bytes = max_entry_bytes
        self.max_entries_per_route = max_entries_per_route
        self._store_sha: str | None = None

    async def lookup(self, key: str) -> Json | None:
        """The stored completion, or None (absent, unreadable, or Redis away)."""
        try:
            raw = await self._redis.get(key)
        except (RedisError, OSError):
            return None
        if raw is None:
            return None
        try:
            completion = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        return completion if _storable(completion) else None

    async def store(self, key: str, completion: Json, ttl: int) -> bool:
        """Keep ``completion`` for ``ttl`` seconds (the route's TTL): one script call that
        stores, indexes and evicts past the route's cap. False when not stored."""
        if ttl <= 0 or not _storable(completion):
            return False
        try:
            payload = orjson.dumps(completion)
        except TypeError:
            return False
        if len(payload) > self.max_entry_bytes:
            return False
        args: list[Any] = [key, index_key_for(key), payload, int(ttl), repr(time.time()), self.max_entries_per_route]
        try:
            if self._store_sha is None:
                self._store_sha = _text(await self._redis.script_load(STORE_SCRIPT))
            try:
                await self._redis.evalsha(self._store_sha, 2, *args)
            except NoScriptError:  # Redis restarted and lost its script cache
                self._store_sha = _text(await self._redis.script_load(STORE_SCRIPT))
                await self._redis.evalsha(self._store_sha, 2, *args)
        except (RedisError, OSError) as error:
            log.debug("LLM cache store skipped: %s", error)
            return False
        return True


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- replaying a completion as a stream, and assembling a stream --------------------------------


def _pieces(text: str) -> list[str]:
    return [text[i : i + PIECE_CHARS] for i in range(0, len(text), PIECE_CHARS)]


def completion_to_chunks(completion: Json) -> list[Json]:
    """The canonical chunks a provider would have streamed for ``completion``: per choice
    the role (with every message field that is not streamed in pieces), the text in
    several deltas, the refusal, each tool call (id, type, name, then its arguments in
    pieces), the finish reason; then one chunk with no choices and the usage.
    ``chunks_to_completion(completion_to_chunks(c), None) == c``."""
    base = {k: v for k, v in completion.items() if k not in ("object", "choices", "usage")}
    base["object"] = "chat.completion.chunk"
    chunks: list[Json] = []

    def emit(choice: Json) -> None:
        chunks.append({**base, "choices": [choice]})

    for position, choice in enumerate(completion.get("choices") or []):
        index = choice.get("index", position)
        message: Json = choice.get("message") or {}
        content = message.get("content")
        refusal = message.get("refusal")
        head: Json = {k: v for k, v in message.items() if k not in _MESSAGE_PARTS}
        head["role"] = message.get("role", "assistant")
        head["content"] = "" if isinstance(content, str) else content
        if "refusal" in message:
            head["refusal"] = "" if isinstance(refusal, str) else refusal
        first: Json = {"index": index, "delta": head, "finish_reason": None}
        if "logprobs" in choice:
            first["logprobs"] = choice["logprobs"]
        emit(first)
        for field, text in (("content", content), ("refusal", refusal)):
            if isinstance(text, str):
                for piece in _pieces(text):
                    emit({"index": index, "delta": {field: piece}, "finish_reason": None})
        function_call = message.get("function_call")  # the deprecated single call
        if isinstance(function_call, dict):
            for delta in _call_deltas(function_call):
                emit({"index": index, "delta": {"function_call": delta}, "finish_reason": None})
        for call_index, call in enumerate(message.get("tool_calls") or []):
            for delta in _call_deltas(call):
                emit({"index": index, "delta": {"tool_calls": [{"index": call_index, **delta}]}, "finish_reason": None})
        last: Json = {k: v for k, v in choice.items() if k not in ("index", "message", "finish_reason", "logprobs")}
        emit({**last, "index": index, "delta": {}, "finish_reason": choice.get("finish_reason")})
    if completion.get("usage") is not None:
        chunks.append({**base, "choices": [], "usage": completion["usage"]})
    return chunks


def _call_deltas(call: Json) -> list[Json]:
    """A tool call (or a deprecated function call) as its first delta and argument pieces."""
    nested = "function" in call
    function = call.get("function") if nested else call
    if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
        return [dict(call)]
    arguments: str = function["arguments"]
    head_function = {**function, "arguments": ""}
    head = {**call, "function": head_function} if nested else head_function
    pieces = [{"function": {"arguments": p}} if nested else {"arguments": p} for p in _pieces(arguments)]
    return [head, *pieces]


def _merge_call(slot: Json, delta: Json) -> None:
    for key, value in delta.items():
        if key == "index":
            continue
        if key == "function" and isinstance(value, dict):
            _merge_call(slot.setdefault("function", {}), value)
        elif key == "arguments" and isinstance(value, str) and isinstance(slot.get(key), str):
            slot[key] += value
        else:
            slot[key] = value


def _merge_text(message: Json, key: str, value: Any) -> None:
    if isinstance(value, str) and isinstance(message.get(key), str):
        message[key] += value
    elif value is not None or key not in message:
        message[key] = value


def _merge_logprobs(current: Any, value: Any) -> Any:
    if not isinstance(value, dict):
        return current
    if not isinstance(current, dict):
        return {k: list(v) if isinstance(v, list) else v for k, v in value.items()}
    for key, items in value.items():
        if isinstance(items, list) and isinstance(current.get(key), list):
            current[key].extend(items)
        elif items is not None:
            current[key] = items
    return current


def chunks_to_completion(chunks: Iterable[Json], usage: Usage | Json | None = None) -> Json:
    """The ``chat.completion`` a stream of canonical chunks amounts to (to store a streamed
    answer). ``usage``: the stream's usage when the gateway has it apart (a decoder's
    ``usage``); else the last usage a chunk carried."""
    top: Json | None = None
    choices: dict[int, Json] = {}
    messages: dict[int, Json] = {}
    calls: dict[int, dict[int, Json]] = {}
    function_calls: dict[int, Json] = {}
    seen_usage: Any = None
    for chunk in chunks:
        if not isinstance(chunk, dict):
            continue
        if top is None:
            top = {k: v for k, v in chunk.items() if k not in ("object", "choices", "usage")}
        if chunk.get("usage") is not None:
            seen_usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            if not isinstance(index, int):
                continue
            assembled = choices.setdefault(index, {"index": index, "finish_reason": None})
            message = messages.setdefault(index, {})
            for key, value in choice.items():
                if key == "delta" and isinstance(value, dict):
                    for field, part in value.items():
                        if field in ("content", "refusal"):
                            _merge_text(message, field, part)
                        elif field == "tool_calls" and isinstance(part, list):
                            slots = calls.setdefault(index, {})
                            for call in part:
                                if isinstance(call, dict) and isinstance(call.get("index", 0), int):
                                    _merge_call(slots.setdefault(call.get("index", 0), {}), call)
                        elif field == "function_call" and isinstance(part, dict):
                            _merge_call(function_calls.setdefault(index, {}), part)
                        elif part is not None or field not in message:
                            message[field] = part
                elif key == "finish_reason":
                    if value is not None:
                        assembled["finish_reason"] = value
                elif key == "logprobs":
                    assembled["logprobs"] = _merge_logprobs(assembled.get("logprobs"), value)
                elif key != "index":
                    assembled[key] = value
    completion: Json = {**(top or {}), "object": "chat.completion"}
    out = []
    for index in sorted(choices):
        message = messages[index]
        message.setdefault("role", "assistant")
        message.setdefault("content", None)
        if index in calls:
            message["tool_calls"] = [calls[index][i] for i in sorted(calls[index])]
        if index in function_calls:
            message["function_call"] = function_calls[index]
        out.append({**choices[index], "message": message})
    completion["choices"] = out
    if isinstance(usage, Usage):
        completion["usage"] = usage.to_openai()
    elif usage is not None:
        completion["usage"] = usage
    elif seen_usage is not None:
        completion["usage"] = seen_usage
    return completion
