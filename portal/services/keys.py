"""API key lifecycle: create (secret returned once), rotate with a grace period, revoke,
and (operators, in the admin) delete.

Every change: one transaction, the key (or for a new key its application) row locked, an
audit event, and a config change published to the gateways on commit.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from portal import keyformat
from portal.models import ApiKey, Application, AuditAction, Role
from portal.services import audit
from portal.services.access import Actor, person, require_application, require_role_or_permission
from portal.services.config_signal import publish_config_change
from portal.services.errors import IllegalTransition, InvalidInput, NotFound

NAME_MAX = 80


def _issue(
    application: Application,
    actor: Actor,
    *,
    name: str,
    expires_at: datetime | None,
    rotated_from: ApiKey | None = None,
) -> tuple[ApiKey, str]:
    for _attempt in range(5):
        prefix = keyformat.new_prefix()
        secret = keyformat.new_secret(prefix)
        try:
            with transaction.atomic():  # a savepoint: a collision must not spoil the caller's transaction
                key = ApiKey.objects.create(
                    application=application,
                    name=name,
                    prefix=prefix,
                    secret_hash=keyformat.hash_secret(secret),
                    expires_at=expires_at,
                    created_by=person(actor),
                    rotated_from=rotated_from,
                )
            return key, secret
        except IntegrityError:  # a prefix collision: 36^8 makes it rare, retrying makes it harmless
            continue
    raise RuntimeError("could not allocate a unique key prefix")


def _locked(key: ApiKey) -> ApiKey:
    row = ApiKey.objects.select_for_update().select_related("application__tenant").filter(pk=key.pk).first()
    if row is None:
        raise NotFound("No such key.")
    return row


@transaction.atomic
def create_api_key(
    application: Application,
    *,
    actor: Actor,
    name: str = "",
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Issue a key. Returns the key and its secret; the secret is never retrievable again."""
    # Locked so a key is never added to an application being deleted at the same moment.
    application = Application.objects.select_for_update().select_related("tenant").get(pk=application.pk)
    require_application(actor, application, Role.DEVELOPER)
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("The expiry must be in the future.")
    if len(name) > NAME_MAX:
        raise InvalidInput(f"A key name has at most {NAME_MAX} characters.")
    key, secret = _issue(application, actor, name=name, expires_at=expires_at)
    audit.record(actor, AuditAction.KEY_CREATED, key, tenant=application.tenant, prefix=key.prefix)
    publish_config_change(f"key {key.prefix} created")
    return key, secret


@transaction.atomic
def rotate_api_key(key: ApiKey, *, actor: Actor, grace_seconds: int | None = None) -> tuple[ApiKey, str]:
    """Issue a successor key; the old one stays valid for ``grace_seconds`` then expires."""
    old = _locked(key)
    require_application(actor, old.application, Role.DEVELOPER)
    if grace_seconds is None:
        grace_seconds = settings.PORTICO_KEY_ROTATION_GRACE_SECONDS
    if grace_seconds < 0:
        raise InvalidInput("The grace period cannot be negative.")
    now = timezone.now()
    if not old.is_usable(now):
        raise IllegalTransition("Only an active key can be rotated; this one is revoked or expired.")
    if hasattr(old, "rotated_to"):
        raise IllegalTransition(f"This key was already rotated to {old.rotated_to.prefix}.")
    new, secret = _issue(old.application, actor, name=old.name, expires_at=old.expires_at, rotated_from=old)
    if grace_seconds == 0:
        old.revoked_at = now
    else:
        grace_end = now + timedelta(seconds=grace_seconds)
        old.expires_at = min(old.expires_at, grace_end) if old.expires_at else grace_end
    old.save(update_fields=["revoked_at", "expires_at"])
    audit.record(
        actor,
        AuditAction.KEY_ROTATED,
        old,
        tenant=old.application.tenant,
        new_prefix=new.prefix,
        grace_seconds=grace_seconds,
    )
    publish_config_change(f"key {old.prefix} rotated")
    return new, secret


@transaction.atomic
def revoke_api_key(key: ApiKey, *, actor: Actor) -> ApiKey:
    row = _locked(key)
    require_application(actor, row.application, Role.DEVELOPER)
    if row.is_revoked:
        raise IllegalTransition("This key is already revoked.")
    row.revoked_at = timezone.now()
    row.save(update_fields=["revoked_at"])
    audit.record(actor, AuditAction.KEY_REVOKED, row, tenant=row.application.tenant, prefix=row.prefix)
    publish_config_change(f"key {row.prefix} revoked")
    return row


@transaction.atomic
def delete_api_key(key: ApiKey, *, actor: Actor) -> None:
    """Delete a key outright (operators, in the admin; staff need ``portal.delete_apikey``,
    a team needs an admin). The gateway refuses it as soon as the change commits."""
    row = _locked(key)
    require_role_or_permission(actor, row.application.tenant, Role.ADMIN, permission="portal.delete_apikey")
    audit.record(actor, AuditAction.KEY_DELETED, row, tenant=row.application.tenant, prefix=row.prefix)
    prefix = row.prefix
    row.delete()
    publish_config_change(f"key {prefix} deleted")
