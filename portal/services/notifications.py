"""Emails to people about decisions that concern them. Sent after commit, never fatal."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse

from portal.models import Invitation, Membership, Role, Subscription, Tenant

log = logging.getLogger(__name__)


def owners_emails(tenant: Tenant) -> list[str]:
    return sorted(
        {
            m.user.email
            for m in Membership.objects.filter(tenant=tenant, role=Role.OWNER).select_related("user")
            if m.user.email
        }
    )


def notify_subscription_decision(subscription: Subscription) -> None:
    """Tell every owner of the application's tenant (and the requester) about a decision."""
    if not settings.PORTICO_NOTIFY_SUBSCRIPTION_DECISIONS:
        return
    recipients = set(owners_emails(subscription.application.tenant))
    if subscription.requested_by and subscription.requested_by.email:
        recipients.add(subscription.requested_by.email)
    if not recipients:
        return
    verdict = subscription.get_state_display().lower()
    subject = f"[Portico] {subscription.application.name}: access to {subscription.api.name} {verdict}"
    lines = [
        f"Your request for {subscription.application.name} to use {subscription.api.name} "
        f"on the {subscription.plan.name} plan was {verdict}.",
    ]
    if subscription.reason:
        lines.append(f"Reason: {subscription.reason}")
    body = "\n\n".join(lines)

    def send() -> None:
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, sorted(recipients))
        except Exception:  # a broken mail server must not undo or fail an admin decision
            log.exception("could not send the subscription decision email for %s", subscription.pk)

    transaction.on_commit(send)


def notify_subscription_request(subscription: Subscription) -> int:
    """Tell the people who decide a pending request about it, once it commits: the owners
    and admins of the team that owns the API (they may approve it) and active staff. The
    requester is left out (they know). Returns how many addresses it goes to."""
    if not settings.PORTICO_NOTIFY_SUBSCRIPTION_REQUESTS:
        return 0
    from django.contrib.auth import get_user_model

    api = subscription.api
    deciders = {
        m.user.email
        for m in Membership.objects.filter(tenant_id=api.owner_id, role__in=[Role.OWNER, Role.ADMIN]).select_related(
            "user"
        )
        if m.user.email and m.user.is_active
    }
    deciders |= set(
        get_user_model().objects.filter(is_staff=True, is_active=True).exclude(email="").values_list("email", flat=True)
    )
    requester = subscription.requested_by
    if requester is not None and requester.email:
        deciders.discard(requester.email)
    recipients = sorted(deciders)
    if not recipients:
        return 0
    application = " ".join(subscription.application.name.split())
    team = " ".join(subscription.application.tenant.name.split())
    api_name = " ".join(api.name.split())
    subject = f"[Portico] {application} ({team}) asks to use {api_name}"
    who = requester.username if requester is not None else "Someone"
    body = (
        f"{who} of {team} asks for {application} to use {api_name} on the {subscription.plan.name} plan.\n\n"
        f"The request waits for an owner or admin of the API's team, or Portico staff, to approve or reject it: "
        f"POST /api/v1/subscriptions/{subscription.pk}/approve/ or /reject/ (with a reason), or the admin site."
    )

    def send() -> None:
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
        except Exception:  # a broken mail server must not fail the developer's request
            log.exception("could not send the subscription request email for %s", subscription.pk)

    transaction.on_commit(send)
    return len(recipients)


def notify_tenant_owners(tenant: Tenant | None, subject: str, body: str) -> int:
    """E-mail every owner of ``tenant`` once the current transaction commits (a failure is
    logged, never raised). Returns how many addresses it goes to; callers check their own
    PORTICO_NOTIFY_... setting first."""
    recipients = owners_emails(tenant) if tenant is not None else []
    if not recipients:
        return 0

    def send() -> None:
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
        except Exception:  # a broken mail server must not fail the caller's work
            log.exception("could not send %r to the owners of tenant %s", subject, tenant.pk if tenant else None)

    transaction.on_commit(send)
    return len(recipients)


def send_invitation(invitation: Invitation, token: str) -> bool:
    """E-mail the invitation's link (the only place its token ever goes). Called once the
    invitation is committed (``tenants.invite_member`` commits it in a durable transaction
    first: the same moment ``on_commit`` would send it), but synchronously, because the
    caller needs the answer: it withdraws an invitation nobody could ever accept. Returns
    whether the mail server took the message; a failure is logged, never raised."""
    link = settings.PORTICO_PORTAL_URL.rstrip("/") + reverse("accept_invitation", args=[token])
    inviter = invitation.invited_by.username if invitation.invited_by else "Portico"
    team = " ".join(invitation.tenant.name.split())  # a name is one header line, whatever was typed
    subject = f"[Portico] {inviter} invites you to {team}"
    body = (
        f"Join {team} on Portico as {invitation.get_role_display().lower()}:\n\n{link}\n\n"
        "The link works once, for 7 days."
    )
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [invitation.email])
    except Exception:  # the mail server's trouble: the caller tells the inviter, never a 500
        log.exception("could not send the invitation email for invitation %s", invitation.pk)
        return False
    return True
