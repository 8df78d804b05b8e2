"""API-key authentication against the snapshot: prefix lookup, constant-time hash compare."""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import unquote_to_bytes

from portal.keyformat import prefix_of


class AuthFailure(Exception):
    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message


def presented_key(authorization: bytes | None, x_api_key: bytes | None) -> tuple[str | None, bytes | None]:
    """The key the client presented and the header that carried it (so it is not forwarded)."""
    if x_api_key:
        return x_api_key.decode("latin-1").strip(), b"x-api-key"
    if authorization and authorization[:7].lower() == b"bearer ":
        return authorization[7:].decode("latin-1").strip(), b"authorization"
    return None, None


def key_from_query(query_string: bytes, param: bytes) -> tuple[str | None, bytes]:
    """The key carried in query parameter ``param`` (opt-in: keys in URLs end up in logs)
    and the query string without that parameter, which is what goes upstream."""
    if param + b"=" not in query_string:
        return None, query_string
    key = None
    kept = []
    for part in query_string.split(b"&"):
        name, _eq, value = part.partition(b"=")
        if name == param:
            if key is None:
                key = unquote_to_bytes(value).decode("latin-1").strip()
        else:
            kept.append(part)
    return key, b"&".join(kept)


def authenticate(keys: dict, presented: str | None, now: float | None = None):
    """The KeyEntry for a presented key, or AuthFailure saying why not (all answer 401)."""
    if not presented:
        raise AuthFailure("missing_api_key", "Send your API key as 'Authorization: Bearer <key>' or 'X-API-Key'.")
    prefix = prefix_of(presented)
    entry = keys.get(prefix) if prefix else None
    # Compare even when the prefix is unknown, so timing does not tell which prefixes exist.
    digest = hashlib.sha256(presented.encode()).hexdigest()
    if not hmac.compare_digest(digest, entry.secret_hash if entry else "0" * 64) or entry is None:
        raise AuthFailure("invalid_api_key", "The API key is not valid.")
    if entry.revoked:
        raise AuthFailure("revoked_api_key", "The API key was revoked.")
    if entry.expires_at is not None and entry.expires_at <= (now or time.time()):
        raise AuthFailure("expired_api_key", "The API key has expired.")
    return entry
