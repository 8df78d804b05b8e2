"""Tenants and their members."""

import hashlib
import secrets
from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from portal.models import Invitation, Membership, Role, Tenant
from portal.services import audit
from portal.services.access import require_role
from portal.services.errors import IllegalTransition, InvalidInput, NotFound, PermissionDenied


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


def invite_member(tenant: Tenant, email: str, role: str, actor) -> tuple[Invitation, str]:
    """Invite someone by email. Returns the invitation and its token (for the link, once)."""
    require_role(actor, tenant, Role.ADMIN)
    if role not in Role.values:
        raise InvalidInput(f"Unknown role {role!r}; use one of: {', '.join(Role.values)}.")
    if role == Role.OWNER and not require_role(actor, tenant, Role.VIEWER).has_role(Role.OWNER):
        raise PermissionDenied("Only an owner can invite another owner.")
    email = email.strip().lower()
    if Membership.objects.filter(tenant=tenant, user__email__iexact=email).exists():
        raise InvalidInput(f"{email} is already a member of {tenant.name}.")
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        invitation = Invitation.objects.create(
            tenant=tenant,
            email=email,
            role=role,
            token_hash=_token_hash(token),
            invited_by=actor,
            expires_at=timezone.now() + INVITATION_LIFETIME,
        )
        audit.record(actor, "member.invited", invitation, tenant=tenant, email=email, role=role)
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
