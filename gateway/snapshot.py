"""The compiled, immutable configuration a gateway worker serves from.

Django owns configuration; the gateway never queries the database per request. A worker
builds a ``Snapshot`` with the ORM (in a thread, off the event loop) and swaps the one it
serves from atomically when the config version in Redis changes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from email.utils import format_datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from gateway.limits import PlanLimits
from gateway.mcptools import EMPTY_CATALOG, McpCatalog, VersionSource, build_catalog
from gateway.routing import RouteTable
from llm.canonical import AiConfig
from llm.prompts import PromptSpec, spec_from_row

if TYPE_CHECKING:
    from portal.models import ApiVersion


@dataclass(frozen=True, slots=True)
class Target:
    url: str  # base URL without trailing slash
    weight: int
    pool_key: tuple[str, str, int]  # (scheme, host, port) for the connection pool
    path_prefix: bytes = b""  # the target URL's own path, prepended to the forwarded path
    host_header: bytes = b""
    # A team set this target: connect only to an address the peer check passes.
    requires_public_address: bool = False

    @classmethod
    def from_url(cls, url: str, weight: int, requires_public_address: bool = False) -> Target:
        parsed = urlsplit(url.rstrip("/"))
        scheme = parsed.scheme or "http"
        port = parsed.port or (443 if scheme == "https" else 80)
        host = parsed.hostname or ""  # never empty: target URLs are validated as http(s) URLs
        default_port = (scheme == "https" and port == 443) or (scheme == "http" and port == 80)
        host_header = host if default_port else f"{host}:{port}"
        return cls(
            url.rstrip("/"),
            weight,
            (scheme, host, port),
            parsed.path.encode(),
            host_header.encode(),
            requires_public_address,
        )


@dataclass(frozen=True, slots=True)
class Route:
    """One routable API version with its upstream policy, compiled for the hot path."""

    api_id: int
    api_slug: str
    version_id: int
    base_path: str
    host: str
    state: str  # published | deprecated | retired
    targets: tuple[Target, ...]
    load_balancing: str
    connect_timeout: float
    read_timeout: float
    total_timeout: float
    retries: int
    cache_ttl: int
    max_request_bytes: int
    deprecation_headers: tuple[tuple[bytes, bytes], ...] = ()
    # A prompt API's version (llm/prompts.py): requests go to gateway/promptcall.py, not upstream.
    prompt: PromptSpec | None = None


@dataclass(frozen=True, slots=True)
class KeyEntry:
    prefix: str
    secret_hash: str
    application_id: int
    tenant_id: int
    expires_at: float | None  # epoch seconds
    revoked: bool
    id: int = 0  # the ApiKey row: LLM budgets may be set per key


@dataclass(frozen=True, slots=True)
class Grant:
    """An approved subscription: what an application may call, on which plan."""

    subscription_id: int
    limits: PlanLimits


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    routes: RouteTable
    keys: dict[str, KeyEntry] = field(default_factory=dict)
    grants: dict[tuple[int, int], Grant] = field(default_factory=dict)  # (application_id, api_id)
    ai: AiConfig = field(default_factory=AiConfig)  # model aliases and budgets (llm/snapshot.py)
    mcp: McpCatalog = EMPTY_CATALOG  # the tools of live versions, per application (gateway/mcptools.py)

    @property
    def route_count(self) -> int:
        return len(self.routes)


EMPTY = Snapshot(version=-1, routes=RouteTable(()))


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()


def _deprecation_headers(version: ApiVersion, portal_url: str) -> tuple[tuple[bytes, bytes], ...]:
    if version.state != "deprecated":
        return ()
    headers: list[tuple[bytes, bytes]] = []
    if version.deprecated_at:
        # RFC 9745: Deprecation is a structured-field date, '@' + epoch seconds.
        headers.append((b"deprecation", f"@{int(version.deprecated_at.timestamp())}".encode()))
    if version.sunset_at:
        headers.append((b"sunset", format_datetime(version.sunset_at, usegmt=True).encode()))  # RFC 8594
    link = f'<{portal_url}/apis/{version.api.slug}/>; rel="deprecation"; type="text/html"'
    headers.append((b"link", link.encode()))
    return tuple(headers)


def _mcp_catalog(grants: dict[tuple[int, int], Grant], routes: list[Route]) -> McpCatalog:
    """The MCP tools of every published or deprecated REST and prompt version (retired and
    draft ones are never tools), compiled here so tools/list is a lookup per request."""
    from portal.models import ApiVersion, VersionState

    live = ApiVersion.objects.filter(
        state__in=[VersionState.PUBLISHED, VersionState.DEPRECATED], api__kind__in=["rest", "prompt"]
    ).select_related("api", "prompt")
    served = {route.version_id: route for route in routes}
    sources = []
    for v in live:
        route = served.get(v.pk)
        if route is None or (route.prompt is not None and route.prompt.broken):
            continue  # not routed, or a prompt the gateway refuses to serve (503): not a tool
        prompt = getattr(v, "prompt", None) if v.api.kind == "prompt" else None
        sources.append(
            VersionSource(
                api_id=v.api.pk,
                api_slug=v.api.slug,
                api_name=v.api.name,
                version_id=v.pk,
                version=v.version,
                state=v.state,
                document=v.openapi,
                kind=v.api.kind,
                prompt_input_schema=prompt.input_schema if prompt is not None else None,
                prompt_description=v.api.description,
            )
        )
    return build_catalog(sources, grants, served)


def _prompt_spec(version: ApiVersion) -> PromptSpec | None:
    """The served spec of a prompt API's version (checked: a schema that would not pass the
    save-time checks is served as ``broken``, answered 503), or None without a prompt row."""
    from django.core.exceptions import ObjectDoesNotExist

    try:
        row = version.prompt
    except ObjectDoesNotExist:
        return None
    spec = spec_from_row(row, row.route.alias, version_id=version.pk)
    model_api = row.route.api
    if model_api.visibility != "public" and model_api.owner_id != version.api.owner_id:
        # Another team's private AI API: a prompt API on it would open it to every caller of
        # the prompt API (a row that bypassed prompt_services.available_routes).
        return replace(spec, broken="its model route is another team's private AI API")
    return spec


def build_snapshot(config_version: int) -> Snapshot:
    """Read the routable configuration from the database. Runs in a worker thread."""
    _setup_django()
    from django.conf import settings
    from django.db import close_old_connections

    from portal.models import ApiKey, ApiVersion, Subscription, SubscriptionState, VersionState

    close_old_connections()
    try:
        portal_url = settings.PORTICO_PORTAL_URL.rstrip("/")
        routes = []
        versions = (
            ApiVersion.objects.filter(
                state__in=[VersionState.PUBLISHED, VersionState.DEPRECATED, VersionState.RETIRED],
                api__kind__in=["rest", "prompt"],
            )
            .select_related("api", "prompt__route__api")
            .prefetch_related("targets")
        )
        for v in versions:
            prompt = _prompt_spec(v) if v.api.kind == "prompt" else None
            if v.api.kind == "prompt" and prompt is None:
                continue  # a prompt API version without its prompt: nothing to serve
            if not v.base_path:  # publishing needs one; a row without it is not routable
                continue
            targets = tuple(
                Target.from_url(t.url, t.weight, t.requires_public_address) for t in v.targets.all() if t.enabled
            )
            routes.append(
                Route(
                    api_id=v.api_id,
                    api_slug=v.api.slug,
                    version_id=v.pk,
                    base_path=v.base_path,
                    host=v.host.lower(),
                    state=v.state,
                    targets=targets,
                    load_balancing=v.load_balancing,
                    connect_timeout=v.connect_timeout_ms / 1000,
                    read_timeout=v.read_timeout_ms / 1000,
                    total_timeout=v.total_timeout_ms / 1000,
                    retries=v.retries,
                    cache_ttl=v.cache_ttl_seconds,
                    max_request_bytes=v.max_request_bytes,
                    deprecation_headers=_deprecation_headers(v, portal_url),
                    prompt=prompt,
                )
            )
        keys = {
            k.prefix: KeyEntry(
                prefix=k.prefix,
                secret_hash=k.secret_hash,
                application_id=k.application_id,
                tenant_id=k.application.tenant_id,
                expires_at=k.expires_at.timestamp() if k.expires_at else None,
                revoked=k.revoked_at is not None,
                id=k.pk,
            )
            for k in ApiKey.objects.select_related("application")
        }
        grants = {
            (s.application_id, s.api_id): Grant(
                subscription_id=s.pk,
                limits=PlanLimits(
                    plan_id=s.plan_id,
                    requests_per_second=s.plan.requests_per_second,
                    requests_per_minute=s.plan.requests_per_minute,
                    daily_quota=s.plan.daily_quota,
                    monthly_quota=s.plan.monthly_quota,
                ),
            )
            for s in Subscription.objects.filter(state=SubscriptionState.APPROVED).select_related("plan")
        }
        from llm.snapshot import build_ai_config

        return Snapshot(
            version=config_version,
            routes=RouteTable(routes),
            keys=keys,
            grants=grants,
            ai=build_ai_config(),
            mcp=_mcp_catalog(grants, routes),
        )
    finally:
        close_old_connections()
