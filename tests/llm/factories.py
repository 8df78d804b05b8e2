"""Small builders for the LLM control plane's tests (through the services, as the admin does)."""

from decimal import Decimal

from llm import services
from llm.models import Model, ModelRoute, Provider
from portal.models import Api, ApiVersion
from portal.models.catalog import ApiKind
from portal.services import lifecycle

MOCK = "http://127.0.0.1:9100"


def ai_api(owner, staff, *, slug: str = "llm", publish: bool = True) -> Api:
    api = Api.objects.create(slug=slug, name=slug.upper(), owner=owner, kind=ApiKind.AI)
    version = ApiVersion.objects.create(api=api, version="v1", base_path=None)
    if publish:
        lifecycle.publish_version(version, actor=staff)
    return api


def provider(staff, *, kind: str = "openai", name: str | None = None, path: str = "/openai/v1", **extra) -> Provider:
    return services.create_provider(
        actor=staff, name=name or f"{kind} provider", kind=kind, base_url=MOCK + path, **extra
    )


def model(staff, on: Provider, upstream: str = "gpt-4o-mini", **extra) -> Model:
    extra.setdefault("input_price", Decimal("0.15"))
    extra.setdefault("output_price", Decimal("0.60"))
    return services.create_model(actor=staff, provider=on, upstream_name=upstream, **extra)


def route(staff, api: Api, alias: str, targets, fallbacks=(), **settings) -> ModelRoute:
    specs = [t if isinstance(t, services.TargetSpec) else services.TargetSpec(t) for t in targets]
    return services.create_route(
        actor=staff, alias=alias, api=api, targets=specs, fallbacks=list(fallbacks), **settings
    )
