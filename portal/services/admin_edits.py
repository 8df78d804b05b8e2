"""Operators' plain edits in the Django admin, of the routable catalog: APIs, versions,
upstream targets and plans.

The admin's forms check shapes; these functions make the change the services' way: one
transaction, the row locked, staff holding the Django permission for it (add, change or
delete of that model: a view-only operator changes nothing), an audit event, and a config
change published on commit so the gateways serve the edit at once rather than at their
periodic full reload. Lifecycle moves and subscription decisions have their own services
(``lifecycle``, ``subscriptions``); key, application and subscription deletes are in
``keys``, ``applications`` and ``subscriptions``.

Staff keep the provider rules that protect what the gateways route (``provider.update_version``),
decided on the locked rows (docs/architecture.md, "What staff may edit in a version"):

- a published or deprecated version keeps its API, base path and host: clients call that
  address and subscriptions are to that API. Moving it is a new version at the new path,
  published, and the old one deprecated and retired;
- a retired version, and its upstream targets, do not change;
- a routed REST version keeps at least one enabled upstream target, and at most
  ``provider.MAX_TARGETS``; timeouts and cache TTL stay within ``provider.check_policy``'s caps;
- a prompt API's version has no upstream targets (its calls go to a model route), and its
  OpenAPI document is generated; an API's kind does not change to or from a prompt API.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import models, transaction

from portal.models import Api, ApiVersion, AuditAction, Plan, Tenant, UpstreamTarget, VersionState
from portal.models.catalog import ApiKind
from portal.services import audit
from portal.services.access import Actor, require_staff
from portal.services.config_signal import publish_config_change
from portal.services.errors import InvalidInput, NotFound
from portal.services.provider import MAX_TARGETS, VERSION_POLICY_FIELDS, check_policy

CatalogObject = Api | ApiVersion | Plan | UpstreamTarget

# created, updated, deleted
ACTIONS: dict[type[models.Model], tuple[AuditAction, AuditAction, AuditAction]] = {
    Api: (AuditAction.API_CREATED, AuditAction.API_UPDATED, AuditAction.API_DELETED),
    ApiVersion: (AuditAction.VERSION_CREATED, AuditAction.VERSION_UPDATED, AuditAction.VERSION_DELETED),
    Plan: (AuditAction.PLAN_CREATED, AuditAction.PLAN_UPDATED, AuditAction.PLAN_DELETED),
    UpstreamTarget: (AuditAction.TARGET_CREATED, AuditAction.TARGET_UPDATED, AuditAction.TARGET_DELETED),
}


def _actions(obj: models.Model) -> tuple[AuditAction, AuditAction, AuditAction]:
    try:
        return ACTIONS[type(obj)]
    except KeyError:
        raise InvalidInput(f"{obj._meta.verbose_name} is not edited through this service.") from None


def _permission(obj: models.Model, verb: str) -> str:
    return f"{obj._meta.app_label}.{verb}_{obj._meta.model_name}"


def tenant_of(obj: models.Model) -> Tenant | None:
    """The team that owns a catalog object, for the audit trail."""
    if isinstance(obj, Api):
        return obj.owner
    if isinstance(obj, ApiVersion | Plan):
        return obj.api.owner
    if isinstance(obj, UpstreamTarget):
        return obj.version.api.owner
    return None


def _lock(obj: models.Model) -> None:
    # Serialises this edit with any service changing the same row; a row deleted meanwhile
    # is NotFound rather than silently re-created by save().
    if not type(obj)._default_manager.select_for_update().filter(pk=obj.pk).exists():
        raise NotFound(f"This {obj._meta.verbose_name} was deleted meanwhile.")


# What a published or deprecated version is routed by: it keeps these (see the module's docstring).
ROUTED_BY = ("api", "base_path", "host")
_ROUTED_COLUMNS = {"api": "api_id", "base_path": "base_path", "host": "host"}  # compared without loading the API


def _api_rules(api: Api) -> None:
    """Before saving an edited API: a prompt API stays one and no other API becomes one (its
    versions are served from their prompt rows, which only the prompt services make)."""
    stored = Api.objects.get(pk=api.pk)
    if stored.kind != api.kind and ApiKind.PROMPT in (stored.kind, api.kind):
        raise InvalidInput("The kind of an API cannot change to or from a prompt API: create a new API.")


def _version_rules(version: ApiVersion) -> None:
    """Before saving an edited version: refuse what would silently re-route its callers."""
    stored = ApiVersion.objects.select_for_update().select_related("api").get(pk=version.pk)
    if stored.state == VersionState.RETIRED:
        raise InvalidInput("A retired version cannot change.")
    if stored.api.kind == ApiKind.PROMPT and stored.openapi != version.openapi:
        # As provider.update_version: generated from its schemas when it is published.
        raise InvalidInput("A prompt API's version document is generated from its schemas; it cannot be replaced.")
    if stored.state != VersionState.DRAFT:
        moved = [
            name for name, column in _ROUTED_COLUMNS.items() if getattr(stored, column) != getattr(version, column)
        ]
        if moved:
            raise InvalidInput(
                f"The {', '.join(name.replace('_', ' ') for name in moved)} of a {stored.state} version cannot change: "
                "clients call it. Create a new version at the new address, publish it, and deprecate this one."
            )
    check_policy({name: getattr(version, name) for name in VERSION_POLICY_FIELDS})


def _target_rules(target: UpstreamTarget) -> None:
    """Before saving or deleting a target: its version is locked, and must accept targets."""
    version = ApiVersion.objects.select_for_update().select_related("api").get(pk=target.version_id)
    if version.state == VersionState.RETIRED:
        raise InvalidInput("A retired version's upstream targets cannot change.")
    if version.api.kind == ApiKind.PROMPT:
        raise InvalidInput("A prompt API's version has no upstream targets: its calls go to a model route.")


def _check_routable(version_pk: int) -> None:
    """After a version's targets changed: a routed REST version still reaches an upstream."""
    version = ApiVersion.objects.select_related("api").get(pk=version_pk)
    targets = version.targets.all()
    if targets.count() > MAX_TARGETS:
        raise InvalidInput(f"A version has at most {MAX_TARGETS} upstream targets.")
    routed = version.state in (VersionState.PUBLISHED, VersionState.DEPRECATED)
    if routed and version.api.kind == ApiKind.REST and not targets.filter(enabled=True).exists():
        raise InvalidInput("A routed version needs at least one enabled upstream target.")


def _after(obj: models.Model) -> None:
    if isinstance(obj, UpstreamTarget):
        _check_routable(obj.version_id)


def _save(obj: models.Model, *, actor: Actor, changed: Sequence[str]) -> None:
    created_action, updated_action, _ = _actions(obj)
    adding = obj._state.adding
    require_staff(actor, _permission(obj, "add" if adding else "change"))
    if not adding:
        _lock(obj)
    if isinstance(obj, Api) and not adding:
        _api_rules(obj)
    if isinstance(obj, ApiVersion) and not adding:
        _version_rules(obj)
    if isinstance(obj, UpstreamTarget):
        _target_rules(obj)
    obj.save()
    audit.record(
        actor,
        created_action if adding else updated_action,
        obj,
        tenant=tenant_of(obj),
        changed=sorted(changed),
        via="admin",
    )
    publish_config_change(f"{obj._meta.label} {obj.pk} {'added' if adding else 'edited'} in admin")


def _delete(obj: models.Model, *, actor: Actor) -> None:
    _, _, deleted_action = _actions(obj)
    require_staff(actor, _permission(obj, "delete"))
    _lock(obj)
    if isinstance(obj, UpstreamTarget):
        _target_rules(obj)
    audit.record(actor, deleted_action, obj, tenant=tenant_of(obj), via="admin")
    label = f"{obj._meta.label} {obj.pk}"
    obj.delete()
    publish_config_change(f"{label} deleted in admin")


@transaction.atomic
def save_object(obj: models.Model, *, actor: Actor, changed: Sequence[str] = ()) -> models.Model:
    """Save an admin-edited (or admin-added) catalog object."""
    _save(obj, actor=actor, changed=changed)
    _after(obj)
    return obj


@transaction.atomic
def delete_object(obj: models.Model, *, actor: Actor) -> None:
    """Delete a catalog object (with what hangs on it: an API's versions, plans and
    subscriptions go with it)."""
    _delete(obj, actor=actor)
    _after(obj)


@transaction.atomic
def save_inline(
    *,
    actor: Actor,
    saved: Sequence[tuple[models.Model, Sequence[str]]],
    deleted: Sequence[models.Model],
) -> None:
    """An admin inline's rows in one go (a version's targets): each saved or deleted as
    above, the version's rules checked once all are written, so replacing its only target
    (delete one, add another) is one valid change rather than an invalid step."""
    for obj in deleted:
        _delete(obj, actor=actor)
    for obj, changed in saved:
        _save(obj, actor=actor, changed=changed)
    for obj in [*deleted, *(obj for obj, _ in saved)]:
        _after(obj)
