from django.conf import settings
from django.db import models

from portal.models.catalog import Api
from portal.models.plans import Plan
from portal.models.tenants import Tenant


class Application(models.Model):
    """A tenant's client program. Keys and subscriptions hang off it."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="applications")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="unique_app_name_per_tenant")]

    def __str__(self) -> str:
        return self.name


class SubscriptionState(models.TextChoices):
    PENDING = "pending", "Pending approval"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    REVOKED = "revoked", "Revoked"


LIVE_SUBSCRIPTION_STATES = (SubscriptionState.PENDING, SubscriptionState.APPROVED)


class Subscription(models.Model):
    """Application x API on a plan. Moves only through ``portal.services.subscriptions``."""

    application = models.ForeignKey(Application, on_delete=models.CASCADE, related_name="subscriptions")
    api = models.ForeignKey(Api, on_delete=models.CASCADE, related_name="subscriptions")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    state = models.CharField(max_length=10, choices=SubscriptionState.choices, editable=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_at = models.DateTimeField(auto_now_add=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    decided_at = models.DateTimeField(null=True, blank=True, editable=False)
    reason = models.TextField(blank=True, editable=False)

    class Meta:
        ordering = ["-requested_at"]
        constraints = [
            # At most one live (pending or approved) subscription per application and API:
            # clicking "subscribe" twice must not create two requests.
            models.UniqueConstraint(
                fields=["application", "api"],
                condition=models.Q(state__in=["pending", "approved"]),
                name="one_live_subscription_per_app_and_api",
            )
        ]

    def __str__(self) -> str:
        return f"{self.application} -> {self.api} ({self.plan.name}, {self.state})"

    @property
    def tenant(self) -> Tenant:
        return self.application.tenant
