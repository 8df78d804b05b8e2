from portal.models.applications import Application, Subscription, SubscriptionState
from portal.models.audit import AuditAction, AuditEvent
from portal.models.catalog import (
    Api,
    ApiVersion,
    LoadBalancing,
    Tag,
    UpstreamTarget,
    VersionState,
    Visibility,
)
from portal.models.keys import ApiKey
from portal.models.plans import Plan
from portal.models.tenants import Membership, Role, Tenant
from portal.models.tokens import Invitation, PersonalAccessToken

__all__ = [
    "Api",
    "ApiKey",
    "ApiVersion",
    "Application",
    "AuditAction",
    "AuditEvent",
    "LoadBalancing",
    "Invitation",
    "Membership",
    "PersonalAccessToken",
    "Plan",
    "Role",
    "Subscription",
    "SubscriptionState",
    "Tag",
    "Tenant",
    "UpstreamTarget",
    "VersionState",
    "Visibility",
]
