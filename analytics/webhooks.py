"""Alert webhooks: a signed JSON POST per notification, retried with exponential backoff.

Each firing and each resolution of an alert queues one ``WebhookDelivery`` (its body fixed
then). ``deliver_webhooks`` (Celery beat every 30 s, ``manage.py deliver_webhooks``) sends the
ones due: POST, ``Content-Type: application/json``, timeout ``TIMEOUT_SECONDS``, no redirects
followed, and these headers:

- ``X-Portico-Event-Id``: the delivery's id, the same on every try: a receiver that already
  handled it answers 2xx and does nothing (deliveries are at least once).
- ``X-Portico-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``, keyed with
  the rule's webhook secret. Receivers recompute it, compare in constant time and refuse a
  ``t`` far from their clock (replays). ``docs/analytics.md`` has a verifier.

A 2xx answer delivers. Anything else (another status, a timeout, a refused connection) is
tried again 1, 2, 4, 8 and 16 minutes later; after ``MAX_ATTEMPTS`` tries the delivery is
given up (``given_up_at``). The receiver's address is checked before every try, each
address the name resolves to, and the connection goes to the checked address (a name that
changes its answer between check and connect cannot lead us inside): it must be global,
unless PORTICO_WEBHOOK_ALLOWED_NETWORKS lists its network.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import logging
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from analytics.models import WebhookDelivery
from portal.services.errors import InvalidInput

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 5.0
MAX_ATTEMPTS = 6
FIRST_RETRY = timedelta(minutes=1)
# A run claims a delivery for this long, so an overlapping run does not send it too.
CLAIM = timedelta(seconds=60)
RUN_SECONDS = 25.0  # beat starts a run every 30 s; the rest waits for the next one
SIGNATURE_HEADER = "X-Portico-Signature"
EVENT_ID_HEADER = "X-Portico-Event-Id"
MAX_URL_LENGTH = 500


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Portico-Signature`` value of ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), b"%d." % timestamp + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, *, tolerance: int = 300, now: float | None = None) -> bool:
    """What a receiver does (the tests' receiver uses it): the signature matches and its
    time is within ``tolerance`` seconds of ``now``."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
        given = fields["v1"]
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed try: 1, 2, 4, 8, 16 minutes."""
    return FIRST_RETRY * 2 ** (attempts - 1)


# -- where a webhook may go ---------------------------------------------------------------


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(cidr, strict=False) for cidr in settings.PORTICO_WEBHOOK_ALLOWED_NETWORKS]


def address_refusal(address: str) -> str | None:
    """Why a webhook may not be sent to ``address`` (an IP), or None when it may."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in network for network in _allowed_networks()):
        return None
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global or ip.is_multicast or ip.is_unspecified or ip.is_reserved:
        return "an address that is not on the public internet"
    return None


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str
    address: str  # the checked IP the connection goes to


def resolve_webhook_url(url: str) -> Target:
    """The URL's parts and the address to connect to; InvalidInput when it is not an
    http(s) URL with a host, does not resolve, or resolves to any refused address."""
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"A webhook URL is an http:// or https:// URL of at most {MAX_URL_LENGTH} characters.")
    if any(ord(c) < 33 or ord(c) >= 127 for c in url):
        raise InvalidInput(
            "A webhook URL has no spaces, control or non-ASCII characters (percent-encode them; punycode for names)."
        )
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise InvalidInput("The webhook URL is not a valid URL (check its port).") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("A webhook URL is an http:// or https:// URL with a host.")
    if parts.username or parts.password:
        raise InvalidInput("A webhook URL carries no user name or password; the signature authenticates us.")
    try:
        infos = socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        raise InvalidInput(f"The webhook host {parts.hostname!r} does not resolve.") from None
    addresses = [str(info[4][0]) for info in infos]
    for address in addresses:
        if reason := address_refusal(address):
            raise InvalidInput(
                f"The webhook host {parts.hostname!r} resolves to {address}, {reason}; webhooks go to public "
                "addresses only, unless an administrator allows that network (PORTICO_WEBHOOK_ALLOWED_NETWORKS)."
            )
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(parts.scheme, parts.hostname, port, path, addresses[0])


def check_webhook_url(url: str) -> None:
    resolve_webhook_url(url)


# -- sending --------------------------------------------------------------------------------


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the checked address, whatever the name resolves to now."""

    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = target.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=ssl.create_default_context())
        self._address = target.address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float = TIMEOUT_SECONDS) -> int:
    """POST ``body`` to ``url`` (checked again now); the answer's status. Raises InvalidInput
    for a refused URL and OSError/HTTPException when no answer came."""
    target = resolve_webhook_url(url)
    connection: http.client.HTTPConnection
    if target.scheme == "https":
        connection = _PinnedHTTPSConnection(target, timeout)
    else:
        connection = _PinnedHTTPConnection(target, timeout)
    try:
        connection.request("POST", target.path, body=body, headers=headers)
        response = connection.getresponse()
        response.read(65536)  # a little of the answer, so the receiver is not cut off mid-write
        return response.status
    finally:
        connection.close()


def attempt(delivery: WebhookDelivery, *, now: datetime | None = None) -> bool:
    """One try of ``delivery`` (already claimed); records the outcome. True when delivered."""
    now = now or timezone.now()
    rule = delivery.event.rule
    body = delivery.body.encode()
    delivery.attempts += 1
    status: int | None = None
    error = ""
    if not rule.webhook_url:
        error = "The rule has no webhook URL any more."
    else:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Portico-Webhooks/1",
            EVENT_ID_HEADER: delivery.delivery_id,
            SIGNATURE_HEADER: sign(rule.webhook_secret, int(time.time()), body),
        }
        try:
            status = post(rule.webhook_url, body, headers)
        except InvalidInput as refused:
            error = refused.message
        except (OSError, http.client.HTTPException) as failure:
            error = f"{type(failure).__name__}: {failure}"
    delivery.last_status = status
    delivery.last_error = error[:300] if status is None else ("" if 200 <= status < 300 else f"HTTP {status}")
    if status is not None and 200 <= status < 300:
        delivery.delivered_at = now
        delivery.next_attempt_at = None
    elif delivery.attempts >= MAX_ATTEMPTS or not rule.webhook_url:
        delivery.given_up_at = now
        delivery.next_attempt_at = None
        log.warning("webhook %s given up after %d tries: %s", delivery.delivery_id, delivery.attempts, error)
    else:
        delivery.next_attempt_at = now + backoff(delivery.attempts)
    delivery.save(
        update_fields=["attempts", "last_status", "last_error", "delivered_at", "given_up_at", "next_attempt_at"]
    )
    return delivery.delivered_at is not None


def _claim(delivery_pk: int, due: datetime, now: datetime) -> bool:
    """Move the delivery's next try past this run's, if nobody else did: only one run sends it."""
    return bool(WebhookDelivery.objects.filter(pk=delivery_pk, next_attempt_at=due).update(next_attempt_at=now + CLAIM))


def deliver_webhooks(
    *, now: datetime | None = None, limit: int = 200, max_seconds: float = RUN_SECONDS
) -> dict[str, int]:
    """Try every delivery that is due, oldest first, for at most ``max_seconds``.
    Returns counts: {"delivered", "failed", "given_up"}."""
    now = now or timezone.now()
    started = time.monotonic()
    counts = {"delivered": 0, "failed": 0, "given_up": 0}
    due = list(
        WebhookDelivery.objects.filter(Q(next_attempt_at__lte=now))
        .order_by("next_attempt_at", "pk")
        .values_list("pk", "next_attempt_at")[:limit]
    )
    for pk, at in due:
        if time.monotonic() - started > max_seconds:
            break
        if not _claim(pk, at, now):
            continue
        delivery = WebhookDelivery.objects.select_related("event__rule").get(pk=pk)
        try:
            delivered = attempt(delivery, now=now)
        except Exception:  # one odd delivery must not stop the others; its claim lapses and it is tried again
            log.exception("webhook %s: the try failed unexpectedly", delivery.delivery_id)
            counts["failed"] += 1
            continue
        if delivered:
            counts["delivered"] += 1
        elif delivery.given_up_at:
            counts["given_up"] += 1
        else:
            counts["failed"] += 1
    return counts
