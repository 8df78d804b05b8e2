"""Any OpenAI-compatible server (vLLM, Ollama, llama.cpp, LM Studio, TGI's Messages API...).

The OpenAI wire format, read leniently: ids, ``created``, ``model`` and ``usage`` may be
missing (the answer then has no usage and the gateway estimates it), finish reasons may be
null or server-specific (``eos``, ``eos_token``: read as ``stop``), errors may be
``{"error": "text"}`` or ``{"detail": ...}``. Usage is still asked for on streams
(``stream_options.include_usage``, which vLLM, Ollama and llama.cpp honour and others
ignore). A stream counts as finished when it sent ``[DONE]`` or, for servers that close
without it, when a choice carried a finish reason: what was promised arrived.
"""

from __future__ import annotations

from typing import Any

from llm.providers.openai import OpenAIAdapter

_KNOWN = {"stop": "stop", "length": "length", "tool_calls": "tool_calls", "content_filter": "content_filter"}
_ALIASES = {
    "eos": "stop",
    "eos_token": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "function_call": "tool_calls",
}


class CompatibleAdapter(OpenAIAdapter):
    kind = "openai-compatible"
    default_base_url = "http://127.0.0.1:8000/v1"  # vLLM's default; configure the real one
    require_done = False

    def finish_reason(self, reason: Any) -> str | None:
        if reason is None or reason == "":
            return None
        if isinstance(reason, str):
            return _KNOWN.get(reason) or _ALIASES.get(reason) or "stop"
        return "stop"
