"""The LLM control plane's rules: providers and their key pools, models, routes, budgets.

Every function follows the portal's service template: staff holding the Django permission for
the change (``llm.add_provider``, ``llm.change_modelroute``, ``llm.delete_budget``...: being staff
only opens the admin, so a view-only operator changes nothing), one transaction, the row
re-read with ``select_for_update`` where a decision depends on it, the model's own
validation (``full_clean``) turned into ``InvalidInput``, an ``AuditEvent`` per change
(never a secret in it), and ``publish_config_change`` so gateways reload once it commits.
Admin, REST API, seed and tests all call these.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeAlias, TypeVar

from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.db.models.deletion import ProtectedError
from django.utils import timezone

from llm import crypto
from llm.models import (
    CALL_CAPABILITIES,
    Budget,
    BudgetScope,
    KeyState,
    Model,
    ModelRoute,
    Provider,
    ProviderKey,
    RouteTarget,
    TargetRole,
)
from portal.models import ApiKey, Application, AuditAction, Tenant
from portal.models.catalog import Api, ApiKind
from portal.services import audit
from portal.services.access import Actor, require_staff
from portal.services.config_signal import publish_config_change
from portal.services.errors import InvalidInput

M = TypeVar("M", bound=models.Model)

SECRET_MAX = 4096
MAX_ROUTE_MODELS = 20  # targets + fallbacks: a longer chain is a mistake, and each costs a timeout


# -- helpers ------------------------------------------------------------------------------------


def _describe(error: ValidationError) -> str:
    if hasattr(error, "error_dict"):
        parts = []
        for field, errors in error.error_dict.items():
            text = " ".join(message for e in errors for message in e.messages)
            parts.append(text if field == "__all__" else f"{field}: {text}")
        return "; ".join(parts)
    return " ".join(error.messages)


def _validate(obj: models.Model, *, exclude: Iterable[str] = ()) -> None:
    try:
        obj.full_clean(exclude=list(exclude) or None)
    except ValidationError as error:
        raise InvalidInput(_describe(error)) from error


def _no_nul(value: Any) -> Any:
    # PostgreSQL refuses NUL in text; refuse it as input everywhere rather than answer 500 there.
    if isinstance(value, str) and "\x00" in value:
        raise InvalidInput("Text may not contain NUL characters.")
    return value


def _apply(obj: models.Model, changes: Mapping[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    """Set the allowed fields; return what changed (field -> new value as text, for audit)."""
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise InvalidInput(f"Cannot change {', '.join(unknown)} here; changeable: {', '.join(sorted(allowed))}.")
    changed = {}
    for field, value in changes.items():
        _no_nul(value)
        if getattr(obj, field) != value:
            setattr(obj, field, value)
            changed[field] = value if isinstance(value, bool | int | list) or value is None else str(value)
    return changed


def _save(obj: M, *, update_fields: Iterable[str] | None = None) -> M:
    try:
        with transaction.atomic():  # a savepoint: a constraint violation must not poison the caller's transaction
            obj.save(update_fields=list(update_fields) if update_fields is not None else None)
    except IntegrityError as error:
        # full_clean checked uniqueness; a concurrent writer can still win the race.
        raise InvalidInput(
            f"Another change conflicts with this one ({error.__class__.__name__}); try again."
        ) from error
    return obj


def _decimal_or_none(value: Any, what: str) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidInput(f"{what} is a number.")
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError) as error:
        raise InvalidInput(f"{what} is a number.") from error
    if not number.is_finite():
        raise InvalidInput(f"{what} is a finite number.")
    return number


def _delete(
    obj: models.Model, *, actor: Actor, action: AuditAction, tenant: Tenant | None = None, **details: Any
) -> None:
    with transaction.atomic():
        audit.record(actor, action, obj, tenant=tenant, **details)
        label = f"{obj._meta.label} {obj.pk}"
        try:
            with transaction.atomic():
                obj.delete()
        except ProtectedError as error:
            users = sorted({str(o) for o in error.protected_objects})[:5]
            raise InvalidInput(f"{obj} is still used by: {', '.join(users)}. Remove it from there first.") from error
        publish_config_change(f"{label} deleted")


# -- providers ------------------------------------------------------------------------------------

PROVIDER_FIELDS = frozenset({"name", "kind", "base_url", "azure_api_version", "enabled"})


def create_provider(
    *,
    actor: Actor,
    name: str,
    kind: str,
    base_url: str = "",
    azure_api_version: str = "",
    enabled: bool = True,
) -> Provider:
    require_staff(actor, "llm.add_provider")
    provider = Provider(
        name=_no_nul(name or "").strip(),
        kind=kind,
        base_url=_no_nul(base_url or "").strip(),
        azure_api_version=_no_nul(azure_api_version or "").strip(),
        enabled=enabled,
    )
    _validate(provider)
    with transaction.atomic():
        _save(provider)
        audit.record(actor, AuditAction.LLM_PROVIDER_CREATED, provider, kind=provider.kind, base_url=provider.base_url)
        publish_config_change(f"llm provider {provider.pk} created")
    return provider


def update_provider(provider: Provider, *, actor: Actor, **changes: Any) -> Provider:
    require_staff(actor, "llm.change_provider")
    for field in ("name", "base_url", "azure_api_version"):
        if isinstance(changes.get(field), str):
            changes[field] = changes[field].strip()
    with transaction.atomic():
        provider = Provider.objects.select_for_update().get(pk=provider.pk)
        new_kind = "kind" in changes and changes["kind"] != provider.kind
        if new_kind and (provider.models.exists() or provider.keys.exists()):
            raise InvalidInput("A provider with models or keys keeps its kind; create a new provider instead.")
        changed = _apply(provider, changes, PROVIDER_FIELDS)
        _validate(provider)
        _save(provider)
        audit.record(actor, AuditAction.LLM_PROVIDER_UPDATED, provider, changed=changed)
        publish_config_change(f"llm provider {provider.pk} updated")
    return provider


def delete_provider(provider: Provider, *, actor: Actor) -> None:
    require_staff(actor, "llm.delete_provider")
    _delete(provider, actor=actor, action=AuditAction.LLM_PROVIDER_DELETED, name=provider.name)


# -- the key pool ---------------------------------------------------------------------------------

KEY_FIELDS = frozenset({"label", "priority", "expires_at"})


def _clean_secret(secret: Any) -> str:
    if not isinstance(secret, str):
        raise InvalidInput("A credential is text.")
    cleaned = secret.strip()
    if not cleaned:
        raise InvalidInput("A key needs its secret.")
    if len(cleaned) > SECRET_MAX:
        raise InvalidInput(f"A credential has at most {SECRET_MAX} characters.")
    # It goes into an HTTP header upstream: a space, CR/LF or non-ASCII byte would break the
    # request or smuggle another header into it.
    if any(not 0x21 <= ord(c) <= 0x7E for c in cleaned):
        raise InvalidInput("A credential is printable ASCII without spaces or line breaks.")
    return cleaned


def add_key(
    provider: Provider,
    *,
    actor: Actor,
    secret: str,
    label: str = "",
    priority: int = 0,
    expires_at: datetime | None = None,
) -> ProviderKey:
    """Add a credential to a provider's pool. The secret is encrypted and never returned."""
    require_staff(actor, "llm.add_providerkey")
    secret = _clean_secret(secret)
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("The expiry must be in the future.")
    key = ProviderKey(
        provider=provider,
        label=_no_nul(label or "").strip(),
        secret_ciphertext=crypto.encrypt(secret),
        last4=crypto.last4(secret),
        priority=priority,
        expires_at=expires_at,
    )
    _validate(key)
    with transaction.atomic():
        _save(key)
        audit.record(
            actor, AuditAction.LLM_KEY_ADDED, key, provider=provider.name, last4=key.last4, priority=key.priority
        )
        publish_config_change(f"llm key {key.pk} added")
    return key


def update_key(key: ProviderKey, *, actor: Actor, **changes: Any) -> ProviderKey:
    """Label, priority and expiry; the secret itself is write-once (add a new key to rotate)."""
    require_staff(actor, "llm.change_providerkey")
    if "secret" in changes:
        raise InvalidInput("A key's secret cannot be changed; add a new key and delete this one.")
    if isinstance(changes.get("label"), str):
        changes["label"] = changes["label"].strip()
    with transaction.atomic():
        key = ProviderKey.objects.select_for_update().select_related("provider").get(pk=key.pk)
        changed = _apply(key, changes, KEY_FIELDS)
        _validate(key)
        _save(key)
        audit.record(actor, AuditAction.LLM_KEY_UPDATED, key, changed=changed)
        publish_config_change(f"llm key {key.pk} updated")
    return key


KEY_STATE_ACTIONS = {
    KeyState.ENABLED: AuditAction.LLM_KEY_ENABLED,
    KeyState.DISABLED: AuditAction.LLM_KEY_DISABLED,
    KeyState.RATE_LIMITED: AuditAction.LLM_KEY_RATE_LIMITED,
    KeyState.EXHAUSTED: AuditAction.LLM_KEY_EXHAUSTED,
    KeyState.EXPIRED: AuditAction.LLM_KEY_EXPIRED,
}


def set_key_state(
    key: ProviderKey, *, actor: Actor, state: str, until: datetime | None = None, reason: str = ""
) -> ProviderKey:
    require_staff(actor, "llm.change_providerkey")
    if state not in KeyState.values:
        raise InvalidInput(f"Unknown key state {state!r}; use one of: {', '.join(KeyState.values)}.")
    if state == KeyState.RATE_LIMITED and (until is None or until <= timezone.now()):
        raise InvalidInput("A rate-limited key needs a time in the future when it may be used again.")
    with transaction.atomic():
        key = ProviderKey.objects.select_for_update().select_related("provider").get(pk=key.pk)
        previous = key.state
        key.state = state
        key.state_until = until if state == KeyState.RATE_LIMITED else None
        _validate(key)
        _save(key, update_fields=["state", "state_until", "updated_at"])
        audit.record(actor, KEY_STATE_ACTIONS[KeyState(state)], key, previous_state=previous, reason=_no_nul(reason))
        publish_config_change(f"llm key {key.pk} {state}")
    return key


def disable_key(key: ProviderKey, *, actor: Actor, reason: str = "") -> ProviderKey:
    return set_key_state(key, actor=actor, state=KeyState.DISABLED, reason=reason)


def enable_key(key: ProviderKey, *, actor: Actor) -> ProviderKey:
    return set_key_state(key, actor=actor, state=KeyState.ENABLED)


def delete_key(key: ProviderKey, *, actor: Actor) -> None:
    require_staff(actor, "llm.delete_providerkey")
    _delete(key, actor=actor, action=AuditAction.LLM_KEY_DELETED, provider=key.provider.name, last4=key.last4)


def reencrypt_keys(*, actor: Actor | None = None) -> int:
    """Re-encrypt every stored credential under the first configured key (after rotation).
    Returns how many rows changed; raises CredentialUnreadable naming none of the secrets."""
    count = 0
    with transaction.atomic():
        for key in ProviderKey.objects.select_for_update().order_by("pk"):
            fresh = crypto.reencrypt(key.secret_ciphertext)
            ProviderKey.objects.filter(pk=key.pk).update(secret_ciphertext=fresh)
            count += 1
        if count:
            publish_config_change("llm keys re-encrypted")
    return count


# -- models ---------------------------------------------------------------------------------------

MODEL_FIELDS = frozenset(
    {
        "upstream_name",
        "display_name",
        "input_price",
        "output_price",
        "cached_input_price",
        "context_window",
        "capabilities",
    }
)
PRICE_FIELDS = ("input_price", "output_price", "cached_input_price")


def create_model(
    *,
    actor: Actor,
    provider: Provider,
    upstream_name: str,
    display_name: str = "",
    input_price: Decimal | None = None,
    output_price: Decimal | None = None,
    cached_input_price: Decimal | None = None,
    context_window: int | None = None,
    capabilities: Sequence[str] | None = None,
) -> Model:
    require_staff(actor, "llm.add_model")
    model = Model(
        provider=provider,
        upstream_name=_no_nul(upstream_name or "").strip(),
        display_name=_no_nul(display_name or "").strip(),
        input_price=_decimal_or_none(input_price, "The input price"),
        output_price=_decimal_or_none(output_price, "The output price"),
        cached_input_price=_decimal_or_none(cached_input_price, "The cached input price"),
        context_window=context_window,
        capabilities=list(capabilities) if capabilities is not None else ["chat"],
    )
    _validate(model)
    with transaction.atomic():
        _save(model)
        audit.record(
            actor, AuditAction.LLM_MODEL_CREATED, model, provider=provider.name, upstream_name=model.upstream_name
        )
        publish_config_change(f"llm model {model.pk} created")
    return model


def update_model(model: Model, *, actor: Actor, **changes: Any) -> Model:
    require_staff(actor, "llm.change_model")
    for field in PRICE_FIELDS:
        if field in changes:
            changes[field] = _decimal_or_none(changes[field], field.replace("_", " "))
    if "capabilities" in changes and changes["capabilities"] is not None:
        changes["capabilities"] = list(changes["capabilities"])
    with transaction.atomic():
        model = Model.objects.select_for_update().select_related("provider").get(pk=model.pk)
        changed = _apply(model, changes, MODEL_FIELDS)
        _validate(model)
        if "capabilities" in changed:
            # Every route this model serves must still agree on what kind of call it is.
            for route in ModelRoute.objects.filter(targets__model=model).distinct():
                members = [t.model if t.model_id != model.pk else model for t in route.targets.select_related("model")]
                _check_models_serve_one_kind(members)
        _save(model)
        audit.record(actor, AuditAction.LLM_MODEL_UPDATED, model, changed=changed)
        publish_config_change(f"llm model {model.pk} updated")
    return model


def delete_model(model: Model, *, actor: Actor) -> None:
    require_staff(actor, "llm.delete_model")
    _delete(model, actor=actor, action=AuditAction.LLM_MODEL_DELETED, upstream_name=model.upstream_name)


# -- routes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetSpec:
    """A weighted target of a route (weights are relative: 70 and 30 split 70/30)."""

    model: Model
    weight: int = 100


ROUTE_FIELDS = frozenset(
    {
        "alias",
        "api",
        "timeout_seconds",
        "first_byte_timeout_seconds",
        "retries",
        "cache_ttl_seconds",
        "cache_nondeterministic",
        "pii_mode",
        "pii_detectors",
        "deny_list",
        "capture",
        "default_max_tokens",
    }
)


def _check_models_serve_one_kind(members: Sequence[Model]) -> None:
    kinds = [set(m.capabilities or []) & CALL_CAPABILITIES for m in members]
    if kinds and not set.intersection(*kinds):
        raise InvalidInput(
            "A route's targets and fallbacks must serve the same kind of call (chat or embeddings): "
            + ", ".join(f"{m} serves {', '.join(sorted(k)) or 'neither'}" for m, k in zip(members, kinds, strict=True))
            + "."
        )


def validate_route_members(targets: Sequence[TargetSpec], fallbacks: Sequence[Model]) -> None:
    """The rules on a route's targets and fallback chain (shared with the admin's form)."""
    if not targets:
        raise InvalidInput("A route needs at least one target.")
    if len(targets) + len(fallbacks) > MAX_ROUTE_MODELS:
        raise InvalidInput(f"A route has at most {MAX_ROUTE_MODELS} targets and fallbacks together.")
    for spec in targets:
        if isinstance(spec.weight, bool) or not isinstance(spec.weight, int) or not 1 <= spec.weight <= 1_000_000:
            raise InvalidInput(f"Target {spec.model}: a weight is a whole number from 1 to 1000000.")
    target_ids = [spec.model.pk for spec in targets]
    if len(set(target_ids)) != len(target_ids):
        raise InvalidInput("Each model is a target of a route at most once; raise its weight instead.")
    fallback_ids = [model.pk for model in fallbacks]
    if len(set(fallback_ids)) != len(fallback_ids):
        raise InvalidInput("Each model appears in a route's fallback chain at most once.")
    _check_models_serve_one_kind([spec.model for spec in targets] + list(fallbacks))


def _require_ai_api(api: Api) -> None:
    if api.kind != ApiKind.AI:
        raise InvalidInput(f"{api.name} is a REST API; a model route is published through an API of kind AI.")


def _write_members(route: ModelRoute, targets: Sequence[TargetSpec], fallbacks: Sequence[Model]) -> None:
    route.targets.all().delete()
    RouteTarget.objects.bulk_create(
        [RouteTarget(route=route, model=s.model, role=TargetRole.TARGET, weight=s.weight) for s in targets]
        + [
            RouteTarget(route=route, model=m, role=TargetRole.FALLBACK, position=position, weight=1)
            for position, m in enumerate(fallbacks)
        ]
    )


def _members_for_audit(targets: Sequence[TargetSpec], fallbacks: Sequence[Model]) -> dict[str, Any]:
    return {
        "targets": [{"model": s.model.pk, "weight": s.weight} for s in targets],
        "fallbacks": [m.pk for m in fallbacks],
    }


def create_route(
    *,
    actor: Actor,
    alias: str,
    api: Api,
    targets: Sequence[TargetSpec],
    fallbacks: Sequence[Model] = (),
    **settings: Any,
) -> ModelRoute:
    """A public alias over weighted targets and an ordered fallback chain. ``settings``:
    timeouts, retries, cache, PII policy, capture, default_max_tokens (see ModelRoute)."""
    require_staff(actor, "llm.add_modelroute")
    _require_ai_api(api)
    validate_route_members(targets, fallbacks)
    route = ModelRoute(alias=_no_nul(alias or "").strip(), api=api)
    _apply(route, settings, ROUTE_FIELDS - {"alias", "api"})
    _validate(route)
    with transaction.atomic():
        _save(route)
        _write_members(route, targets, fallbacks)
        audit.record(
            actor,
            AuditAction.LLM_ROUTE_CREATED,
            route,
            tenant=api.owner,
            api=api.slug,
            **_members_for_audit(targets, fallbacks),
        )
        publish_config_change(f"llm route {route.pk} created")
    return route


def update_route(
    route: ModelRoute,
    *,
    actor: Actor,
    targets: Sequence[TargetSpec] | None = None,
    fallbacks: Sequence[Model] | None = None,
    **changes: Any,
) -> ModelRoute:
    """Change settings; ``targets``/``fallbacks`` replace the lists when given (None: unchanged)."""
    require_staff(actor, "llm.change_modelroute")
    if isinstance(changes.get("alias"), str):
        changes["alias"] = changes["alias"].strip()
    with transaction.atomic():
        route = ModelRoute.objects.select_for_update().select_related("api").get(pk=route.pk)
        changed = _apply(route, changes, ROUTE_FIELDS)
        _require_ai_api(route.api)
        _validate(route)
        details: dict[str, Any] = {"changed": changed}
        if targets is not None or fallbacks is not None:
            current = list(route.targets.select_related("model"))
            if targets is None:
                targets = [TargetSpec(t.model, t.weight) for t in current if t.role == TargetRole.TARGET]
            if fallbacks is None:
                fallbacks = [t.model for t in current if t.role == TargetRole.FALLBACK]
            validate_route_members(targets, fallbacks)
            _write_members(route, targets, fallbacks)
            details.update(_members_for_audit(targets, fallbacks))
        _save(route)
        audit.record(actor, AuditAction.LLM_ROUTE_UPDATED, route, tenant=route.api.owner, **details)
        publish_config_change(f"llm route {route.pk} updated")
    return route


def delete_route(route: ModelRoute, *, actor: Actor) -> None:
    require_staff(actor, "llm.delete_modelroute")
    _delete(route, actor=actor, action=AuditAction.LLM_ROUTE_DELETED, tenant=route.api.owner, alias=route.alias)


# -- budgets --------------------------------------------------------------------------------------

BUDGET_FIELDS = frozenset({"period", "spend_limit_usd", "tokens_per_minute", "requests_per_minute"})
BudgetSubject: TypeAlias = ApiKey | Application | Tenant


def _scope_of(subject: BudgetSubject) -> tuple[str, dict[str, Any]]:
    if isinstance(subject, ApiKey):
        return BudgetScope.KEY, {"api_key": subject}
    if isinstance(subject, Application):
        return BudgetScope.APPLICATION, {"application": subject}
    if isinstance(subject, Tenant):
        return BudgetScope.TENANT, {"tenant": subject}
    raise InvalidInput("A budget belongs to an API key, an application or a tenant.")


def create_budget(
    *,
    actor: Actor,
    subject: BudgetSubject,
    period: str = "monthly",
    spend_limit_usd: Decimal | None = None,
    tokens_per_minute: int | None = None,
    requests_per_minute: int | None = None,
) -> Budget:
    """Limits for one API key, application or tenant (the scope follows the subject)."""
    require_staff(actor, "llm.add_budget")
    scope, subject_fields = _scope_of(subject)
    budget = Budget(
        scope=scope,
        period=period,
        spend_limit_usd=_decimal_or_none(spend_limit_usd, "The spend limit"),
        tokens_per_minute=tokens_per_minute,
        requests_per_minute=requests_per_minute,
        **subject_fields,
    )
    _validate(budget)
    with transaction.atomic():
        _save(budget)
        audit.record(
            actor,
            AuditAction.LLM_BUDGET_CREATED,
            budget,
            tenant=budget.owner_tenant,
            scope=scope,
            period=period,
            spend_limit_usd=None if budget.spend_limit_usd is None else str(budget.spend_limit_usd),
            tokens_per_minute=tokens_per_minute,
            requests_per_minute=requests_per_minute,
        )
        publish_config_change(f"llm budget {budget.pk} created")
    return budget


def update_budget(budget: Budget, *, actor: Actor, **changes: Any) -> Budget:
    """Period and limits; a budget's subject never changes (make another budget)."""
    require_staff(actor, "llm.change_budget")
    if "spend_limit_usd" in changes:
        changes["spend_limit_usd"] = _decimal_or_none(changes["spend_limit_usd"], "The spend limit")
    with transaction.atomic():
        budget = (
            Budget.objects.select_for_update()
            .select_related("api_key__application__tenant", "application__tenant", "tenant")
            .get(pk=budget.pk)
        )
        changed = _apply(budget, changes, BUDGET_FIELDS)
        _validate(budget)
        _save(budget)
        audit.record(actor, AuditAction.LLM_BUDGET_UPDATED, budget, tenant=budget.owner_tenant, changed=changed)
        publish_config_change(f"llm budget {budget.pk} updated")
    return budget


def delete_budget(budget: Budget, *, actor: Actor) -> None:
    require_staff(actor, "llm.delete_budget")
    _delete(budget, actor=actor, action=AuditAction.LLM_BUDGET_DELETED, tenant=budget.owner_tenant, scope=budget.scope)
