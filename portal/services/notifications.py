"""Emails to people about decisions that concern them. Sent after commit, never fatal."""

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse

from portal.models import Invitation, Membership, Role, Subscription

log = logging.getLogger(__name__)


def owners_emails(tenant) -> list[str]:
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

    def send():
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, sorted(recipients))
        except Exception:  # a broken mail server must not undo or fail an admin decision
            log.exception("could not send the subscription decision email for %s", subscription.pk)

    transaction.on_commit(send)


def notify_tenant_owners(tenant, subject: str, body: str) -> int:
    """E-mail every owner of ``tenant`` once the current transaction commits (a failure is
    logged, never raised). Returns how many addresses it goes to; callers check their own
    PORTICO_NOTIFY_... setting first."""
    recipients = owners_emails(tenant) if tenant is not None else []
    if not recipients:
        return 0

    def send():
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
        except Exception:  # a broken mail server must not fail the caller's work
            log.exception("could not send %r to the owners of tenant %s", subject, tenant.pk)

    transaction.on_commit(send)
    return len(recipients)


def send_invitation(invitation: Invitation, token: str) -> bool:
    """E-mail the invitation's link (the only place its token ever goes). Called once the
    invitation is committed; returns whether the mail server took the message, so the
    caller can withdraw an invitation nobody could ever accept. A failure is logged."""
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
