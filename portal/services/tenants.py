"""Tenants and their members."""

import hashlib
import secrets
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from portal.models import Invitation, Membership, Role, Tenant
from portal.services import audit, notifications
from portal.services.access import require_role
from portal.services.errors import IllegalTransition, InvalidInput, NotFound, PermissionDenied, ServiceError


def unique_tenant_slug(name: str) -> str:
    base = slugify(name)[:50] or "team"
    slug, n = base, 1
    while Tenant.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


def create_tenant(name: str, owner, *, is_personal: bool = False) -> Tenant:
    with transaction.atomic():
        tenant = Tenant.objects.create(name=name, slug=unique_tenant_slug(name), is_personal=is_personal)
        Membership.objects.create(user=owner, tenant=tenant, role=Role.OWNER)
        audit.record(owner, "tenant.created", tenant, tenant=tenant)
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


def invite_member(tenant: Tenant, email: str, role: str, actor) -> tuple[Invitation, str]:
    """Invite someone by email. Returns the invitation and its token (for the link, once).

    The invitation is committed, then its e-mail sent. If the mail server refuses, the
    invitation is withdrawn (deleted, audited) and InvitationNotSent raised: its token lives
    only in that e-mail, so an unsent invitation could never be accepted."""
    require_role(actor, tenant, Role.ADMIN)
    if role not in Role.values:
        raise InvalidInput(f"Unknown role {role!r}; use one of: {', '.join(Role.values)}.")
    if role == Role.OWNER and not require_role(actor, tenant, Role.VIEWER).has_role(Role.OWNER):
        raise PermissionDenied("Only an owner can invite another owner.")
    email = checked_email(email)
    if Membership.objects.filter(tenant=tenant, user__email__iexact=email).exists():
        raise InvalidInput(f"{email} is already a member of {tenant.name}.")
    token = secrets.token_urlsafe(32)
    with transaction.atomic(durable=True):  # committed before the e-mail goes
        invitation = Invitation.objects.create(
            tenant=tenant,
            email=email,
            role=role,
            token_hash=_token_hash(token),
            invited_by=actor,
            expires_at=timezone.now() + INVITATION_LIFETIME,
        )
        audit.record(actor, "member.invited", invitation, tenant=tenant, email=email, role=role)
    if not notifications.send_invitation(invitation, token):
        with transaction.atomic():
            audit.record(actor, "member.invitation_withdrawn", invitation, tenant=tenant, email=email, reason="unsent")
            invitation.delete()
        raise InvitationNotSent(
            f"The invitation to {email} could not be sent (the mail server did not answer); nothing was saved. "
            "Try again in a few minutes."
        )
    return invitation, token


def accept_invitation(token: str, user) -> Membership:
    invitation = Invitation.objects.filter(token_hash=_token_hash(token)).select_related("tenant").first()
    if invitation is None or invitation.accepted_at or invitation.expires_at <= timezone.now():
        raise NotFound("This invitation is not valid any more; ask for a new one.")
    if invitation.email.lower() != (user.email or "").lower():
        raise PermissionDenied(f"This invitation is for {invitation.email}; log in with that account.")
    with transaction.atomic():
        membership, _ = Membership.objects.get_or_create(
            user=user, tenant=invitation.tenant, defaults={"role": invitation.role}
        )
        invitation.accepted_at = timezone.now()
        invitation.accepted_by = user
        invitation.save(update_fields=["accepted_at", "accepted_by"])
        audit.record(user, "member.joined", membership, tenant=invitation.tenant, role=membership.role)
    return membership


def change_role(membership: Membership, role: str, actor) -> Membership:
    require_role(actor, membership.tenant, Role.ADMIN)
    if role not in Role.values:
        raise InvalidInput(f"Unknown role {role!r}.")
    actor_is_owner = require_role(actor, membership.tenant, Role.VIEWER).has_role(Role.OWNER)
    if Role.OWNER in (role, membership.role) and not actor_is_owner:
        raise PermissionDenied("Only an owner can make or unmake owners.")
    _keep_an_owner(membership, new_role=role)
    previous = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    audit.record(actor, "member.role_changed", membership, tenant=membership.tenant, role=role, previous=previous)
    return membership


def remove_member(membership: Membership, actor) -> None:
    if membership.user_id != getattr(actor, "pk", None):  # anyone may leave; removing others needs admin
        require_role(actor, membership.tenant, Role.ADMIN)
        if membership.role == Role.OWNER and not require_role(actor, membership.tenant).has_role(Role.OWNER):
            raise PermissionDenied("Only an owner can remove an owner.")
    _keep_an_owner(membership, new_role=None)
    audit.record(actor, "member.removed", membership, tenant=membership.tenant, user=membership.user.username)
    membership.delete()


def _keep_an_owner(membership: Membership, new_role) -> None:
    other_owners = Membership.objects.filter(tenant=membership.tenant, role=Role.OWNER).exclude(pk=membership.pk)
    if membership.role == Role.OWNER and new_role != Role.OWNER and not other_owners.exists():
        raise IllegalTransition("A team keeps at least one owner; make someone else owner first.")
