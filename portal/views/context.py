"""The current tenant of a signed-in person, kept in the session."""

from portal.models import Membership

SESSION_KEY = "portico_tenant_id"


def current_membership(request) -> Membership | None:
    if not request.user.is_authenticated:
        return None
    memberships = Membership.objects.filter(user=request.user).select_related("tenant")
    chosen = request.session.get(SESSION_KEY)
    found = next((m for m in memberships if m.tenant_id == chosen), None) if chosen else None
    return found or memberships.order_by("tenant__is_personal", "tenant__name").first()


def current_tenant(request):
    membership = current_membership(request)
    return membership.tenant if membership else None


def tenant_context(request):
    """Template context processor: the tenant switcher in the top bar."""
    if not request.user.is_authenticated:
        return {}
    membership = current_membership(request)
    return {
        "current_membership": membership,
        "my_memberships": Membership.objects.filter(user=request.user).select_related("tenant"),
    }
