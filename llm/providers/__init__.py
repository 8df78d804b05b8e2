"""Provider adapters: canonical (OpenAI Chat Completions) requests out to each provider's wire
format, its answers, streams and errors back. One module per provider, each keeping the
``llm.canonical.ProviderAdapter`` contract; ``adapter_for(kind)`` picks one by
``ModelTarget.provider_kind``. Adapters hold no per-request state (stream decoders do), so
one instance per kind serves every request."""

from __future__ import annotations

from llm.canonical import ProviderAdapter
from llm.providers.anthropic import AnthropicAdapter
from llm.providers.azure import AzureOpenAIAdapter
from llm.providers.compatible import CompatibleAdapter
from llm.providers.gemini import GeminiAdapter
from llm.providers.mistral import MistralAdapter
from llm.providers.openai import OpenAIAdapter

_ADAPTERS: dict[str, ProviderAdapter] = {
    adapter.kind: adapter
    for adapter in (
        OpenAIAdapter(),
        AzureOpenAIAdapter(),
        CompatibleAdapter(),
        MistralAdapter(),
        AnthropicAdapter(),
        GeminiAdapter(),
    )
}

PROVIDER_KINDS = tuple(_ADAPTERS)


def adapter_for(kind: str) -> ProviderAdapter:
    """The adapter for a provider kind; KeyError for an unknown one (a snapshot bug)."""
    try:
        return _ADAPTERS[kind]
    except KeyError:
        raise KeyError(f"no provider adapter for kind {kind!r}") from None
