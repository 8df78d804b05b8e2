"""Prompt API builders for the authoring tests, through the services as the pages do."""

from __future__ import annotations

from typing import Any

from llm import prompt_services
from llm.models import ModelRoute, PromptVersion
from portal.models import Tenant
from tests.llm import factories

SENTIMENT_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "minLength": 1, "maxLength": 2000, "examples": ["I love this product."]},
        "language": {"type": "string", "enum": ["en", "fr", "de"]},
    },
    "required": ["text"],
    "additionalProperties": False,
}
SENTIMENT_OUTPUT: dict[str, Any] = {
    "type": "object",
    "properties": {"sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]}},
    "required": ["sentiment"],
}


def live_route(staff: Any, owner: Tenant, *, alias: str = "gpt-4o-mini", slug: str = "llm") -> ModelRoute:
    """A model route of a published AI API on the mock provider (port 9100 unless changed)."""
    api = factories.ai_api(owner, staff, slug=slug)
    provider = factories.provider(staff, name=f"openai for {slug}")
    return factories.route(staff, api, alias, [factories.model(staff, provider)])


def sentiment_version(actor: Any, tenant: Tenant, route: ModelRoute, *, slug: str = "sentiment") -> PromptVersion:
    api = prompt_services.create_prompt_api(tenant, actor=actor, slug=slug, name=slug.title())
    return prompt_services.create_prompt_version(
        api,
        actor=actor,
        version="v1",
        base_path=f"/{slug}/v1",
        route=route,
        system_prompt="Classify the sentiment. Answer with JSON.",
        user_template="Text ({{language}}): {{text}}",
        input_schema=SENTIMENT_INPUT,
        output_mode="json",
        output_schema=SENTIMENT_OUTPUT,
        temperature=0.0,
        max_tokens=50,
    )
