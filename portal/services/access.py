"""Who may do what in a tenant. Outsiders get NotFound, never a hint that the object exists."""

from portal.models import Application, Membership, Role, Tenant
from portal.services.errors import NotFound, PermissionDenied


def membership(user, tenant: Tenant) -> Membership | None:
    if not getattr(user, "is_authenticated", False):
        return None
    return Membership.objects.filter(user=user, tenant=tenant).first()


def require_role(user, tenant: Tenant, minimum: str = Role.VIEWER) -> Membership:
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


def require_application(user, application: Application, minimum: str = Role.VIEWER) -> Application:
    require_role(user, application.tenant, minimum)
    return application


def tenants_of(user):
    return Tenant.objects.filter(memberships__user=user).distinct()


def require_staff(user) -> None:
    if not (getattr(user, "is_authenticated", False) and user.is_staff):
        raise PermissionDenied("Only Portico administrators may do this.")
