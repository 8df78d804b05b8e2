"""Personal access tokens for the management REST API: ``pat_<8 chars>.<secret>``.

Stored like API keys: the prefix in clear, a SHA-256 of the whole token; compared in
constant time; the secret is returned once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from portal.models import AuditAction, PersonalAccessToken
from portal.services import audit
from portal.services.access import Actor, require_person
from portal.services.errors import IllegalTransition, InvalidInput, NotFound

HEAD = "pat_"
_ALPHABET = string.ascii_lowercase + string.digits


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@transaction.atomic
def create_access_token(
    *, actor: Actor, name: str, expires_at: datetime | None = None
) -> tuple[PersonalAccessToken, str]:
    """A token for ``actor`` (always their own). Returns it and its secret, shown once."""
    user = require_person(actor)
    if not name.strip():
        raise InvalidInput("A token needs a name, so you can tell your tokens apart.")
    if len(name.strip()) > 80:
        raise InvalidInput("A token name has at most 80 characters.")
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidInput("The expiry must be in the future.")
    prefix = HEAD + "".join(secrets.choice(_ALPHABET) for _ in range(8))
    secret = f"{prefix}.{secrets.token_urlsafe(32)}"
    token = PersonalAccessToken.objects.create(
        user=user, name=name.strip(), prefix=prefix, secret_hash=_hash(secret), expires_at=expires_at
    )
    audit.record(actor, AuditAction.TOKEN_CREATED, token, prefix=prefix)
    return token, secret


@transaction.atomic
def revoke_access_token(token: PersonalAccessToken, *, actor: Actor) -> PersonalAccessToken:
    """A person revokes one of their own tokens; someone else's is not found."""
    row = PersonalAccessToken.objects.select_for_update().filter(pk=token.pk).first()
    if row is None or row.user_id != getattr(actor, "pk", None):
        raise NotFound("No such access token.")
    if row.revoked_at:
        raise IllegalTransition("This access token is already revoked.")
    row.revoked_at = timezone.now()
    row.save(update_fields=["revoked_at"])
    audit.record(actor, AuditAction.TOKEN_REVOKED, row, prefix=row.prefix)
    return row


def user_for_token(presented: str) -> User | None:
    """The active user a presented token belongs to, or None."""
    prefix, dot, _rest = presented.partition(".")
    if not dot or not prefix.startswith(HEAD):
        return None
    token = PersonalAccessToken.objects.select_related("user").filter(prefix=prefix).first()
    stored = token.secret_hash if token else "0" * 64
    if not hmac.compare_digest(_hash(presented), stored) or token is None:
        return None
    now = timezone.now()
    if token.revoked_at or (token.expires_at and token.expires_at <= now) or not token.user.is_active:
        return None
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        PersonalAccessToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user
