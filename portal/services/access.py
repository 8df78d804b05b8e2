"""Who may do what in a tenant. Outsiders get NotFound, never a hint that the object exists."""

from __future__ import annotations

from typing import TypeAlias

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db.models import QuerySet

from portal.models import Application, Membership, Role, Tenant
from portal.services.errors import NotFound, PermissionDenied

# Whoever a service acts for: a signed-in person, or (refused by every check) nobody.
Actor: TypeAlias = AbstractBaseUser | AnonymousUser


def membership(user: Actor | None, tenant: Tenant) -> Membership | None:
    if not getattr(user, "is_authenticated", False):
        return None
    return Membership.objects.filter(user=user, tenant=tenant).first()


def require_role(user: Actor | None, tenant: Tenant, minimum: str = Role.VIEWER) -> Membership:
    """The user's membership in the tenant, if it grants at least ``minimum``.

    Raises NotFound when the user is not a member (the tenant's objects must stay invisible)
    and PermissionDenied when the user is a member with too small a role.
    """
    found = membership(user, tenant)
    if found is None:
        raise NotFound("No such object.")
    if not found.has_role(minimum):
        raise PermissionDenied(f"This needs the {Role(minimum).label.lower()} role or higher in {tenant.name}.")
    return found


def require_application(user: Actor | None, application: Application, minimum: str = Role.VIEWER) -> Application:
    require_role(user, application.tenant, minimum)
    return application


def tenants_of(user: Actor) -> QuerySet[Tenant]:
    return Tenant.objects.filter(memberships__user=user).distinct()


def is_staff(actor: Actor | None) -> bool:
    return bool(getattr(actor, "is_authenticated", False) and getattr(actor, "is_staff", False))


def staff_may(actor: Actor | None, permission: str) -> bool:
    """Whether ``actor`` is active staff holding the Django ``permission`` ("portal.change_subscription").

    Being staff only opens the admin; what a member of staff may change there is their
    permissions, so a view-only operator cannot approve, retire or delete anything."""
    return is_staff(actor) and bool(actor is not None and actor.has_perm(permission))


def require_staff(user: Actor | None, permission: str | None = None) -> None:
    """Staff, and when ``permission`` is named, staff holding it."""
    if not is_staff(user):
        raise PermissionDenied("Only Portico administrators may do this.")
    if permission is not None and not staff_may(user, permission):
        raise PermissionDenied(f"Your administrator account lacks the {permission} permission.")


def require_role_or_permission(
    actor: Actor | None, tenant: Tenant, minimum: str, *, permission: str
) -> Membership | None:
    """Staff holding ``permission`` pass (None); anyone else needs ``minimum`` in ``tenant``.

    Staff without the permission who are not members are told what they lack (they can see
    the object in the admin anyway), rather than NotFound."""
    if staff_may(actor, permission):
        return None
    try:
        return require_role(actor, tenant, minimum)
    except NotFound:
        if is_staff(actor):
            raise PermissionDenied(f"Your administrator account lacks the {permission} permission.") from None
        raise
