"""The subscription state machine: pending -> approved | rejected; approved -> revoked.

Requests are idempotent: asking again while a request is pending or approved returns the
live subscription instead of creating a second one.
"""

from django.db import IntegrityError, transaction
from django.utils import timezone

from portal.models import Api, Application, Plan, Role, Subscription, SubscriptionState, VersionState
from portal.models.applications import LIVE_SUBSCRIPTION_STATES
from portal.services import audit
from portal.services.access import require_application, require_role
from portal.services.catalog import visible_apis
from portal.services.config_signal import publish_config_change
from portal.services.errors import IllegalTransition, InvalidInput, NotFound
from portal.services.notifications import notify_subscription_decision, notify_subscription_request
from portal.services.ownership import require_api_manager


def _live(application: Application, api: Api) -> Subscription | None:
    return Subscription.objects.filter(application=application, api=api, state__in=LIVE_SUBSCRIPTION_STATES).first()


def request_subscription(application: Application, api: Api, plan: Plan, actor) -> tuple[Subscription, bool]:
    """Subscribe an application to an API on a plan. Returns (subscription, created).

    Auto-approve plans become active at once; others wait for an administrator.
    """
    require_application(actor, application, Role.DEVELOPER)
    if not visible_apis(application.tenant).filter(pk=api.pk).exists():
        raise NotFound("No such API in the catalog.")
    if plan.api_id != api.pk or not plan.is_active:
        raise InvalidInput(f"The plan {plan.name!r} is not offered for {api.name}.")
    if not api.versions.filter(state=VersionState.PUBLISHED).exists():
        raise InvalidInput(f"{api.name} has no published version to subscribe to.")

    if existing := _live(application, api):
        return existing, False
    auto = not plan.requires_approval
    try:
        with transaction.atomic():
            subscription = Subscription.objects.create(
                application=application,
                api=api,
                plan=plan,
                state=SubscriptionState.APPROVED if auto else SubscriptionState.PENDING,
                requested_by=actor,
                decided_at=timezone.now() if auto else None,
                reason="Approved automatically: the plan needs no approval." if auto else "",
            )
            audit.record(
                actor,
                "subscription.requested",
                subscription,
                tenant=application.tenant,
                plan=plan.name,
                auto_approved=auto,
            )
            if auto:
                publish_config_change(f"subscription {subscription.pk} auto-approved")
            else:
                # Those who decide hear of it once it commits; an auto-approved request has
                # nothing to decide, so it mails nobody.
                notify_subscription_request(subscription)
    except IntegrityError:
        # Two concurrent clicks: the other request won the unique constraint; it is the answer.
        if existing := _live(application, api):
            return existing, False
        raise
    return subscription, True


def _decide(subscription: Subscription, actor, *, source: str, target: str, action: str, reason: str) -> Subscription:
    with transaction.atomic():
        sub = Subscription.objects.select_for_update().get(pk=subscription.pk)
        if sub.state != source:
            raise IllegalTransition(f"This subscription is {sub.state}; only a {source} one can be {target}.")
        sub.state = target
        sub.decided_by = actor
        sub.decided_at = timezone.now()
        sub.reason = reason
        sub.save(update_fields=["state", "decided_by", "decided_at", "reason"])
        audit.record(actor, action, sub, tenant=sub.application.tenant, reason=reason, previous_state=source)
        publish_config_change(f"subscription {sub.pk} {target}")
    return sub


def approve_subscription(subscription: Subscription, actor, reason: str = "") -> Subscription:
    require_api_manager(actor, subscription.api)  # staff, or an owner/admin of the API's team
    sub = _decide(
        subscription,
        actor,
        source=SubscriptionState.PENDING,
        target=SubscriptionState.APPROVED,
        action="subscription.approved",
        reason=reason.strip(),
    )
    notify_subscription_decision(sub)
    return sub


def reject_subscription(subscription: Subscription, actor, reason: str) -> Subscription:
    require_api_manager(actor, subscription.api)  # staff, or an owner/admin of the API's team
    if not reason or not reason.strip():
        raise InvalidInput("A rejection needs a reason: the developer will read it.")
    sub = _decide(
        subscription,
        actor,
        source=SubscriptionState.PENDING,
        target=SubscriptionState.REJECTED,
        action="subscription.rejected",
        reason=reason.strip(),
    )
    notify_subscription_decision(sub)
    return sub


def revoke_subscription(subscription: Subscription, actor, reason: str = "") -> Subscription:
    """Staff, or an admin of the subscribing tenant, can end an approved subscription."""
    if not getattr(actor, "is_staff", False):
        require_role(actor, subscription.application.tenant, Role.ADMIN)
    return _decide(
        subscription,
        actor,
        source=SubscriptionState.APPROVED,
        target=SubscriptionState.REVOKED,
        action="subscription.revoked",
        reason=reason.strip(),
    )
