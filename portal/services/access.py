"""Who may do what in a tenant. Outsiders get NotFound, never a hint that the object exists."""

from __future__ import annotations

from typing import TypeAlias

from django.contrib.auth.models import AnonymousUser, User
from django.db.models import QuerySet

from portal.models import Application, Membership, Role, Tenant
from portal.services.errors import NotFound, PermissionDenied

# Whoever a service acts for: a signed-in person, or (refused by every check) nobody.
# (AUTH_USER_MODEL is Django's User, which request.user is typed as.)
Actor: TypeAlias = User | AnonymousUser


def person(actor: Actor | None) -> User | None:
    """The actor as a stored user (for a foreign key or a lookup), or None for nobody."""
    return actor if isinstance(actor, User) and actor.pk is not None else None


def require_person(actor: Actor | None) -> User:
    """The signed-in person a service acts for, or PermissionDenied."""
    found = person(actor)
    if found is None:
        raise PermissionDenied("Sign in first.")
    return found


def membership(user: Actor | None, tenant: Tenant) -> Membership | None:
    found = person(user)
    if found is None:
        return None
    return Membership.objects.filter(user=found, tenant=tenant).first()


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
    return Tenant.objects.filter(memberships__user=person(user)).distinct()


def is_staff(actor: Actor | None) -> bool:
    return bool(getattr(actor, "is_authenticated", False) and getattr(actor, "is_staff", False))


def staff_may(actor: Actor | None, permission: str) -> bool:
    """Whether ``actor`` is active staff holding the Django ``permission`` ("portal.change_subscription").

    Being staff only opens the admin; what a member of staff may change there is their
    permissions, so a view-only operator cannot approve, retire or delete anything."""
    return is_staff(actor) and actor is not None and actor.has_perm(permission)


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
