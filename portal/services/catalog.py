"""What the catalog shows to whom, and the reference document the docs' try-it console uses.

Developers see an API when it is public (or owned by their current tenant) and has at least
one published or deprecated version. Draft and retired versions are invisible: not listed,
and their pages answer 404 (``NotFound``), exactly like a version that does not exist.
"""

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.db.models import Count, Prefetch, Q, QuerySet
from django.utils import timezone

from portal.models import (
    Api,
    ApiKey,
    ApiVersion,
    Plan,
    SubscriptionState,
    Tag,
    Tenant,
    VersionState,
    Visibility,
)
from portal.services.errors import NotFound

DEVELOPER_VISIBLE_STATES = (VersionState.PUBLISHED, VersionState.DEPRECATED)

# The name under which the docs declare the developer's key; the gateway reads X-API-Key.
KEY_SCHEME = "PorticoKey"
KEY_HEADER = "X-API-Key"


def visible_apis(tenant: Tenant | None = None) -> QuerySet[Api]:
    """APIs with at least one published or deprecated version, public or owned by ``tenant``."""
    scope = Q(visibility=Visibility.PUBLIC)
    if tenant is not None:
        scope |= Q(owner=tenant)
    return Api.objects.filter(scope, versions__state__in=DEVELOPER_VISIBLE_STATES).distinct()


def visible_apis_for(tenant_ids: Iterable[int]) -> QuerySet[Api]:
    """Like visible_apis, for a person in several tenants (the REST API's caller)."""
    scope = Q(visibility=Visibility.PUBLIC) | Q(owner_id__in=list(tenant_ids))
    return Api.objects.filter(scope, versions__state__in=DEVELOPER_VISIBLE_STATES).distinct()


def visible_versions(api: Api) -> QuerySet[ApiVersion]:
    return api.versions.filter(state__in=DEVELOPER_VISIBLE_STATES).order_by("-published_at", "-created_at")


def search_apis(
    tenant: Tenant | None, query: str = "", tags: Iterable[str] = (), *, among: QuerySet[Api] | None = None
) -> QuerySet[Api]:
    """Visible APIs matching every word of ``query`` (in name, description or a tag) and
    carrying every tag in ``tags``. Each API comes with ``developer_versions`` prefetched.
    ``among`` replaces ``visible_apis(tenant)`` as the starting set (e.g. ``visible_apis_for``)."""
    apis = visible_apis(tenant) if among is None else among
    for word in query.split():
        matching = Api.objects.filter(
            Q(name__icontains=word) | Q(description__icontains=word) | Q(tags__name__icontains=word)
        )
        apis = apis.filter(pk__in=matching.values("pk"))
    for tag in tags:
        apis = apis.filter(pk__in=Api.objects.filter(tags__name=tag).values("pk"))
    developer_versions = Prefetch(
        "versions",
        queryset=ApiVersion.objects.filter(state__in=DEVELOPER_VISIBLE_STATES).order_by("-published_at"),
        to_attr="developer_versions",
    )
    active_plans = Prefetch("plans", queryset=Plan.objects.filter(is_active=True), to_attr="active_plans")
    return apis.prefetch_related("tags", developer_versions, active_plans).order_by("name")


def catalog_tags(tenant: Tenant | None) -> QuerySet[Tag]:
    """Tags used by visible APIs, each with ``api_count``: the tag filter's choices."""
    visible = visible_apis(tenant).values("pk")
    return (
        Tag.objects.filter(apis__in=visible)
        .annotate(api_count=Count("apis", filter=Q(apis__in=visible), distinct=True))
        .order_by("name")
    )


def visible_api(tenant: Tenant | None, slug: str) -> Api:
    api = visible_apis(tenant).filter(slug=slug).first()
    if api is None:
        raise NotFound("No such API in the catalog.")
    return api


def visible_version(api: Api, version: str) -> ApiVersion:
    found = api.versions.filter(version=version, state__in=DEVELOPER_VISIBLE_STATES).first()
    if found is None:
        raise NotFound(f"{api.name} has no version {version} in the catalog.")
    return found


@dataclass(frozen=True)
class Limit:
    label: str
    value: str


def plan_limits(plan: Plan) -> list[Limit]:
    """A plan's limits as people read them; an empty list means the plan has no limit."""
    limits = []
    if plan.requests_per_second:
        limits.append(Limit("Rate", f"{plan.requests_per_second:,} requests / second"))
    if plan.requests_per_minute:
        limits.append(Limit("Rate", f"{plan.requests_per_minute:,} requests / minute"))
    if plan.daily_quota:
        limits.append(Limit("Quota", f"{plan.daily_quota:,} requests / day"))
    if plan.monthly_quota:
        limits.append(Limit("Quota", f"{plan.monthly_quota:,} requests / month"))
    return limits


def active_plans(api: Api) -> QuerySet[Plan]:
    return api.plans.filter(is_active=True).order_by("requires_approval", "name")


def gateway_base_url(version: ApiVersion, gateway_url: str) -> str:
    # An AI API's versions have no base path: their routes answer on the gateway's LLM
    # endpoints, and /v1 is the base URL the OpenAI SDK takes.
    return gateway_url.rstrip("/") + (version.base_path or "/v1")


def try_it_document(version: ApiVersion, gateway_url: str) -> dict[str, Any]:
    """The version's OpenAPI document as the docs serve it: its server is the gateway (plus
    the version's base path) and every operation asks for the developer's key, so the
    try-it console calls the real gateway with that key. Raises NotFound without a document."""
    if not isinstance(version.openapi, dict) or not version.openapi:
        raise NotFound(f"Version {version.version} of {version.api.name} has no reference document yet.")
    document = copy.deepcopy(version.openapi)
    base_url = gateway_base_url(version, gateway_url)
    scheme = {
        "type": "apiKey",
        "in": "header",
        "name": KEY_HEADER,
        "description": "Your Portico API key (pt_...). Create one on your application's page.",
    }
    if str(document.get("swagger", "")).startswith("2"):
        # Swagger 2.0 has no servers list: host, basePath and schemes say the same thing.
        parts = urlsplit(base_url)
        document.update(host=parts.netloc, basePath=parts.path or "/", schemes=[parts.scheme])
        document.setdefault("securityDefinitions", {})[KEY_SCHEME] = scheme
    else:
        # A prompt API's generated document names the whole base path as its one path
        # (llm/prompt_openapi.py), so its server is the gateway's root.
        document["servers"] = [{"url": gateway_url.rstrip("/") if version.api.is_prompt else base_url}]
        _drop_inner_servers(document)
        if not isinstance(document.get("components"), dict):
            document["components"] = {}
        schemes = document["components"].get("securitySchemes")
        if not isinstance(schemes, dict):
            schemes = document["components"]["securitySchemes"] = {}
        schemes[KEY_SCHEME] = scheme
    document["security"] = [{KEY_SCHEME: []}]
    return document


HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def _drop_inner_servers(document: dict[str, Any]) -> None:
    """Remove the ``servers`` a path or an operation may declare (OpenAPI 3): they override
    the document's, and the try-it console would send the developer's key straight to the
    upstream (or anywhere the author wrote). Without them every call goes to the gateway."""
    paths = document.get("paths")
    if not isinstance(paths, dict):
        return
    for item in paths.values():
        if not isinstance(item, dict):
            continue
        item.pop("servers", None)
        for method in HTTP_METHODS:
            if isinstance(item.get(method), dict):
                item[method].pop("servers", None)


def keys_for_try_it(tenant: Tenant | None, api: Api) -> QuerySet[ApiKey]:
    """The current tenant's usable keys on applications subscribed to ``api`` (approved).
    The docs list them by prefix so the developer knows which secret to paste; the secret
    itself is never stored, so it cannot be filled in for them."""
    if tenant is None:
        return ApiKey.objects.none()
    now = timezone.now()
    return (
        ApiKey.objects.filter(
            application__tenant=tenant,
            application__subscriptions__api=api,
            application__subscriptions__state=SubscriptionState.APPROVED,
            revoked_at__isnull=True,
        )
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .select_related("application")
        .distinct()
        .order_by("application__name", "-created_at")
    )
