"""Azure OpenAI: the OpenAI wire format behind a deployment URL.

``{base}/openai/deployments/{deployment}/chat/completions?api-version={v}`` (and
``/embeddings``), credential in the ``api-key`` header, the deployment (``upstream_model``)
in the path instead of ``model`` in the body. Answers are OpenAI's plus content-filter
annotations; a streamed answer may start with a chunk holding only ``prompt_filter_results``
(dropped by the OpenAI decoder) and Azure's ``content_filter`` finish reason is OpenAI's.
"""

from __future__ import annotations

from urllib.parse import quote

from llm.canonical import Json, ModelTarget, ProviderKey
from llm.providers import common
from llm.providers.openai import OpenAIAdapter, secret_header

# The latest GA data-plane version when none is configured; it accepts stream_options.
DEFAULT_API_VERSION = "2024-10-21"


class AzureOpenAIAdapter(OpenAIAdapter):
    kind = "azure-openai"
    default_base_url = ""  # https://{resource}.openai.azure.com: there is no default resource

    def _deployment_url(self, target: ModelTarget, operation: str) -> str:
        version = target.azure_api_version or DEFAULT_API_VERSION
        # The deployment is a path segment and the version a query value: quote both, so a
        # configured name can never reach another path or add parameters.
        deployment = quote(target.upstream_model, safe="")
        path = f"/openai/deployments/{deployment}/{operation}?api-version={quote(version, safe='')}"
        return common.join_url(self.base_url(target), path)

    def chat_url(self, target: ModelTarget) -> str:
        return self._deployment_url(target, "chat/completions")

    def embeddings_url(self, target: ModelTarget) -> str:
        return self._deployment_url(target, "embeddings")

    def auth_headers(self, key: ProviderKey) -> tuple[tuple[bytes, bytes], ...]:
        return ((b"api-key", secret_header(key.secret)),)

    def chat_body(self, target: ModelTarget, request: Json, stream: bool) -> Json:
        body = super().chat_body(target, request, stream)
        del body["model"]  # the deployment names the model
        return body

    def embeddings_body(self, target: ModelTarget, request: Json) -> Json:
        body = super().embeddings_body(target, request)
        del body["model"]
        return body
