"""API key lifecycle: create (secret returned once), rotate with a grace period, revoke."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from portal import keyformat
from portal.models import ApiKey, Application, Role
from portal.services import audit
from portal.services.access import require_application
from portal.services.config_signal import publish_config_change
from portal.services.errors import IllegalTransition, InvalidInput


def _issue(application: Application, actor, *, name: str, expires_at, rotated_from=None):
    for _attempt in range(5):
        prefix = keyformat.new_prefix()
        secret = keyformat.new_secret(prefix)
        try:
            with transaction.atomic():
                key = ApiKey.objects.create(
                    application=application,
                    name=name,
                    prefix=prefix,
                    secret_hash=keyformat.hash_secret(secret),
                    expires_at=expires_at,
                    created_by=actor if getattr(actor, "pk", None) else None,
                    rotated_from=rotated_from,
                )
            return key, secret
        except IntegrityError:  # a prefix collision: 36^8 makes it rare, retrying makes it harmless
            continue
    raise RuntimeError("could not allocate a unique key prefix")


def create_api_key(
    application: Application,
    actor,
    *,
    name: str = "",
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Issue a key. Returns the key and its secret; the secret is never retrievable again."""
    require_application(actor, application, Role.DEVELOPER)
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("The expiry must be in the future.")
    if len(name) > 80:
        raise InvalidInput("A key name has at most 80 characters.")
    with transaction.atomic():
        key, secret = _issue(application, actor, name=name, expires_at=expires_at)
        audit.record(actor, "key.created", key, tenant=application.tenant, prefix=key.prefix)
        publish_config_change(f"key {key.prefix} created")
    return key, secret


def rotate_api_key(key: ApiKey, actor, *, grace_seconds: int | None = None) -> tuple[ApiKey, str]:
    """Issue a successor key; the old one stays valid for ``grace_seconds`` then expires."""
    require_application(actor, key.application, Role.DEVELOPER)
    if grace_seconds is None:
        grace_seconds = settings.PORTICO_KEY_ROTATION_GRACE_SECONDS
    if grace_seconds < 0:
        raise InvalidInput("The grace period cannot be negative.")
    now = timezone.now()
    with transaction.atomic():
        old = ApiKey.objects.select_for_update().get(pk=key.pk)
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
            actor, "key.rotated", old, tenant=old.application.tenant, new_prefix=new.prefix, grace_seconds=grace_seconds
        )
        publish_config_change(f"key {old.prefix} rotated")
    return new, secret


def revoke_api_key(key: ApiKey, actor) -> ApiKey:
    require_application(actor, key.application, Role.DEVELOPER)
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().select_related("application__tenant").get(pk=key.pk)
        if key.is_revoked:
            raise IllegalTransition("This key is already revoked.")
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit.record(actor, "key.revoked", key, tenant=key.application.tenant, prefix=key.prefix)
        publish_config_change(f"key {key.prefix} revoked")
    return key
