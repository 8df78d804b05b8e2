"""Provider credentials encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256).

Keys come from ``settings.PORTICO_ENCRYPTION_KEYS`` (env ``PORTICO_ENCRYPTION_KEY``, several
comma-separated for rotation; a generated one under ``var/`` for local runs). The first key
encrypts, every key decrypts (MultiFernet), so rotating is: put the new key first, keep the
old one after it, run ``manage.py reencrypt_provider_keys``, then drop the old key.

Every process that reads credentials (portal, gateway snapshot loader, celery) must see the
same keys: in production set PORTICO_ENCRYPTION_KEY explicitly.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class CredentialUnreadable(Exception):
    """A stored credential that none of the configured keys can decrypt (a key was dropped
    too early, or the row was tampered with)."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("PORTICO_ENCRYPTION_KEY is empty; set one Fernet key (or several, comma-separated).")
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key.encode()))
        except (ValueError, TypeError) as error:
            # Never echo the key itself: this message reaches logs.
            raise ImproperlyConfigured(
                f"PORTICO_ENCRYPTION_KEY: key #{position} is not a Fernet key (32 url-safe base64-encoded bytes; "
                "make one with cryptography's Fernet.generate_key())."
            ) from error
    return MultiFernet(fernets)


def fernet() -> MultiFernet:
    """The MultiFernet for the current settings (cached per key list; tests may change them)."""
    return _fernet(tuple(settings.PORTICO_ENCRYPTION_KEYS))


def encrypt(secret: str) -> str:
    return fernet().encrypt(secret.encode()).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeError) as error:
        raise CredentialUnreadable("No configured encryption key decrypts this credential.") from error


def reencrypt(token: str) -> str:
    """The same secret under the first (current) key; raises CredentialUnreadable."""
    try:
        return fernet().rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError) as error:
        raise CredentialUnreadable("No configured encryption key decrypts this credential.") from error


def last4(secret: str) -> str:
    """What people see of a credential. Short secrets (local servers' placeholders) show
    nothing: four characters of an eight-character secret would be half of it."""
    return secret[-4:] if len(secret) >= 12 else ""
