"""The subscription state machine: pending -> approved | rejected; approved -> revoked.

Requests are idempotent: asking again while a request is pending or approved returns the
live subscription instead of creating a second one.

Every change: one transaction, the subscription (or, for a request, the application) row
locked before anything is decided, an audit event, e-mails and the gateways' config
change only once it commits.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from portal.models import (
    Api,
    Application,
    AuditAction,
    Plan,
    Role,
    Subscription,
    SubscriptionState,
    VersionState,
)
from portal.models.applications import LIVE_SUBSCRIPTION_STATES
from portal.services import audit
from portal.services.access import Actor, person, require_application, require_role_or_permission
from portal.services.catalog import visible_apis
from portal.services.config_signal import publish_config_change
from portal.services.errors import IllegalTransition, InvalidInput, NotFound
from portal.services.notifications import notify_subscription_decision, notify_subscription_request
from portal.services.ownership import require_api_manager

# Deciding on a subscription is changing it: staff need this permission (view-only may not).
PERMISSION = "portal.change_subscription"


def _live(application: Application, api: Api) -> Subscription | None:
    return Subscription.objects.filter(application=application, api=api, state__in=LIVE_SUBSCRIPTION_STATES).first()


def request_subscription(application: Application, api: Api, plan: Plan, *, actor: Actor) -> tuple[Subscription, bool]:
    """Subscribe an application to an API on a plan. Returns (subscription, created).

    Auto-approve plans become active at once; others wait for an administrator.
    """
    try:
        return _request(application, api, plan, actor=actor)
    except IntegrityError:
        # A concurrent request won the unique constraint (on a database without row locks);
        # it is the answer.
        if existing := _live(application, api):
            return existing, False
        raise


@transaction.atomic
def _request(application: Application, api: Api, plan: Plan, *, actor: Actor) -> tuple[Subscription, bool]:
    # The application's row serialises requests for it: two clicks see one another.
    application = Application.objects.select_for_update().select_related("tenant").get(pk=application.pk)
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
    subscription = Subscription.objects.create(
        application=application,
        api=api,
        plan=plan,
        state=SubscriptionState.APPROVED if auto else SubscriptionState.PENDING,
        requested_by=person(actor),
        decided_at=timezone.now() if auto else None,
        reason="Approved automatically: the plan needs no approval." if auto else "",
    )
    audit.record(
        actor,
        AuditAction.SUBSCRIPTION_REQUESTED,
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
    return subscription, True


def _locked(subscription: Subscription) -> Subscription:
    row = (
        Subscription.objects.select_for_update()
        .select_related("api", "api__owner", "application", "application__tenant", "plan")
        .filter(pk=subscription.pk)
        .first()
    )
    if row is None:
        raise NotFound("No such subscription.")
    return row


def _decide(
    sub: Subscription, actor: Actor, *, source: str, target: str, action: AuditAction, reason: str
) -> Subscription:
    """Called inside the transaction with ``sub`` locked and the actor's right checked."""
    if sub.state != source:
        raise IllegalTransition(f"This subscription is {sub.state}; only a {source} one can be {target}.")
    sub.state = target
    sub.decided_by = person(actor)
    sub.decided_at = timezone.now()
    sub.reason = reason
    sub.save(update_fields=["state", "decided_by", "decided_at", "reason"])
    audit.record(actor, action, sub, tenant=sub.application.tenant, reason=reason, previous_state=source)
    publish_config_change(f"subscription {sub.pk} {target}")
    return sub


@transaction.atomic
def approve_subscription(subscription: Subscription, *, actor: Actor, reason: str = "") -> Subscription:
    sub = _locked(subscription)
    require_api_manager(actor, sub.api, permission=PERMISSION)  # staff with it, or the API team's admins
    sub = _decide(
        sub,
        actor,
        source=SubscriptionState.PENDING,
        target=SubscriptionState.APPROVED,
        action=AuditAction.SUBSCRIPTION_APPROVED,
        reason=reason.strip(),
    )
    notify_subscription_decision(sub)  # sent on commit
    return sub


@transaction.atomic
def reject_subscription(subscription: Subscription, *, actor: Actor, reason: str) -> Subscription:
    sub = _locked(subscription)
    require_api_manager(actor, sub.api, permission=PERMISSION)  # staff with it, or the API team's admins
    if not reason or not reason.strip():
        raise InvalidInput("A rejection needs a reason: the developer will read it.")
    sub = _decide(
        sub,
        actor,
        source=SubscriptionState.PENDING,
        target=SubscriptionState.REJECTED,
        action=AuditAction.SUBSCRIPTION_REJECTED,
        reason=reason.strip(),
    )
    notify_subscription_decision(sub)  # sent on commit
    return sub


@transaction.atomic
def revoke_subscription(subscription: Subscription, *, actor: Actor, reason: str = "") -> Subscription:
    """Staff with the permission, or an admin of the subscribing tenant, can end an approved subscription."""
    sub = _locked(subscription)
    require_role_or_permission(actor, sub.application.tenant, Role.ADMIN, permission=PERMISSION)
    return _decide(
        sub,
        actor,
        source=SubscriptionState.APPROVED,
        target=SubscriptionState.REVOKED,
        action=AuditAction.SUBSCRIPTION_REVOKED,
        reason=reason.strip(),
    )


@transaction.atomic
def delete_subscription(subscription: Subscription, *, actor: Actor) -> None:
    """Delete a subscription outright (operators, in the admin): its application's keys stop
    reaching the API at once. Staff need ``portal.delete_subscription``."""
    sub = _locked(subscription)
    require_role_or_permission(actor, sub.application.tenant, Role.ADMIN, permission="portal.delete_subscription")
    audit.record(
        actor,
        AuditAction.SUBSCRIPTION_DELETED,
        sub,
        tenant=sub.application.tenant,
        api=sub.api.slug,
        application=sub.application.name,
        state=sub.state,
    )
    pk = sub.pk
    sub.delete()
    publish_config_change(f"subscription {pk} deleted")
