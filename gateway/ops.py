"""The gateway's operations endpoints: liveness, readiness and Prometheus metrics.

They live under ``/_portico/``, a prefix no API may use (the portal refuses such base
paths), so they never shadow an API. Liveness answers anyone (it says nothing);
readiness and metrics describe the deployment, so they answer only peers in
``GATEWAY_OPS_ALLOW`` (loopback by default) or a caller presenting ``GATEWAY_OPS_TOKEN``.

The old paths ``/healthz``, ``/readyz`` and ``/metrics`` still answer, for local probes
written against them, but only to allowed peers and only where no API is routed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from gateway import metrics
from gateway.errors import Send, error_body, send_json
from gateway.networks import NetworkSet
from gateway.settings import GatewaySettings
from gateway.snapshot import EMPTY

if TYPE_CHECKING:
    from gateway.app import Gateway

PREFIX = "/_portico/"
LEGACY_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


async def _healthz(gateway: Gateway, send: Send) -> None:
    await send_json(send, 200, b'{"status":"ok"}', [])


async def _readyz(gateway: Gateway, send: Send) -> None:
    redis_ok = False
    with contextlib.suppress(RedisError, OSError, AttributeError):
        redis_ok = bool(await gateway.redis.ping())
    snapshot = gateway.snapshot
    loaded = snapshot is not EMPTY
    ready = redis_ok and loaded
    body = (
        f'{{"status":"{"ready" if ready else "not_ready"}","config_loaded":{str(loaded).lower()},'
        f'"config_version":{snapshot.version},"redis":{str(redis_ok).lower()},'
        f'"routes":{snapshot.route_count},"pid":{os.getpid()}}}'
    ).encode()
    await send_json(send, 200 if ready else 503, body, [])


async def _metrics(gateway: Gateway, send: Send) -> None:
    redis_up = False
    with contextlib.suppress(RedisError, OSError, AttributeError):
        redis_up = bool(await gateway.redis.ping())
    backlog: dict[str, int] = {}
    with contextlib.suppress(AttributeError):  # no call log before the lifespan started it
        backlog = await asyncio.to_thread(gateway.calllog.backlog)  # reads files
    body, content_type = metrics.render(metrics.ScrapeState(redis_up, backlog))
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", content_type), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


Endpoint = Callable[["Gateway", Send], Awaitable[None]]
ENDPOINTS: dict[str, tuple[Endpoint, bool]] = {  # name -> (endpoint, needs the peer allowed or the token)
    "healthz": (_healthz, False),
    "readyz": (_readyz, True),
    "metrics": (_metrics, True),
}


class OpsAccess:
    """Who may read readiness and metrics."""

    def __init__(self, settings: GatewaySettings):
        self._allow = NetworkSet(settings.ops_allow)
        self._token = settings.ops_token.encode()

    def peer_allowed(self, peer: str) -> bool:
        return peer in self._allow

    def token_presented(self, authorization: bytes | None) -> bool:
        if not self._token or not authorization or authorization[:7].lower() != b"bearer ":
            return False
        return hmac.compare_digest(authorization[7:].strip(), self._token)


def _peer(scope: dict[str, Any]) -> str:
    client = scope.get("client")
    return str(client[0]) if client else ""


async def serve_ops(gateway: Gateway, scope: dict[str, Any], send: Send) -> None:
    """Answer a request under ``/_portico/``."""
    name = scope["path"][len(PREFIX) :]
    found = ENDPOINTS.get(name)
    if found is None:
        await send_json(send, 404, error_body("not_found", "No such operations endpoint."), [])
        return
    endpoint, restricted = found
    if restricted and not gateway.ops_access.peer_allowed(_peer(scope)):
        authorization = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        if not gateway.ops_access.token_presented(authorization):
            body = error_body("ops_forbidden", "Readiness and metrics need an allowed address or the ops token.")
            await send_json(send, 403, body, [])
            return
    await endpoint(gateway, send)


async def serve_legacy(gateway: Gateway, scope: dict[str, Any], send: Send) -> bool:
    """Answer an old ops path for an allowed peer; False when it is not one (route it)."""
    if not gateway.ops_access.peer_allowed(_peer(scope)):
        return False
    await ENDPOINTS[scope["path"][1:]][0](gateway, send)
    return True
