"""Provider self-service: a team that owns an API runs it.

Owners and admins of the owning team (and staff, who keep every power) create APIs, their
versions with upstream targets and policy, and plans. Lifecycle moves go through
``portal.services.lifecycle`` and subscription decisions through
``portal.services.subscriptions``, whose checks accept the same people.

Every change: one transaction, the rows it decides on locked, an audit event, and a config
change published to the gateways on commit. Upstream targets a tenant sets must resolve to
global addresses only (``check_upstream_url``), unless staff listed the network in
PORTICO_UPSTREAM_ALLOWED_NETWORKS.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import yaml
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.db.models import QuerySet

from portal.models import Api, ApiVersion, AuditAction, Plan, Role, Subscription, SubscriptionState, Tenant
from portal.models.catalog import ApiKind, UpstreamTarget
from portal.services import audit
from portal.services.access import Actor, person, staff_may
from portal.services.basepaths import refuse_overlap_with_other_teams
from portal.services.config_signal import publish_config_change
from portal.services.errors import InvalidInput, NotFound
from portal.services.nul import holds_nul
from portal.services.ownership import require_api_manager, require_team_manager

MAX_OPENAPI_BYTES = 1024 * 1024
MAX_TARGETS = 16
MAX_TIMEOUT_MS = 300_000
MAX_CACHE_TTL_SECONDS = 7 * 86400


# The provider's changes are recorded under these shared actions (kept as a name for callers).
ProviderAction = AuditAction


@dataclass(frozen=True)
class TargetSpec:
    url: str
    weight: int = 100
    enabled: bool = True


VERSION_POLICY_FIELDS = (
    "load_balancing",
    "connect_timeout_ms",
    "read_timeout_ms",
    "total_timeout_ms",
    "retries",
    "cache_ttl_seconds",
)
PLAN_FIELDS = (
    "description",
    "requests_per_second",
    "requests_per_minute",
    "daily_quota",
    "monthly_quota",
    "requires_approval",
    "is_active",
)


# --- reading -------------------------------------------------------------------------------


def managed_tenants(actor: Actor) -> QuerySet[Tenant]:
    """The teams whose APIs ``actor`` runs (owner or admin)."""
    user = person(actor)
    if user is None:
        return Tenant.objects.none()
    return Tenant.objects.filter(memberships__user=user, memberships__role__in=[Role.OWNER, Role.ADMIN]).distinct()


def managed_apis(actor: Actor) -> QuerySet[Api]:
    """The APIs of the teams ``actor`` runs (for staff too: only their teams' here; the
    Django admin shows everything)."""
    return Api.objects.filter(owner__in=managed_tenants(actor)).select_related("owner")


def managed_api(actor: Actor, slug: str) -> Api:
    api = managed_apis(actor).filter(slug=slug).first()
    if api is None:
        raise NotFound("No such API among your team's APIs.")
    return api


def subscription_requests(actor: Actor) -> QuerySet[Subscription]:
    """Subscriptions to the APIs ``actor`` runs, pending ones first."""
    return (
        Subscription.objects.filter(api__in=managed_apis(actor))
        .select_related("api", "plan", "application", "application__tenant")
        .order_by(models.Case(models.When(state=SubscriptionState.PENDING, then=0), default=1), "-requested_at", "-pk")
    )


# --- input checks --------------------------------------------------------------------------


def _errors_text(error: ValidationError) -> str:
    if hasattr(error, "error_dict"):
        return "; ".join(
            f"{field.replace('_', ' ')}: {' '.join(messages)}" if field != "__all__" else " ".join(messages)
            for field, messages in error.message_dict.items()
        )
    return " ".join(error.messages)


def _full_clean(obj: models.Model, exclude: list[str] | None = None) -> None:
    try:
        obj.full_clean(exclude=exclude)
    except ValidationError as error:
        raise InvalidInput(_errors_text(error)) from error


class _AliasRefused(yaml.YAMLError):
    pass


class _PlainYamlLoader(yaml.SafeLoader):
    """Safe YAML without anchors and aliases: an alias costs nothing to write and is copied
    out in full when the document is stored as JSON ("billion laughs")."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise _AliasRefused("aliases are not accepted")
        return super().compose_node(parent, index)


def parse_openapi(raw: bytes | str) -> dict[str, Any]:
    """An uploaded OpenAPI document (JSON or YAML) as a dict, or InvalidInput saying why not.

    It must be an OpenAPI 3 object with ``openapi`` ("3.x") and a ``paths`` object, and at
    most MAX_OPENAPI_BYTES long.
    """
    data = raw.encode() if isinstance(raw, str) else raw
    if len(data) > MAX_OPENAPI_BYTES:
        raise InvalidInput(f"The OpenAPI document is larger than {MAX_OPENAPI_BYTES // 1024} KiB.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidInput("The OpenAPI document is not UTF-8 text.") from error
    if "\x00" in text:
        raise InvalidInput("The OpenAPI document contains NUL characters.")
    try:
        document = json.loads(text)
    except RecursionError as error:
        raise InvalidInput("The OpenAPI document nests too deeply.") from error
    except ValueError:
        try:
            document = yaml.load(text, Loader=_PlainYamlLoader)  # noqa: S506 - a SafeLoader without aliases
        except _AliasRefused as error:
            raise InvalidInput("YAML anchors and aliases are not accepted in an OpenAPI document.") from error
        except yaml.YAMLError as error:
            raise InvalidInput("The OpenAPI document is neither JSON nor YAML.") from error
        except RecursionError as error:
            raise InvalidInput("The OpenAPI document nests too deeply.") from error
    if not isinstance(document, dict):
        raise InvalidInput("The OpenAPI document must be an object.")
    version = document.get("openapi")
    if not isinstance(version, str) or not version.startswith("3."):
        raise InvalidInput('The document must be OpenAPI 3: an "openapi" field such as "3.0.3".')
    if not isinstance(document.get("paths"), dict):
        raise InvalidInput('The OpenAPI document needs a "paths" object.')
    try:
        # Stored as JSON: dates or other YAML-only values must become strings, keys too.
        result = dict(json.loads(json.dumps(document, default=str, ensure_ascii=False)))
    except (TypeError, ValueError, RecursionError) as error:
        raise InvalidInput("The OpenAPI document holds values JSON cannot represent.") from error
    if holds_nul(result):  # JSON writes it \u0000; PostgreSQL stores no NUL
        raise InvalidInput("The OpenAPI document contains NUL characters.")
    return result


def allowed_upstream_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(cidr, strict=False) for cidr in settings.PORTICO_UPSTREAM_ALLOWED_NETWORKS]


def address_refusal(address: str) -> str | None:
    """Why a tenant's upstream may not reach ``address`` (an IP), or None when it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in network for network in allowed_upstream_networks()):
        return None
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (cloud metadata lives there)"
    if str(ip) == "fd00:ec2::254":
        return "a cloud metadata address"
    if ip.is_unspecified or ip.is_multicast:
        return "an address that is not on the public internet"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved or not ip.is_global:
        return "an address that is not on the public internet"
    return None


def check_upstream_url(url: str) -> None:
    """Refuse an upstream URL whose host is, or resolves to, a non-global address.

    Every address the name resolves to is checked (a name with one public and one private
    address is refused). The gateway resolves again at every new connection and applies the
    same rule to targets saved with ``requires_public_address`` (``_create_target``).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"Upstream target {url!r} is not an http:// or https:// URL with a host.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:
        raise InvalidInput(f"Upstream target {url!r} has an invalid port.") from error
    try:
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError) as error:
        raise InvalidInput(f"The host of upstream target {url!r} does not resolve.") from error
    for info in infos:
        address = str(info[4][0])
        if reason := address_refusal(address):
            raise InvalidInput(
                f"Upstream target {url!r} resolves to {address}, {reason}; an administrator must allow that "
                "network first."
            )


def _clean_targets(targets: list[TargetSpec], actor: Actor) -> list[TargetSpec]:
    if len(targets) > MAX_TARGETS:
        raise InvalidInput(f"A version has at most {MAX_TARGETS} upstream targets.")
    for target in targets:
        probe = UpstreamTarget(url=target.url, weight=target.weight, enabled=target.enabled)
        _full_clean(probe, exclude=["version"])
        if not _trusted_with_internal_upstreams(actor):
            check_upstream_url(target.url)
    return targets


def _trusted_with_internal_upstreams(actor: Actor) -> bool:
    # Staff who may change targets are trusted with internal upstreams (demo, tests, on-prem),
    # at save time and, through requires_public_address, at the gateway's connect time alike.
    return staff_may(actor, "portal.change_upstreamtarget")


def _create_target(version: ApiVersion, target: TargetSpec, actor: Actor) -> UpstreamTarget:
    # A team's target keeps its save-time rule at connect time too: the gateway checks the
    # address it resolved on every new connection (a name can be repointed after saving).
    return UpstreamTarget.objects.create(
        version=version,
        url=target.url,
        weight=target.weight,
        enabled=target.enabled,
        requires_public_address=not _trusted_with_internal_upstreams(actor),
    )


def check_policy(fields: Mapping[str, Any]) -> None:
    """The caps on a version's timeouts and cache TTL (the admin's edits keep them too)."""
    for name in ("connect_timeout_ms", "read_timeout_ms", "total_timeout_ms"):
        if name in fields and fields[name] is not None and fields[name] > MAX_TIMEOUT_MS:
            raise InvalidInput(f"{name.replace('_', ' ')}: at most {MAX_TIMEOUT_MS} ms.")
    if fields.get("cache_ttl_seconds") is not None and fields["cache_ttl_seconds"] > MAX_CACHE_TTL_SECONDS:
        raise InvalidInput(f"cache ttl seconds: at most {MAX_CACHE_TTL_SECONDS}.")


# --- changes -------------------------------------------------------------------------------


# What a team may create, and how each creation is audited (AI APIs stay with staff: their
# routes are staff's).
_CREATED_BY_TEAMS = {ApiKind.REST: AuditAction.API_CREATED, ApiKind.PROMPT: AuditAction.PROMPT_API_CREATED}


def create_api(
    tenant: Tenant,
    *,
    actor: Actor,
    slug: str,
    name: str,
    description: str = "",
    visibility: str = "public",
    kind: ApiKind = ApiKind.REST,
) -> Api:
    """A new API of ``kind`` (REST, or prompt: ``llm.prompt_services``) owned by ``tenant``."""
    action = _CREATED_BY_TEAMS.get(kind)
    if action is None:
        raise InvalidInput("AI APIs are managed by Portico administrators.")
    with transaction.atomic():
        tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
        require_team_manager(actor, tenant, permission="portal.add_api")
        api = Api(
            owner=tenant,
            slug=slug,
            name=name.strip(),
            description=description,
            visibility=visibility,
            kind=kind,
        )
        _full_clean(api)
        try:
            with transaction.atomic():
                api.save()
        except IntegrityError as error:
            raise InvalidInput(f"An API with the slug {slug!r} exists; choose another.") from error
        audit.record(actor, action, api, tenant=tenant, slug=api.slug, visibility=visibility)
        # A new API has no published version yet: nothing routable changed, no config signal.
    return api


def create_version(
    api: Api,
    *,
    actor: Actor,
    version: str,
    base_path: str,
    targets: list[TargetSpec],
    openapi: dict[str, Any] | None = None,
    **policy: Any,
) -> ApiVersion:
    """A draft version with its upstream targets and policy (timeouts, retries, cache TTL)."""
    unknown = set(policy) - set(VERSION_POLICY_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown version settings: {', '.join(sorted(unknown))}.")
    with transaction.atomic():
        api = Api.objects.select_for_update().select_related("owner").get(pk=api.pk)
        require_api_manager(actor, api, permission="portal.add_apiversion")
        if api.kind != ApiKind.REST:
            raise InvalidInput("Versions of AI APIs are managed by Portico administrators.")
        check_policy(policy)
        _clean_targets(targets, actor)
        refuse_overlap_with_other_teams(base_path or None, owner_id=api.owner_id)
        row = ApiVersion(api=api, version=version.strip(), base_path=base_path or None, openapi=openapi or {})
        for name, value in policy.items():
            if value is not None:
                setattr(row, name, value)
        _full_clean(row)
        try:
            with transaction.atomic():
                row.save()
        except IntegrityError as error:
            raise InvalidInput("That version or base path is taken; choose another.") from error
        for target in targets:
            _create_target(row, target, actor)
        audit.record(
            actor,
            AuditAction.VERSION_CREATED,
            row,
            tenant=api.owner,
            base_path=row.base_path,
            targets=[t.url for t in targets],
        )
        # Drafts are not routed; publishing signals. Nothing to tell the gateway yet.
    return row


def update_version(
    version: ApiVersion,
    *,
    actor: Actor,
    targets: list[TargetSpec] | None = None,
    openapi: dict[str, Any] | None = None,
    base_path: str | None = None,
    **policy: Any,
) -> ApiVersion:
    """Change a version's targets (replaced as a whole when given), policy, document, or
    (while it is a draft) its base path. A routed version's change reaches the gateway."""
    unknown = set(policy) - set(VERSION_POLICY_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown version settings: {', '.join(sorted(unknown))}.")
    with transaction.atomic():
        row = ApiVersion.objects.select_for_update().select_related("api", "api__owner").get(pk=version.pk)
        require_api_manager(actor, row.api, permission="portal.change_apiversion")
        if row.state == "retired":
            raise InvalidInput("A retired version cannot change.")
        if row.api.kind == ApiKind.PROMPT and (targets is not None or openapi is not None):
            # Its document is generated from its schemas when it is published
            # (llm/prompt_openapi.py), and its calls go to a model route, not to upstreams.
            raise InvalidInput("A prompt API's version has no upstream targets and its document is generated.")
        check_policy(policy)
        changed: list[str] = []
        for name, value in policy.items():
            if value is not None and getattr(row, name) != value:
                setattr(row, name, value)
                changed.append(name)
        if base_path is not None and base_path != row.base_path:
            if row.state != "draft":
                raise InvalidInput("The base path of a published version cannot change: clients call it.")
            refuse_overlap_with_other_teams(base_path, owner_id=row.api.owner_id, version_id=row.pk)
            row.base_path = base_path
            changed.append("base_path")
        if openapi is not None:
            row.openapi = openapi
            changed.append("openapi")
        _full_clean(row)
        try:
            with transaction.atomic():
                row.save()
        except IntegrityError as error:
            raise InvalidInput("That base path is taken; choose another.") from error
        if targets is not None:
            _clean_targets(targets, actor)
            if row.state != "draft" and not any(t.enabled for t in targets):
                raise InvalidInput("A routed version needs at least one enabled upstream target.")
            row.targets.all().delete()
            for target in targets:
                _create_target(row, target, actor)
            changed.append("targets")
        audit.record(actor, AuditAction.VERSION_UPDATED, row, tenant=row.api.owner, changed=changed)
        if row.state != "draft":
            publish_config_change(f"version {row.pk} updated")
    return row


def create_plan(api: Api, *, actor: Actor, name: str, **fields: Any) -> Plan:
    unknown = set(fields) - set(PLAN_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown plan settings: {', '.join(sorted(unknown))}.")
    with transaction.atomic():
        api = Api.objects.select_for_update().select_related("owner").get(pk=api.pk)
        require_api_manager(actor, api, permission="portal.add_plan")
        plan = Plan(api=api, name=name.strip(), **fields)
        _full_clean(plan)
        try:
            with transaction.atomic():
                plan.save()
        except IntegrityError as error:
            raise InvalidInput(f"{api.name} has a plan named {name!r}.") from error
        audit.record(actor, AuditAction.PLAN_CREATED, plan, tenant=api.owner, **_plan_details(plan))
        publish_config_change(f"plan {plan.pk} created")
    return plan


def update_plan(plan: Plan, *, actor: Actor, **fields: Any) -> Plan:
    """Change a plan's limits (the gateway enforces the new ones at once) or close it to new
    subscriptions (``is_active=False``)."""
    unknown = set(fields) - set(PLAN_FIELDS) - {"name"}
    if unknown:
        raise InvalidInput(f"Unknown plan settings: {', '.join(sorted(unknown))}.")
    with transaction.atomic():
        row = Plan.objects.select_for_update().select_related("api", "api__owner").get(pk=plan.pk)
        require_api_manager(actor, row.api, permission="portal.change_plan")
        for name, value in fields.items():
            setattr(row, name, value.strip() if name == "name" else value)
        _full_clean(row)
        try:
            with transaction.atomic():
                row.save()
        except IntegrityError as error:
            raise InvalidInput(f"{row.api.name} has a plan with that name.") from error
        audit.record(actor, AuditAction.PLAN_UPDATED, row, tenant=row.api.owner, **_plan_details(row))
        publish_config_change(f"plan {row.pk} updated")
    return row


def _plan_details(plan: Plan) -> dict[str, Any]:
    return {name: getattr(plan, name) for name in ("name", *PLAN_FIELDS) if name != "description"}
