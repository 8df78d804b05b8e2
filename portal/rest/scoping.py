"""Whose objects a REST caller may see: only their tenants'. Everything else is 404."""

from typing import Any

from django.http import QueryDict
from rest_framework import permissions
from rest_framework.request import Request

from portal.models import Membership, Tenant
from portal.services.access import Actor, person
from portal.services.errors import InvalidInput, NotFound


def member_tenant_ids(user: Actor | None) -> list[int]:
    found = person(user)
    if found is None:
        return []
    return list(Membership.objects.filter(user=found).values_list("tenant_id", flat=True))


def chosen_tenant(user: Actor, slug: str | None) -> Tenant:
    """The tenant a new object goes to: the one named, or the caller's only one.

    With several teams and no name we refuse rather than guess where an application lands.
    """
    memberships = Membership.objects.filter(user=person(user)).select_related("tenant").order_by("tenant__slug")
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

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)


# Object ids in paths: digits that fit a 64-bit integer; anything else is a 404 from the router.
ID_PATTERN = r"[0-9]{1,18}"


def id_or_none(value: str | None) -> int | None:
    """A query-string id as an int, or None when it cannot be one (so it matches nothing)."""
    if value is None or not (value.isascii() and value.isdigit()) or len(value) > 18:  # "²" is a digit to str
        return None
    return int(value)


def id_list(value: str | None) -> list[int]:
    """A query-string id as a one-item list for an ``__in`` filter, or [] (matching nothing)
    when it cannot be an id."""
    found = id_or_none(value)
    return [] if found is None else [found]


def text_param(params: QueryDict, name: str, default: str = "") -> str:
    """A query-string text, without NUL characters (PostgreSQL refuses them in any string)."""
    return str(params.get(name, default)).replace("\x00", "")
