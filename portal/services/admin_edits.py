"""Operators' plain edits in the Django admin, of the routable catalog: APIs, versions,
upstream targets and plans.

The admin's forms check shapes; these functions make the change the services' way: one
transaction, the row locked, staff holding the Django permission for it (add, change or
delete of that model: a view-only operator changes nothing), an audit event, and a config
change published on commit so the gateways serve the edit at once rather than at their
periodic full reload. Lifecycle moves and subscription decisions have their own services
(``lifecycle``, ``subscriptions``); key, application and subscription deletes are in
``keys``, ``applications`` and ``subscriptions``.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import models, transaction

from portal.models import Api, ApiVersion, AuditAction, Plan, Tenant, UpstreamTarget
from portal.services import audit
from portal.services.access import Actor, require_staff
from portal.services.config_signal import publish_config_change
from portal.services.errors import InvalidInput, NotFound

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


@transaction.atomic
def save_object(obj: models.Model, *, actor: Actor, changed: Sequence[str] = ()) -> models.Model:
    """Save an admin-edited (or admin-added) catalog object."""
    created_action, updated_action, _ = _actions(obj)
    adding = obj._state.adding
    require_staff(actor, _permission(obj, "add" if adding else "change"))
    if not adding:
        _lock(obj)
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
    return obj


@transaction.atomic
def delete_object(obj: models.Model, *, actor: Actor) -> None:
    """Delete a catalog object (with what hangs on it: an API's versions, plans and
    subscriptions go with it)."""
    _, _, deleted_action = _actions(obj)
    require_staff(actor, _permission(obj, "delete"))
    _lock(obj)
    audit.record(actor, deleted_action, obj, tenant=tenant_of(obj), via="admin")
    label = f"{obj._meta.label} {obj.pk}"
    obj.delete()
    publish_config_change(f"{label} deleted in admin")
