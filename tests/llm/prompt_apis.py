"""Building prompt APIs for tests: a model route on the mock provider (through the LLM
services, as ``ai_route`` does), and a prompt API version on it with a plan, a subscribed
application and a key.

The prompt rows are created directly: the authoring services belong to the ``promptcp``
branch. Publishing moves the version's state and bumps the config version, which is what
the gateway reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from llm.models import ModelRoute, OutputMode, PromptVersion
from portal.models import Api, ApiKey, ApiVersion, Application, Membership, Plan, Role, Tenant, VersionState
from portal.models.catalog import ApiKind
from portal.services import keys as key_services
from portal.services import lifecycle, subscriptions
from portal.services.config_signal import publish_config_change
from tests.llm.conftest import AiRouteFactory, BuiltTarget, Target, unique

SENTIMENT_INPUT = {
    "type": "object",
    "required": ["text", "language"],
    "additionalProperties": False,
    "properties": {
        "text": {"type": "string", "minLength": 1, "maxLength": 200},
        "language": {"enum": ["en", "fr", "de"]},
        "strength": {"type": "integer", "minimum": 1, "maximum": 5},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
    },
}
SENTIMENT_OUTPUT = {
    "type": "object",
    "required": ["label", "score"],
    "additionalProperties": False,
    "properties": {"label": {"enum": ["positive", "negative", "neutral"]}, "score": {"type": "number"}},
}


@dataclass
class ModelRouteBuilt:
    api: Api
    route: ModelRoute
    targets: list[BuiltTarget]


@dataclass
class PromptApiBuilt:
    api: Api
    version: ApiVersion
    prompt: PromptVersion
    plan: Plan
    key: str
    key_prefix: str
    api_key: ApiKey | None
    application: Application
    tenant: Tenant
    model: ModelRouteBuilt

    @property
    def base_path(self) -> str:
        assert self.version.base_path
        return self.version.base_path


def model_route(factory: AiRouteFactory, targets: Sequence[Target] = (), **options: Any) -> ModelRouteBuilt:
    """An AI API (published) with one model route on the mock; no caller is subscribed to it.
    The first one in a test starts from a mock without faults and with an empty log."""
    if not factory._mock_reset:
        factory.mock.reset()
        factory._mock_reset = True
    slug = unique("model-api")
    owner = Tenant.objects.create(name=slug, slug=slug)
    api = Api.objects.create(slug=slug, name=slug, owner=owner, kind=ApiKind.AI)
    version = ApiVersion.objects.create(api=api, version="v1", base_path=None)
    lifecycle.publish_version(version, actor=factory.staff)
    built, _backups, route = factory._route(api, list(targets) or [Target()], (), options)
    return ModelRouteBuilt(api, route, built)


def publish(version: ApiVersion) -> None:
    """Make a prompt version routable (the lifecycle's publish for prompt APIs is promptcp's)."""
    with transaction.atomic():
        ApiVersion.objects.filter(pk=version.pk).update(state=VersionState.PUBLISHED, published_at=timezone.now())
        publish_config_change(f"prompt version {version.pk} published (test)")
    version.refresh_from_db()


def prompt_api(
    factory: AiRouteFactory,
    model: ModelRouteBuilt,
    *,
    user_template: str = "Classify the sentiment of: {{text}} (language {{language}})",
    input_schema: dict | None = None,
    system_prompt: str = "You classify sentiment.",
    output_mode: str = OutputMode.TEXT,
    output_schema: dict | None = None,
    temperature: float | None = 0.0,
    max_tokens: int | None = 64,
    plan: dict[str, Any] | None = None,
    max_request_bytes: int | None = None,
    subscribe: bool = True,
    state: str = VersionState.PUBLISHED,
) -> PromptApiBuilt:
    slug = unique("prompt-api")
    owner = Tenant.objects.create(name=slug, slug=slug)
    api = Api.objects.create(slug=slug, name=slug, owner=owner, kind=ApiKind.PROMPT)
    extra = {"max_request_bytes": max_request_bytes} if max_request_bytes else {}
    version = ApiVersion.objects.create(api=api, version="v1", base_path=f"/{slug}/v1", **extra)
    prompt = PromptVersion.objects.create(
        version=version,
        route=model.route,
        system_prompt=system_prompt,
        user_template=user_template,
        input_schema=input_schema if input_schema is not None else SENTIMENT_INPUT,
        output_mode=output_mode,
        output_schema=output_schema or {},
        temperature=temperature,
        max_tokens=max_tokens,
    )
    plan_obj = Plan.objects.create(api=api, name="Plan", **(plan or {}))
    user = get_user_model().objects.create_user(unique("prompt-caller"))
    tenant = Tenant.objects.create(name=unique("caller"), slug=unique("caller"))
    Membership.objects.create(user=user, tenant=tenant, role=Role.OWNER)
    application = Application.objects.create(tenant=tenant, name=unique("app"))
    if state != VersionState.DRAFT:
        publish(version)
    if subscribe and state != VersionState.DRAFT:
        subscriptions.request_subscription(application, api, plan_obj, actor=user)
    api_key, secret = key_services.create_api_key(application, actor=user)
    return PromptApiBuilt(
        api=api,
        version=version,
        prompt=prompt,
        plan=plan_obj,
        key=secret,
        key_prefix=api_key.prefix,
        api_key=api_key,
        application=application,
        tenant=tenant,
        model=model,
    )
