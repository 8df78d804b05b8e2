"""Tenants and their members.

Every change: one transaction, the team's row (and its memberships) locked before anything
is decided, an audit event; the invitation e-mail goes once the invitation is committed.

Staff edit memberships in the Django admin's tenant page through the same functions
(``change_role``, ``remove_member``, ``add_member``), holding ``portal.change_membership``,
``portal.delete_membership`` or ``portal.add_membership``: the rule that a team keeps an owner
holds for them too."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from portal.models import AuditAction, Invitation, Membership, Role, Tenant
from portal.services import audit, notifications
from portal.services.access import (
    Actor,
    person,
    require_person,
    require_role,
    require_role_or_permission,
    require_staff,
)
from portal.services.errors import IllegalTransition, InvalidInput, NotFound, PermissionDenied, ServiceError


def unique_tenant_slug(name: str) -> str:
    base = slugify(name)[:50] or "team"
    slug, n = base, 1
    while Tenant.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def create_tenant(name: str, *, actor: Actor, is_personal: bool = False) -> Tenant:
    """A new team, owned by ``actor``."""
    owner = require_person(actor)
    tenant = Tenant.objects.create(name=name, slug=unique_tenant_slug(name), is_personal=is_personal)
    Membership.objects.create(user=owner, tenant=tenant, role=Role.OWNER)
    audit.record(actor, AuditAction.TENANT_CREATED, tenant, tenant=tenant)
    return tenant


INVITATION_LIFETIME = timedelta(days=7)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


MAX_EMAIL_LENGTH = 254  # RFC 5321's limit on an address in a mail path, and the column's


class InvitationNotSent(ServiceError):
    """The mail server did not take the invitation; it was withdrawn."""

    status = 503
    code = "email_not_sent"


def checked_email(value: str) -> str:
    """An invitee's address, stripped and lower-cased, or InvalidInput: a valid address of
    at most 254 characters (which also keeps CR/LF out of the mail's headers)."""
    email = value.strip().lower()
    if not email:
        raise InvalidInput("Enter the address to send the invitation to.")
    if len(email) > MAX_EMAIL_LENGTH:
        raise InvalidInput(f"An email address has at most {MAX_EMAIL_LENGTH} characters.")
    try:
        validate_email(email)
    except ValidationError as error:
        raise InvalidInput(f"{email!r} is not an email address.") from error
    return email


def invite_member(tenant: Tenant, email: str, role: str, *, actor: Actor) -> tuple[Invitation, str]:
    """Invite someone by email. Returns the invitation and its token (for the link, once).

    The invitation is committed, then its e-mail sent. If the mail server
    refuses, the invitation is withdrawn (deleted, audited) and InvitationNotSent raised: its
    token lives only in that e-mail, so an unsent invitation could never be accepted."""
    token = secrets.token_urlsafe(32)
    # Durable: the invitation is committed at the end of this block, not in some caller's
    # transaction, before the e-mail goes.
    with transaction.atomic(durable=True):
        tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)  # serialises the team's membership changes
        mine = require_role(actor, tenant, Role.ADMIN)
        if role not in Role.values:
            raise InvalidInput(f"Unknown role {role!r}; use one of: {', '.join(Role.values)}.")
        if role == Role.OWNER and not mine.has_role(Role.OWNER):
            raise PermissionDenied("Only an owner can invite another owner.")
        email = checked_email(email)
        if Membership.objects.filter(tenant=tenant, user__email__iexact=email).exists():
            raise InvalidInput(f"{email} is already a member of {tenant.name}.")
        invitation = Invitation.objects.create(
            tenant=tenant,
            email=email,
            role=role,
            token_hash=_token_hash(token),
            invited_by=person(actor),
            expires_at=timezone.now() + INVITATION_LIFETIME,
        )
        audit.record(actor, AuditAction.MEMBER_INVITED, invitation, tenant=tenant, email=email, role=role)
    # Committed now: the e-mail goes (its token must never be mailed for a rolled-back row).
    if not notifications.send_invitation(invitation, token):
        with transaction.atomic():
            audit.record(
                actor, AuditAction.MEMBER_INVITATION_WITHDRAWN, invitation, tenant=tenant, email=email, reason="unsent"
            )
            invitation.delete()
        raise InvitationNotSent(
            f"The invitation to {email} could not be sent (the mail server did not answer); nothing was saved. "
            "Try again in a few minutes."
        )
    return invitation, token


@transaction.atomic
def accept_invitation(token: str, *, actor: Actor) -> Membership:
    invitation = (
        Invitation.objects.select_for_update().filter(token_hash=_token_hash(token)).select_related("tenant").first()
    )
    if invitation is None or invitation.accepted_at or invitation.expires_at <= timezone.now():
        raise NotFound("This invitation is not valid any more; ask for a new one.")
    user = require_person(actor)
    if invitation.email.lower() != (user.email or "").lower():
        raise PermissionDenied(f"This invitation is for {invitation.email}; log in with that account.")
    Tenant.objects.select_for_update().get(pk=invitation.tenant_id)
    membership, _ = Membership.objects.get_or_create(
        user=user, tenant=invitation.tenant, defaults={"role": invitation.role}
    )
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    audit.record(actor, AuditAction.MEMBER_JOINED, membership, tenant=invitation.tenant, role=membership.role)
    return membership


def _lock_team(membership: Membership) -> tuple[Tenant, Membership]:
    """Lock the team's row, then its memberships, and re-read ``membership`` under the lock.

    Every change to a team's members takes the team's row first, so two of them (two owners
    demoting each other) run one after the other and the second sees the first's result:
    the owner check below is decided on rows nobody else can change meanwhile."""
    tenant = Tenant.objects.select_for_update().get(pk=membership.tenant_id)
    rows = {m.pk: m for m in Membership.objects.select_for_update().filter(tenant=tenant).select_related("user")}
    row = rows.get(membership.pk)
    if row is None:
        raise NotFound("No such member.")
    return tenant, row


@transaction.atomic
def change_role(membership: Membership, role: str, *, actor: Actor) -> Membership:
    tenant, row = _lock_team(membership)
    # Staff holding the permission (the admin's tenant page) act without a membership (None).
    mine = require_role_or_permission(actor, tenant, Role.ADMIN, permission="portal.change_membership")
    if role not in Role.values:
        raise InvalidInput(f"Unknown role {role!r}.")
    if Role.OWNER in (role, row.role) and mine is not None and not mine.has_role(Role.OWNER):
        raise PermissionDenied("Only an owner can make or unmake owners.")
    _keep_an_owner(row, new_role=role)
    previous = row.role
    row.role = role
    row.save(update_fields=["role"])
    audit.record(actor, AuditAction.MEMBER_ROLE_CHANGED, row, tenant=tenant, role=role, previous=previous)
    return row


@transaction.atomic
def remove_member(membership: Membership, *, actor: Actor) -> None:
    tenant, row = _lock_team(membership)
    if row.user_id != getattr(actor, "pk", None):  # anyone may leave; removing others needs admin
        mine = require_role_or_permission(actor, tenant, Role.ADMIN, permission="portal.delete_membership")
        if row.role == Role.OWNER and mine is not None and not mine.has_role(Role.OWNER):
            raise PermissionDenied("Only an owner can remove an owner.")
    _keep_an_owner(row, new_role=None)
    audit.record(actor, AuditAction.MEMBER_REMOVED, row, tenant=tenant, user=row.user.get_username())
    row.delete()


@transaction.atomic
def add_member(tenant: Tenant, user: User, role: str, *, actor: Actor) -> Membership:
    """Staff put someone in a team directly (the admin's tenant page); members invite instead,
    so the person confirms their address by accepting."""
    require_staff(actor, "portal.add_membership")
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)  # serialises the team's membership changes
    if role not in Role.values:
        raise InvalidInput(f"Unknown role {role!r}; use one of: {', '.join(Role.values)}.")
    if Membership.objects.filter(tenant=tenant, user=user).exists():
        raise InvalidInput(f"{user.get_username()} is already a member of {tenant.name}.")
    membership = Membership.objects.create(tenant=tenant, user=user, role=role)
    audit.record(actor, AuditAction.MEMBER_JOINED, membership, tenant=tenant, role=role, via="admin")
    return membership


def _keep_an_owner(membership: Membership, new_role: str | None) -> None:
    """Called with the team's memberships locked (``_lock_team``)."""
    other_owners = Membership.objects.filter(tenant_id=membership.tenant_id, role=Role.OWNER).exclude(pk=membership.pk)
    if membership.role == Role.OWNER and new_role != Role.OWNER and not other_owners.exists():
        raise IllegalTransition("A team keeps at least one owner; make someone else owner first.")
