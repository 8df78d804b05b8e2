"""Whose objects a REST caller may see: only their tenants'. Everything else is 404."""

from rest_framework import permissions

from portal.models import Membership, Tenant
from portal.services.errors import InvalidInput, NotFound


def member_tenant_ids(user) -> list[int]:
    if not getattr(user, "is_authenticated", False):
        return []
    return list(Membership.objects.filter(user=user).values_list("tenant_id", flat=True))


def chosen_tenant(user, slug: str | None) -> Tenant:
    """The tenant a new object goes to: the one named, or the caller's only one.

    With several teams and no name we refuse rather than guess where an application lands.
    """
    memberships = Membership.objects.filter(user=user).select_related("tenant").order_by("tenant__slug")
    if slug:
        found = memberships.filter(tenant__slug=slug).first()
        if found is None:
            raise NotFound(f"You are not a member of a team {slug!r}.")
        return found.tenant
    teams = [m.tenant for m in memberships]
    if not teams:
        raise NotFound("You belong to no team.")
    if len(teams) > 1:
        raise InvalidInput(f"You belong to several teams; say which in 'tenant': {', '.join(t.slug for t in teams)}.")
    return teams[0]


class IsStaff(permissions.BasePermission):
    message = "Only Portico administrators may do this."

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)
