"""Who may run an API: staff with the Django permission for the change, and the owners and
admins of the team that owns it.

Kept apart from ``provider`` so that ``lifecycle`` and ``subscriptions`` can check it
without importing the provider services (which import them).
"""

from __future__ import annotations

from portal.models import Api, Membership, Role, Tenant
from portal.services.access import Actor, is_staff, require_role_or_permission

__all__ = ["is_staff", "require_api_manager", "require_team_manager"]


def require_team_manager(actor: Actor | None, tenant: Tenant, *, permission: str) -> Membership | None:
    """Staff holding ``permission`` pass (None); otherwise the actor's owner/admin membership
    of ``tenant``.

    A non-member gets NotFound (the team's APIs stay invisible), a developer or viewer
    PermissionDenied, staff without the permission PermissionDenied.
    """
    return require_role_or_permission(actor, tenant, Role.ADMIN, permission=permission)


def require_api_manager(actor: Actor | None, api: Api, *, permission: str) -> Membership | None:
    """Staff holding ``permission``, or an owner/admin of the team that owns ``api``."""
    return require_team_manager(actor, api.owner, permission=permission)
