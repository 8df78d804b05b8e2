"""Who may run an API: staff, and the owners and admins of the team that owns it.

Kept apart from ``provider`` so that ``lifecycle`` and ``subscriptions`` can check it
without importing the provider services (which import them).
"""

from typing import Any

from portal.models import Api, Membership, Role, Tenant
from portal.services.access import require_role


def is_staff(actor: Any) -> bool:
    return bool(getattr(actor, "is_authenticated", False) and getattr(actor, "is_staff", False))


def require_team_manager(actor: Any, tenant: Tenant) -> Membership | None:
    """Staff pass (None); otherwise the actor's owner/admin membership of ``tenant``.

    A non-member gets NotFound (the team's APIs stay invisible), a developer or viewer
    PermissionDenied.
    """
    if is_staff(actor):
        return None
    return require_role(actor, tenant, Role.ADMIN)


def require_api_manager(actor: Any, api: Api) -> Membership | None:
    """Staff, or an owner/admin of the team that owns ``api``."""
    return require_team_manager(actor, api.owner)
