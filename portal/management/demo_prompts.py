"""The demo's prompt APIs: four classic jobs of "a model plus a well-made prompt", each a
published catalog API with plans, running on the demo's mock-provider routes. Made through
the authoring services, as a team would in the portal; safe to run again."""

from __future__ import annotations

from typing import Any

from llm import prompt_services
from llm.models import PromptApi, PromptVersion
from portal.models import Api, ApiVersion, Plan, Tag, Tenant, VersionState
from portal.services import lifecycle

LANGUAGES = ["en", "fr", "de", "es", "it", "pt", "nl"]

PROMPT_APIS: list[dict[str, Any]] = [
    {
        "slug": "sentiment",
        "name": "Sentiment Analysis",
        "description": "Is a text positive, neutral or negative? One word you can switch on.",
        "tags": ["ai", "nlp"],
        "base_path": "/sentiment/v1",
        "route": "gpt-4o-mini",
        "system_prompt": (
            "You classify the sentiment of customer texts. Answer with JSON only: "
            '{"sentiment": "positive" | "neutral" | "negative", "confidence": a number from 0 to 1}.'
        ),
        "user_template": "Classify the sentiment of this text:\n\n{{text}}",
        "input_schema": {
            "type": "object",
            "properties": {
                "text": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 5000,
                    "description": "The text to classify.",
                    "examples": ["The delivery was late, but the support team was wonderful."],
                }
            },
            "required": ["text"],
            "additionalProperties": False,
        },
        "output_mode": "json",
        "output_schema": {
            "type": "object",
            "properties": {
                "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
                "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            },
            "required": ["sentiment"],
            "additionalProperties": False,
        },
        "temperature": 0.0,
        "max_tokens": 50,
    },
    {
        "slug": "translate",
        "name": "Translation",
        "description": "Translate text between European languages, keeping its tone and formatting.",
        "tags": ["ai", "nlp", "language"],
        "base_path": "/translate/v1",
        "route": "claude-haiku",
        "system_prompt": (
            "You are a professional translator. Translate faithfully, keep the tone, names and "
            "formatting, and answer with the translation only."
        ),
        "user_template": "Translate from {{source_language}} into {{target_language}}:\n\n{{text}}",
        "input_schema": {
            "type": "object",
            "properties": {
                "text": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 10000,
                    "examples": ["Good morning, how are you?"],
                },
                "source_language": {"type": "string", "enum": LANGUAGES, "default": "en"},
                "target_language": {"type": "string", "enum": LANGUAGES, "examples": ["fr"]},
            },
            "required": ["text", "target_language"],
            "additionalProperties": False,
        },
        "output_mode": "text",
        "output_schema": {},
        "temperature": 0.2,
        "max_tokens": 2000,
    },
    {
        "slug": "summarize",
        "name": "Summarization",
        "description": "A short summary of a long text, in at most the number of sentences you ask for.",
        "tags": ["ai", "nlp"],
        "base_path": "/summarize/v1",
        "route": "gemini-flash",
        "system_prompt": "You write faithful, neutral summaries. Never add facts that are not in the text.",
        "user_template": "Summarize the following text in at most {{max_sentences}} sentences:\n\n{{text}}",
        "input_schema": {
            "type": "object",
            "properties": {
                # Length-limited: long inputs cost tokens, and the model's context is finite.
                "text": {
                    "type": "string",
                    "minLength": 50,
                    "maxLength": 20000,
                    "examples": [
                        "Portico is an open-source API management platform. It has a developer portal, "
                        "a fast gateway and an LLM gateway that share one catalog, one set of keys and one call log."
                    ],
                },
                "max_sentences": {"type": "integer", "minimum": 1, "maximum": 10, "default": 3},
            },
            "required": ["text"],
            "additionalProperties": False,
        },
        "output_mode": "text",
        "output_schema": {},
        "temperature": 0.3,
        "max_tokens": 300,
    },
    {
        "slug": "extract-entities",
        "name": "Entity Extraction",
        "description": "People, organizations, places and dates found in a text, as typed JSON.",
        "tags": ["ai", "nlp", "data"],
        "base_path": "/entities/v1",
        "route": "gpt-4o-mini",
        "system_prompt": (
            "You extract named entities from text. Answer with JSON only, an object with an "
            '"entities" list; each entity has its "text" exactly as written and its "type".'
        ),
        "user_template": "Extract the entities of these kinds: {{kinds}}\n\nText:\n{{text}}",
        "input_schema": {
            "type": "object",
            "properties": {
                "text": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 8000,
                    "examples": ["Ada Lovelace met Charles Babbage in London in June 1833."],
                },
                "kinds": {
                    "type": "array",
                    "items": {"type": "string", "enum": ["person", "organization", "location", "date"]},
                    "minItems": 1,
                    "maxItems": 4,
                    "uniqueItems": True,
                    "default": ["person", "organization", "location", "date"],
                },
            },
            "required": ["text"],
            "additionalProperties": False,
        },
        "output_mode": "json",
        "output_schema": {
            "type": "object",
            "properties": {
                "entities": {
                    "type": "array",
                    "maxItems": 100,
                    "items": {
                        "type": "object",
                        "properties": {
                            "text": {"type": "string"},
                            "type": {"type": "string", "enum": ["person", "organization", "location", "date"]},
                        },
                        "required": ["text", "type"],
                        "additionalProperties": False,
                    },
                }
            },
            "required": ["entities"],
            "additionalProperties": False,
        },
        "temperature": 0.0,
        "max_tokens": 800,
    },
]
PROMPT_PLANS = [
    ("Free", False, {"requests_per_minute": 30, "daily_quota": 500}),
    ("Pro", True, {"requests_per_second": 20}),
]
PROMPT_FIELDS = prompt_services.PROMPT_FIELDS


def seed_prompt_apis(publisher: Tenant, admin: Any) -> list[Api]:
    """Create (once) and publish the demo's prompt APIs; returns them."""
    made = []
    for spec in PROMPT_APIS:
        api = PromptApi.objects.filter(slug=spec["slug"]).first()
        if api is None:
            api = prompt_services.create_prompt_api(
                publisher, actor=admin, slug=spec["slug"], name=spec["name"], description=spec["description"]
            )
        api.tags.set([Tag.objects.get_or_create(name=t)[0] for t in spec["tags"]])
        for name, approval, limits in PROMPT_PLANS:
            Plan.objects.get_or_create(api=api, name=name, defaults={"requires_approval": approval, **limits})
        version = ApiVersion.objects.filter(api=api, version="v1").first()
        if version is None:
            prompt = prompt_services.create_prompt_version(
                api,
                actor=admin,
                version="v1",
                base_path=spec["base_path"],
                route=spec["route"],
                **{name: spec[name] for name in PROMPT_FIELDS},
            )
            version = prompt.version
        elif not PromptVersion.objects.filter(version=version).exists():
            continue  # someone else's version under that name: leave it alone
        if version.state == VersionState.DRAFT:
            lifecycle.publish_version(version, actor=admin)
        made.append(Api.objects.get(pk=api.pk))
    return made
