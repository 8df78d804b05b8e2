"""Mistral La Plateforme (``/v1/chat/completions``, ``/v1/embeddings``): OpenAI-shaped with
differences that matter.

- The API refuses unknown fields (422), so only its documented request fields are sent:
  ``seed`` becomes ``random_seed``, ``max_completion_tokens`` becomes ``max_tokens``, and
  ``stream_options``/``user``/``logprobs``/... are dropped (Mistral reports usage in its
  last stream chunk unasked).
- Tool-call ids must be exactly 9 characters of ``[a-zA-Z0-9]``: ids from other providers
  (``call_...``, ``toolu_...``) are mapped to such ids, the same way in the assistant's
  ``tool_calls`` and in the tool results, so the pairs still match.
- Finish reasons: ``model_length`` is ``length``; ``error`` (the generation failed) raises
  ProviderError("server") instead of passing for an answer.
- Content may come as a list of chunks (text and ``thinking``): only text is content.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from llm.canonical import Json, ModelTarget, ProviderError
from llm.providers import common
from llm.providers.openai import OpenAIAdapter

_CHAT_FIELDS = frozenset(
    {
        "model", "messages", "temperature", "top_p", "max_tokens", "stream", "stop", "random_seed",
        "metadata", "response_format", "tools", "tool_choice", "presence_penalty", "frequency_penalty",
        "n", "prediction", "parallel_tool_calls", "reasoning_effort", "prompt_mode", "guardrails",
        "prompt_cache_key", "safe_prompt",
    }
)  # fmt: skip
_EMBEDDING_FIELDS = frozenset({"model", "input", "metadata", "output_dimension", "output_dtype", "encoding_format"})
_MISTRAL_ID = re.compile(r"[a-zA-Z0-9]{9}")
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_FINISH = {"stop": "stop", "length": "length", "model_length": "length", "tool_calls": "tool_calls"}


def mistral_tool_id(call_id: str) -> str:
    """A foreign tool-call id as Mistral accepts it: unchanged when it already is one, else 9
    base-62 characters of its hash (deterministic, so a call and its result still pair)."""
    if _MISTRAL_ID.fullmatch(call_id):
        return call_id
    number = int.from_bytes(hashlib.sha256(call_id.encode()).digest()[:8], "big")
    chars = []
    for _ in range(9):
        number, digit = divmod(number, 62)
        chars.append(_ALPHABET[digit])
    return "".join(chars)


class MistralAdapter(OpenAIAdapter):
    kind = "mistral"
    default_base_url = "https://api.mistral.ai/v1"
    ask_stream_usage = False

    def chat_body(self, target: ModelTarget, request: Json, stream: bool) -> Json:
        body = super().chat_body(target, request, stream)
        if "seed" in body and "random_seed" not in body:
            body["random_seed"] = body["seed"]
        if body.get("max_completion_tokens") is not None and body.get("max_tokens") is None:
            body["max_tokens"] = body["max_completion_tokens"]
        body = {k: v for k, v in body.items() if k in _CHAT_FIELDS}
        if isinstance(body.get("messages"), list):
            body["messages"] = [self._message(m) if isinstance(m, dict) else m for m in body["messages"]]
        return body

    def _message(self, message: Json) -> Json:
        if message.get("role") == "tool" and isinstance(message.get("tool_call_id"), str):
            return {**message, "tool_call_id": mistral_tool_id(message["tool_call_id"])}
        calls = message.get("tool_calls")
        if isinstance(calls, list):
            mapped = []
            for call in calls:
                if isinstance(call, dict):
                    call = {k: v for k, v in call.items() if k != "extra_content"}
                    if isinstance(call.get("id"), str):
                        call["id"] = mistral_tool_id(call["id"])
                mapped.append(call)
            return {**message, "tool_calls": mapped}
        return message

    def finish_reason(self, reason: Any) -> str | None:
        if reason is None:
            return None
        if reason == "error":
            raise ProviderError("server", "the provider ended the generation with an error")
        return _FINISH.get(reason, "stop") if isinstance(reason, str) else "stop"

    def embeddings_body(self, target: ModelTarget, request: Json) -> Json:
        body = super().embeddings_body(target, request)
        if "dimensions" in body and "output_dimension" not in body:
            body["output_dimension"] = body["dimensions"]
        return {k: v for k, v in body.items() if k in _EMBEDDING_FIELDS}

    def text(self, content: Any) -> str | None:
        if isinstance(content, list):
            return "".join(
                common.as_str(part.get("text"))
                for part in content
                if isinstance(part, dict) and part.get("type") == "text"
            )
        return super().text(content)
