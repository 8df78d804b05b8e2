"""A tenant's client applications: create, rename/describe, delete.

Developers create and edit; deleting takes an admin because it silently stops every key of
the application at the gateway.
"""

from django.db import transaction

from portal.models import Application, Role, Tenant
from portal.services import audit
from portal.services.access import require_application, require_role
from portal.services.config_signal import publish_config_change
from portal.services.errors import InvalidInput

NAME_MAX = Application._meta.get_field("name").max_length


def _clean_name(tenant: Tenant, name: str, *, exclude_pk=None) -> str:
    name = (name or "").strip()
    if not name:
        raise InvalidInput("An application needs a name.")
    if len(name) > NAME_MAX:
        raise InvalidInput(f"An application name has at most {NAME_MAX} characters.")
    clash = Application.objects.filter(tenant=tenant, name=name).exclude(pk=exclude_pk)
    if clash.exists():
        raise InvalidInput(f"Your team already has an application named {name!r}.")
    return name


def create_application(tenant: Tenant, actor, *, name: str, description: str = "") -> Application:
    require_role(actor, tenant, Role.DEVELOPER)
    with transaction.atomic():
        app = Application.objects.create(
            tenant=tenant, name=_clean_name(tenant, name), description=description.strip(), created_by=actor
        )
        audit.record(actor, "application.created", app, tenant=tenant)
    return app


def update_application(app: Application, actor, *, name: str | None = None, description: str | None = None):
    require_application(actor, app, Role.DEVELOPER)
    if name is not None:
        app.name = _clean_name(app.tenant, name, exclude_pk=app.pk)
    if description is not None:
        app.description = description.strip()
    with transaction.atomic():
        app.save(update_fields=["name", "description"])
        audit.record(actor, "application.updated", app, tenant=app.tenant)
    return app


def delete_application(app: Application, actor) -> None:
    """Delete the application with its subscriptions and keys; the gateway forgets them."""
    require_application(actor, app, Role.ADMIN)
    with transaction.atomic():
        audit.record(actor, "application.deleted", app, tenant=app.tenant, name=app.name)
        pk = app.pk
        app.delete()
        publish_config_change(f"application {pk} deleted")
