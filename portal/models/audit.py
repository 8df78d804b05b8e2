from django.conf import settings
from django.db import models

from portal.models.tenants import Tenant


class AuditAction(models.TextChoices):
    """Every action an AuditEvent may record: one list, so the admin's filter, reports and
    tests name the same things, and a typo in a service is a mypy error rather than a new
    action nobody searches for. Add a member (and a migration) for a new kind of change."""

    # Tenants and members
    TENANT_CREATED = "tenant.created"
    MEMBER_INVITED = "member.invited"
    MEMBER_INVITATION_WITHDRAWN = "member.invitation_withdrawn"
    MEMBER_JOINED = "member.joined"
    MEMBER_ROLE_CHANGED = "member.role_changed"
    MEMBER_REMOVED = "member.removed"
    # Personal access tokens
    TOKEN_CREATED = "token.created"  # noqa: S105 - an action name, not a secret
    TOKEN_REVOKED = "token.revoked"  # noqa: S105
    # Applications, keys, subscriptions
    APPLICATION_CREATED = "application.created"
    APPLICATION_UPDATED = "application.updated"
    APPLICATION_DELETED = "application.deleted"
    KEY_CREATED = "key.created"
    KEY_ROTATED = "key.rotated"
    KEY_REVOKED = "key.revoked"
    KEY_DELETED = "key.deleted"
    SUBSCRIPTION_REQUESTED = "subscription.requested"
    SUBSCRIPTION_APPROVED = "subscription.approved"
    SUBSCRIPTION_REJECTED = "subscription.rejected"
    SUBSCRIPTION_REVOKED = "subscription.revoked"
    SUBSCRIPTION_DELETED = "subscription.deleted"
    # The catalog: APIs, versions and their lifecycle, upstream targets, plans
    API_CREATED = "api.created"
    API_UPDATED = "api.updated"
    API_DELETED = "api.deleted"
    VERSION_CREATED = "version.created"
    VERSION_UPDATED = "version.updated"
    VERSION_DELETED = "version.deleted"
    VERSION_PUBLISHED = "version.published"
    VERSION_DEPRECATED = "version.deprecated"
    VERSION_RETIRED = "version.retired"
    TARGET_CREATED = "target.created"
    TARGET_UPDATED = "target.updated"
    TARGET_DELETED = "target.deleted"
    PLAN_CREATED = "plan.created"
    PLAN_UPDATED = "plan.updated"
    PLAN_DELETED = "plan.deleted"
    # Prompt APIs (llm.prompt_services)
    PROMPT_API_CREATED = "prompt_api.created"
    PROMPT_API_UPDATED = "prompt_api.updated"
    PROMPT_VERSION_CREATED = "prompt_version.created"
    PROMPT_UPDATED = "prompt.updated"
    # The LLM gateway's configuration (llm.services)
    LLM_PROVIDER_CREATED = "llm.provider.created"
    LLM_PROVIDER_UPDATED = "llm.provider.updated"
    LLM_PROVIDER_DELETED = "llm.provider.deleted"
    LLM_KEY_ADDED = "llm.key.added"
    LLM_KEY_UPDATED = "llm.key.updated"
    LLM_KEY_DELETED = "llm.key.deleted"
    LLM_KEY_ENABLED = "llm.key.enabled"
    LLM_KEY_DISABLED = "llm.key.disabled"
    LLM_KEY_RATE_LIMITED = "llm.key.rate_limited"
    LLM_KEY_EXHAUSTED = "llm.key.exhausted"
    LLM_KEY_EXPIRED = "llm.key.expired"
    LLM_MODEL_CREATED = "llm.model.created"
    LLM_MODEL_UPDATED = "llm.model.updated"
    LLM_MODEL_DELETED = "llm.model.deleted"
    LLM_ROUTE_CREATED = "llm.route.created"
    LLM_ROUTE_UPDATED = "llm.route.updated"
    LLM_ROUTE_DELETED = "llm.route.deleted"
    LLM_BUDGET_CREATED = "llm.budget.created"
    LLM_BUDGET_UPDATED = "llm.budget.updated"
    LLM_BUDGET_DELETED = "llm.budget.deleted"
    # Analytics alert rules (analytics.alerts)
    ALERT_RULE_CREATED = "alert_rule.created"
    ALERT_RULE_UPDATED = "alert_rule.updated"
    ALERT_RULE_SECRET_RENEWED = "alert_rule.secret_renewed"  # noqa: S105
    ALERT_RULE_DELETED = "alert_rule.deleted"


class AuditEvent(models.Model):
    """An append-only record of who did what to which object, when and why."""

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=60, db_index=True, choices=AuditAction.choices)
    object_type = models.CharField(max_length=60)
    object_id = models.CharField(max_length=40)
    object_repr = models.CharField(max_length=200)
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor} {self.action} {self.object_repr}"
