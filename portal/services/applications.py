"""A tenant's client applications: create, rename/describe, delete.

Developers create and edit; deleting takes an admin (or staff with ``portal.delete_application``)
because it silently stops every key of the application at the gateway.
"""

from __future__ import annotations

from django.db import transaction

from portal.models import Application, AuditAction, Role, Tenant
from portal.services import audit
from portal.services.access import Actor, person, require_application, require_role, require_role_or_permission
from portal.services.config_signal import publish_config_change
from portal.services.errors import InvalidInput, NotFound

NAME_MAX = Application._meta.get_field("name").max_length or 100


def _clean_name(tenant: Tenant, name: str, *, exclude_pk: int | None = None) -> str:
    name = (name or "").strip()
    if not name:
        raise InvalidInput("An application needs a name.")
    if len(name) > NAME_MAX:
        raise InvalidInput(f"An application name has at most {NAME_MAX} characters.")
    clash = Application.objects.filter(tenant=tenant, name=name)
    if exclude_pk is not None:
        clash = clash.exclude(pk=exclude_pk)
    if clash.exists():
        raise InvalidInput(f"Your team already has an application named {name!r}.")
    return name


def _locked(app: Application) -> Application:
    row = Application.objects.select_for_update().select_related("tenant").filter(pk=app.pk).first()
    if row is None:
        raise NotFound("No such application.")
    return row


@transaction.atomic
def create_application(tenant: Tenant, *, actor: Actor, name: str, description: str = "") -> Application:
    # The tenant's row serialises its applications' names: two "Shop" at once get one refusal.
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    require_role(actor, tenant, Role.DEVELOPER)
    app = Application.objects.create(
        tenant=tenant,
        name=_clean_name(tenant, name),
        description=description.strip(),
        created_by=person(actor),
    )
    audit.record(actor, AuditAction.APPLICATION_CREATED, app, tenant=tenant)
    return app


@transaction.atomic
def update_application(
    app: Application, *, actor: Actor, name: str | None = None, description: str | None = None
) -> Application:
    Tenant.objects.select_for_update().get(pk=app.tenant_id)  # names are unique per tenant
    row = _locked(app)
    require_application(actor, row, Role.DEVELOPER)
    if name is not None:
        row.name = _clean_name(row.tenant, name, exclude_pk=row.pk)
    if description is not None:
        row.description = description.strip()
    row.save(update_fields=["name", "description"])
    audit.record(actor, AuditAction.APPLICATION_UPDATED, row, tenant=row.tenant)
    return row


@transaction.atomic
def delete_application(app: Application, *, actor: Actor) -> None:
    """Delete the application with its subscriptions and keys; the gateway forgets them."""
    row = _locked(app)
    require_role_or_permission(actor, row.tenant, Role.ADMIN, permission="portal.delete_application")
    audit.record(actor, AuditAction.APPLICATION_DELETED, row, tenant=row.tenant, name=row.name)
    pk = row.pk
    row.delete()
    publish_config_change(f"application {pk} deleted")
