"""The gateway's ASGI application: the per-worker state a request needs, its lifespan
(start-up, configuration reloads, background tasks, shutdown), and the entry point that
hands each request to a ``Call`` (``gateway/call.py``, where the request path reads as
its steps). No database query and no Django on the request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway import metrics, ops
from gateway.aicall import ENDPOINTS as AI_ENDPOINTS
from gateway.aicall import AiCall
from gateway.auth import AuthFailureLimiter
from gateway.cache import ResponseCache
from gateway.call import Call
from gateway.calllog import CallLogBuffer
from gateway.clientaddress import ClientAddressResolver
from gateway.errors import Send
from gateway.limits import PlanLimiter
from gateway.mcp import MCP_PATH, McpCall
from gateway.proxy import UpstreamProxy
from gateway.redisconn import FastRedis
from gateway.settings import GatewaySettings, gateway_settings
from gateway.snapshot import EMPTY, Snapshot, build_snapshot
from gateway.tracing import sample_bound
from llm.budgets import Budgets
from llm.llmcache import LlmCache
from llm.router import Router

if TYPE_CHECKING:
    from gateway.otlp import SpanExport

log = logging.getLogger("portico.gateway")

Receive = Callable[[], Awaitable[dict[str, Any]]]
POLL_SECONDS = 0.5
SPANS_SHUTDOWN_SECONDS = 5.0


class Gateway:
    """One per worker process. Requests read ``snapshot`` (swapped whole on reload) and the
    per-worker services made in ``startup``."""

    def __init__(self, settings: GatewaySettings | None = None):
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
        import django

        django.setup()  # settings only: the ORM is used by the snapshot loader, in a thread
        from django.conf import settings as django_settings

        self.django_settings = django_settings
        self.settings = settings or gateway_settings()
        self.snapshot: Snapshot = EMPTY
        self.client_addresses = ClientAddressResolver(self.settings.trusted_proxies)
        self.ops_access = ops.OpsAccess(self.settings)
        self.cors_origins = {o.encode() for o in django_settings.PORTICO_CORS_ORIGINS}
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_full_reload = 0.0
        self._id_prefix = ""
        self._id_counter = itertools.count()
        self.trace_sample_bound = sample_bound(self.settings.trace_sample_ratio)
        # Made in startup() when an OTLP endpoint is set (gateway/otlp.py); None: no spans.
        self.spans: SpanExport | None = None
        # Made in startup(), in the worker's event loop.
        self.redis: FastRedis
        self.limiter: PlanLimiter
        self.auth_failures: AuthFailureLimiter
        self.cache: ResponseCache
        self.calllog: CallLogBuffer
        self.proxy: UpstreamProxy
        self.router: Router
        self.budgets: Budgets
        self.llm_cache: LlmCache

    def new_request_id(self) -> str:
        """32 hex digits, unique across workers and restarts: a random per-worker-start prefix
        and a counter (uuid4 cost 2% of the request path)."""
        return f"{self._id_prefix}{next(self._id_counter):016x}"

    # -- ASGI -------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith(ops.PREFIX):
                await ops.serve_ops(self, scope, send)
                return
            if path in AI_ENDPOINTS:
                await AiCall(self, scope, receive, send).run()
                return
            if path == MCP_PATH:  # the MCP server (gateway/mcp.py): one comparison on the REST path
                await McpCall(self, scope, receive, send).run()
                return
            if path in ops.LEGACY_PATHS and self._unrouted(path) and await ops.serve_legacy(self, scope, send):
                return
            await Call(self, scope, receive, send).run()
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    def _unrouted(self, path: str) -> bool:
        route, _rest = self.snapshot.routes.match(path)
        return route is None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as error:
                    log.exception("gateway start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(error)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- lifespan ---------------------------------------------------------------------------

    async def startup(self) -> None:
        s = self.settings
        django_settings = self.django_settings
        self._id_prefix = os.urandom(8).hex()  # here, in the worker: never shared by a fork
        # Per request the gateway makes many short-lived containers; young collections every
        # 700 of them were frequent for no gain (almost everything dies by reference count).
        gc.set_threshold(20_000, 20, 20)
        # No client-side retries: a request must not wait out backoffs; the limiter's breaker
        # and the fail-open policy handle a Redis that is away.
        self.redis = FastRedis(django_settings.REDIS_URL, timeout=1.0, connect_timeout=0.5)
        self.limiter = PlanLimiter(self.redis, on_redis_failure=s.limits_on_redis_failure)
        self.auth_failures = AuthFailureLimiter(self.redis, max_failures=s.auth_failures_per_minute, window_seconds=60)
        self.cache = ResponseCache(self.redis, max_body_bytes=s.cache_max_body_bytes)
        self.calllog = CallLogBuffer(
            django_settings.REDIS_URL,
            django_settings.PORTICO_CALL_LOG_STREAM,
            Path(django_settings.VAR_DIR) / "spool",
        )
        await self.calllog.start()
        self.proxy = UpstreamProxy(self.cache, [str(network) for network in s.upstream_allowed_networks])
        self.router = Router(redis=self.redis)
        self.budgets = Budgets(self.redis, on_redis_failure=s.limits_on_redis_failure)
        self.llm_cache = LlmCache(self.redis)
        if s.otlp_endpoint:
            from gateway.otlp import SpanExport  # the OpenTelemetry SDK only when spans are exported

            self.spans = SpanExport(s.otlp_endpoint)
        await self._reload()
        self._tasks = [
            asyncio.create_task(self._watch_config(), name="config-watch"),
            asyncio.create_task(self._listen_config(), name="config-listen"),
            asyncio.create_task(self._flush_metrics(), name="metrics-flush"),
        ]
        if s.active_health_path:  # optional: passive checks (ejection on failures) are always on
            self._tasks.append(asyncio.create_task(self._probe_targets(), name="active-health"))

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        metrics.flush()
        await self.limiter.close()
        await self.calllog.stop()
        self.proxy.close()
        await self.redis.aclose()
        if self.spans is not None:
            # The processor's last export posts to the collector: off the loop, bounded.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.to_thread(self.spans.shutdown), SPANS_SHUTDOWN_SECONDS)

    # -- configuration ----------------------------------------------------------------------

    async def _config_version(self) -> int | None:
        try:
            return int(await self.redis.get(self.django_settings.PORTICO_CONFIG_VERSION_KEY) or 0)
        except (RedisError, OSError, ValueError):
            return None

    async def _reload(self, version: int | None = None) -> None:
        if version is None:
            version = await self._config_version()
        try:
            snapshot = await asyncio.to_thread(build_snapshot, version if version is not None else 0)
        except Exception:
            log.exception("could not load the configuration; keeping the current one")
            return
        self.snapshot = snapshot  # one reference swap: requests see the old or the new table, never a mix
        self.proxy.forget_routes_not_in(snapshot)
        self.router.reload(snapshot.ai)
        # The snapshot (and Django, loaded to build it) lives until the next reload: moved out of
        # the collector's sight, full collections stop walking it (they cost 7% of CPU and
        # tens of milliseconds of stall each under load). The load's own garbage is collected
        # first: frozen, any cycles in it (ORM objects) would never be freed. Only what was
        # made since the last freeze is walked, so this is quick.
        gc.collect()
        gc.freeze()
        self._last_full_reload = time.monotonic()
        log.info(
            "config version %s loaded: %d routes, %d keys, %d grants",
            snapshot.version,
            snapshot.route_count,
            len(snapshot.keys),
            len(snapshot.grants),
        )

    async def _watch_config(self) -> None:
        """Reload when the version changes (pub/sub wakes us; polling is the fallback), and in
        full every ``full_reload_seconds``: a safety net for changes that bypassed the
        services' version bump (a manual SQL edit)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), POLL_SECONDS)
            self._changed.clear()
            version = await self._config_version()
            stale = time.monotonic() - self._last_full_reload > self.settings.full_reload_seconds
            if (version is not None and version != self.snapshot.version) or stale or self.snapshot is EMPTY:
                await self._reload(version)

    async def _listen_config(self) -> None:
        while True:
            client = aioredis.Redis.from_url(self.django_settings.REDIS_URL, socket_connect_timeout=0.5)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(self.django_settings.PORTICO_CONFIG_CHANNEL)
                    async for message in pubsub.listen():
                        if message["type"] == "message":
                            self._changed.set()
            except (RedisError, OSError):
                await asyncio.sleep(1)
            finally:
                await client.aclose()

    async def _flush_metrics(self) -> None:
        while True:
            await asyncio.sleep(metrics.FLUSH_SECONDS)
            metrics.flush()

    async def _probe_targets(self) -> None:
        while True:
            await asyncio.sleep(self.settings.active_health_interval)
            await self.proxy.probe_all(self.snapshot, self.settings.active_health_path)


app = Gateway()
