"""API-key authentication against the snapshot (prefix lookup, constant-time hash compare),
and the limiter that slows down key guessing from one client address."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes

from redis.exceptions import RedisError

from portal.keyformat import prefix_of, secret_matches

if TYPE_CHECKING:
    from gateway.redisconn import FastRedis
    from gateway.snapshot import KeyEntry

# Compared against when the prefix is unknown, so timing does not tell which prefixes exist.
_NO_KEY_HASH = "0" * 64


class AuthFailure(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
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


def authenticate(keys: dict[str, KeyEntry], presented: str | None, now: float | None = None) -> KeyEntry:
    """The KeyEntry for a presented key, or AuthFailure saying why not (all answer 401)."""
    if not presented:
        raise AuthFailure("missing_api_key", "Send your API key as 'Authorization: Bearer <key>' or 'X-API-Key'.")
    prefix = prefix_of(presented)
    entry = keys.get(prefix) if prefix else None
    if not secret_matches(presented, entry.secret_hash if entry else _NO_KEY_HASH) or entry is None:
        raise AuthFailure("invalid_api_key", "The API key is not valid.")
    if entry.revoked:
        raise AuthFailure("revoked_api_key", "The API key was revoked.")
    if entry.expires_at is not None and entry.expires_at <= (now or time.time()):
        raise AuthFailure("expired_api_key", "The API key has expired.")
    return entry


# INCR that gives a new counter its expiry in the same step, so none lives forever.
COUNT_IN_WINDOW = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return count
"""


class AuthFailureLimiter:
    """Slows down key guessing: after ``max_failures`` failed auths from one address in a
    window, that address's *failed* attempts are answered 429 for the rest of the window.

    It is consulted only after a key failed: a valid key always passes, so one party
    guessing keys behind a shared address (a NAT, a load balancer) cannot lock out the
    other clients there. The success path never touches it; failures cost one Redis call
    (a shared counter) until the address is blocked, then a dict lookup."""

    def __init__(self, redis: FastRedis, *, max_failures: int = 20, window_seconds: int = 60):
        self._redis = redis
        self.max_failures = max_failures
        self.window = window_seconds
        self._blocked_until: dict[str, float] = {}

    def is_blocked(self, client_ip: str) -> bool:
        until = self._blocked_until.get(client_ip)
        if until is None:
            return False
        if until > time.monotonic():
            return True
        del self._blocked_until[client_ip]
        return False

    async def record_failure(self, client_ip: str) -> bool:
        """Count one failed auth; True when it is over the allowance, so the caller answers 429
        at once (exact across workers: the counter is shared, the local block only saves calls).
        The window opens at the address's first failure, so no boundary lets a burst through."""
        if self.is_blocked(client_ip):
            return True
        key = f"portico:authfail:{client_ip}"
        try:
            count = int(await self._redis.execute("EVAL", COUNT_IN_WINDOW, 1, key, self.window))
        except (RedisError, OSError):
            return False
        if count >= self.max_failures:
            if len(self._blocked_until) > 10_000:
                self._blocked_until.clear()
            self._blocked_until[client_ip] = time.monotonic() + self.window
        return count > self.max_failures
