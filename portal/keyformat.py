"""The API key format, shared by the control plane (issuing) and the gateway (checking).

A key reads ``pt_<8 chars>.<43 chars>``. The part before the dot is the prefix: stored in
clear, unique, used to find the key and to show it. Only a SHA-256 of the whole key is
stored. SHA-256 (not a fast non-cryptographic hash) because the input has 256 bits of
entropy: a slow password hash buys nothing there and would cost every gateway request.
"""

import hashlib
import hmac
import secrets
import string

PREFIX_HEAD = "pt_"
PREFIX_LENGTH = len(PREFIX_HEAD) + 8
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits


def new_prefix() -> str:
    return PREFIX_HEAD + "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(8))


def new_secret(prefix: str) -> str:
    return f"{prefix}.{secrets.token_urlsafe(32)}"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def prefix_of(presented: str) -> str | None:
    """The prefix of a presented key, or None when it cannot be one of ours."""
    prefix, dot, rest = presented.partition(".")
    if not dot or len(prefix) != PREFIX_LENGTH or not prefix.startswith(PREFIX_HEAD) or not rest:
        return None
    return prefix


def secret_matches(presented: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(presented), stored_hash)
