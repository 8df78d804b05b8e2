"""The database's LLM configuration compiled into ``llm.canonical.AiConfig``.

Called by the gateway's snapshot loader in a worker thread (ORM allowed, Django set up). A
fixed number of queries whatever the number of routes, models and keys. Credentials are
decrypted here and live only in worker memory afterwards.

What is served:
- a route of an AI API whose latest non-draft version (by publication time) is published,
  deprecated or retired, with that version's state and deprecation headers; routes of an
  API with only drafts are not served at all (the alias is unknown);
- its weighted targets and ordered fallbacks, leaving out models of disabled providers
  (a route whose every target is left out keeps ``targets=()``: the gateway answers 503,
  or goes straight to its fallbacks);
- per target, the provider's usable keys by priority: state enabled, or rate_limited whose
  rest is over, and not past their expiry. A credential no configured key decrypts is left
  out (logged without the secret) rather than failing the whole snapshot;
- every budget, by (scope, id).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime

from django.conf import settings
from django.db.models import Prefetch, Q
from django.utils import timezone

from gateway.snapshot import _deprecation_headers
from llm import crypto
from llm.canonical import AiConfig, AiRoute, BudgetPolicy, ModelTarget, PiiPolicy, Prices
from llm.canonical import ProviderKey as KeyEntry
from llm.models import Budget, KeyState, Model, ModelRoute, ProviderKey, RouteTarget, TargetRole, deny_list_entries
from portal.models import ApiVersion, VersionState
from portal.models.catalog import ApiKind

log = logging.getLogger(__name__)

SERVED_STATES = (VersionState.PUBLISHED, VersionState.DEPRECATED, VersionState.RETIRED)


def _usable_keys(now: datetime) -> dict[int, tuple[KeyEntry, ...]]:
    """Provider id -> its usable keys, decrypted, lowest priority number first."""
    usable = (
        ProviderKey.objects.filter(
            Q(state=KeyState.ENABLED) | Q(state=KeyState.RATE_LIMITED, state_until__lte=now),
            Q(expires_at__isnull=True) | Q(expires_at__gt=now),
        )
        .order_by("provider_id", "priority", "pk")
        .values_list("pk", "provider_id", "priority", "secret_ciphertext")
    )
    by_provider: dict[int, list[KeyEntry]] = defaultdict(list)
    for pk, provider_id, priority, ciphertext in usable:
        try:
            secret = crypto.decrypt(ciphertext)
        except crypto.CredentialUnreadable:
            log.error("provider key %s cannot be decrypted with the configured PORTICO_ENCRYPTION_KEY; left out", pk)
            continue
        by_provider[provider_id].append(KeyEntry(id=pk, secret=secret, priority=priority))
    return {provider_id: tuple(keys) for provider_id, keys in by_provider.items()}


def _target(model: Model, keys: dict[int, tuple[KeyEntry, ...]]) -> ModelTarget:
    provider = model.provider
    return ModelTarget(
        model_id=model.pk,
        provider_id=provider.pk,
        provider_kind=provider.kind,
        base_url=provider.base_url.rstrip("/"),
        upstream_model=model.upstream_name,
        keys=keys.get(provider.pk, ()),
        azure_api_version=provider.azure_api_version,
        prices=Prices(input=model.input_price, output=model.output_price, cached_input=model.cached_input_price),
        context_window=model.context_window,
        capabilities=frozenset(model.capabilities or ()),
    )


def _serving_versions() -> dict[int, ApiVersion]:
    """AI API id -> its latest non-draft version (the one whose state its routes take)."""
    latest: dict[int, ApiVersion] = {}
    versions = (
        ApiVersion.objects.filter(api__kind=ApiKind.AI, state__in=SERVED_STATES)
        .select_related("api")
        .order_by("api_id", "-published_at", "-pk")
    )
    for version in versions:
        latest.setdefault(version.api_id, version)
    return latest


def _budgets() -> dict[tuple[str, int], tuple[BudgetPolicy, ...]]:
    found: dict[tuple[str, int], list[BudgetPolicy]] = defaultdict(list)
    for budget in Budget.objects.order_by("pk"):
        scope_id = budget.scope_id
        if scope_id is None:  # the check constraint makes this impossible; never crash the snapshot on it
            continue
        found[(budget.scope, scope_id)].append(
            BudgetPolicy(
                scope=budget.scope,
                scope_id=scope_id,
                budget_id=budget.pk,
                period=budget.period,
                spend_limit_usd=budget.spend_limit_usd,
                tokens_per_minute=budget.tokens_per_minute,
                requests_per_minute=budget.requests_per_minute,
            )
        )
    return {key: tuple(policies) for key, policies in found.items()}


def build_ai_config(now: datetime | None = None) -> AiConfig:
    """Read the LLM configuration from the database (six queries, whatever its size)."""
    now = now or timezone.now()
    portal_url = settings.PORTICO_PORTAL_URL.rstrip("/")
    versions = _serving_versions()
    keys = _usable_keys(now)
    members = Prefetch(
        "targets",
        queryset=RouteTarget.objects.select_related("model__provider").order_by("role", "position", "pk"),
    )
    targets_by_model: dict[int, ModelTarget] = {}  # one object per model, shared by every route using it

    def target_of(model: Model) -> ModelTarget:
        if model.pk not in targets_by_model:
            targets_by_model[model.pk] = _target(model, keys)
        return targets_by_model[model.pk]

    routes: dict[str, AiRoute] = {}
    for route in ModelRoute.objects.filter(api_id__in=list(versions)).prefetch_related(members).order_by("alias"):
        version = versions[route.api_id]
        weighted: list[tuple[int, ModelTarget]] = []
        fallbacks: list[ModelTarget] = []
        for member in route.targets.all():
            if not member.model.provider.enabled:
                continue
            if member.role == TargetRole.TARGET:
                weighted.append((member.weight, target_of(member.model)))
            else:
                fallbacks.append(target_of(member.model))
        routes[route.alias] = AiRoute(
            alias=route.alias,
            route_id=route.pk,
            api_id=route.api_id,
            version_id=version.pk,
            state=version.state,
            targets=tuple(weighted),
            fallbacks=tuple(fallbacks),
            timeout_seconds=route.timeout_seconds,
            first_byte_timeout_seconds=route.first_byte_timeout_seconds,
            retries=route.retries,
            cache_ttl=route.cache_ttl_seconds,
            cache_nondeterministic=route.cache_nondeterministic,
            pii=PiiPolicy(
                mode=route.pii_mode,
                detectors=frozenset(route.pii_detectors or ()),
                deny=tuple(deny_list_entries(route.deny_list)),
            ),
            capture=route.capture,
            default_max_tokens=route.default_max_tokens,
            deprecation_headers=_deprecation_headers(version, portal_url),
        )
    return AiConfig(routes=routes, budgets=_budgets())
