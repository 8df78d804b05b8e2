"""The gateway's ASGI application: the hot path, top to bottom, in one screen per step.

Per request: request id -> route (404) -> retired (410) -> auth-failure limiter (429) ->
key (401) -> subscription (403) -> plan limits (429, one Redis round trip) -> body size
(413) -> cache (HIT) -> upstream with retries (502/503/504) -> stream the answer back ->
one call-log record, whatever happened. No database query and no Django on this path.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import os
import re
import time
from pathlib import Path

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway import metrics
from gateway.auth import AuthFailure, AuthFailureLimiter, authenticate, key_from_query, presented_key
from gateway.cache import CachedResponse, ResponseCache
from gateway.calllog import CallLogBuffer
from gateway.errors import error_body, send_json
from gateway.httpclient import (
    UpstreamConnectError,
    UpstreamConnectTimeout,
    UpstreamPool,
    UpstreamProtocolError,
    UpstreamStaleConnection,
)
from gateway.limits import PlanLimiter
from gateway.redisconn import FastRedis
from gateway.snapshot import EMPTY, Snapshot, build_snapshot
from gateway.upstreams import Balancer, BalancerRegistry

log = logging.getLogger("portico.gateway")

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"date",  # uvicorn sets a fresh one
    }
)
# Set by the gateway itself: a client's values are replaced (X-Forwarded-For is extended).
FORWARDING_HEADERS = frozenset({b"x-forwarded-proto", b"x-forwarded-host", b"x-request-id"})
# Request headers not copied upstream as they are: dropped, replaced, or dropped when they carry the key.
NOT_COPIED_UPSTREAM = HOP_BY_HOP | FORWARDING_HEADERS | {b"host", b"x-forwarded-for", b"authorization", b"x-api-key"}
CORS_EXPOSE = (
    b"access-control-expose-headers",
    b"x-request-id, x-cache, ratelimit, ratelimit-policy, ratelimit-limit, ratelimit-remaining, ratelimit-reset, "
    b"retry-after, deprecation, sunset, link",
)
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{8,128}$")
PROBE_TIMEOUT_SECONDS = 2.0
POLL_SECONDS = 0.5
FULL_RELOAD_SECONDS = 30.0


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


class Gateway:
    def __init__(self):
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
        import django

        django.setup()  # settings only: the ORM is used by the snapshot loader, in a thread
        from django.conf import settings

        self.settings = settings
        self.snapshot: Snapshot = EMPTY
        self.balancers = BalancerRegistry()
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.redis: FastRedis | None = None
        self._id_prefix = ""
        self._id_counter = itertools.count()

    def _new_request_id(self) -> str:
        """32 hex digits, unique across workers and restarts: a random per-worker-start prefix
        and a counter (uuid4 cost 2% of the request path)."""
        return f"{self._id_prefix}{next(self._id_counter):016x}"

    # -- lifespan -----------------------------------------------------------------------

    async def startup(self) -> None:
        s = self.settings
        self._id_prefix = os.urandom(8).hex()  # here, in the worker: never shared by a fork
        # A safety net for changes that bypassed the services' version bump (a manual SQL edit).
        self._full_reload_seconds = float(os.environ.get("GATEWAY_FULL_RELOAD_SECONDS", FULL_RELOAD_SECONDS))
        # Per request the gateway makes many short-lived containers; young collections every
        # 700 of them were frequent for no gain (almost everything dies by reference count).
        gc.set_threshold(20_000, 20, 20)
        # No client-side retries: a request must not wait out backoffs; the limiter's breaker
        # and the fail-open policy handle a Redis that is away.
        self.redis = FastRedis(s.REDIS_URL, timeout=1.0, connect_timeout=0.5)
        self.limiter = PlanLimiter(
            self.redis, on_redis_failure=os.environ.get("GATEWAY_LIMITS_ON_REDIS_FAILURE", "open")
        )
        self.auth_failures = AuthFailureLimiter(
            self.redis,
            max_failures=int(os.environ.get("GATEWAY_AUTH_FAILURES_PER_MINUTE", "20")),
            window_seconds=60,
        )
        self.cache = ResponseCache(self.redis)
        self.calllog = CallLogBuffer(s.REDIS_URL, s.PORTICO_CALL_LOG_STREAM, Path(s.VAR_DIR) / "spool")
        await self.calllog.start()
        self.upstream = UpstreamPool(drop_response_headers=HOP_BY_HOP)
        self.cors_origins = {o.encode() for o in s.PORTICO_CORS_ORIGINS}
        # Off by default: a key in the URL leaks into logs and browser history.
        self.key_query_param = os.environ.get("GATEWAY_KEY_QUERY_PARAM", "").encode()
        await self._reload()
        self._tasks = [
            asyncio.create_task(self._watch_config(), name="config-watch"),
            asyncio.create_task(self._listen_config(), name="config-listen"),
            asyncio.create_task(self._flush_metrics(), name="metrics-flush"),
        ]
        health_path = os.environ.get("GATEWAY_ACTIVE_HEALTH_PATH", "")
        if health_path:  # optional: passive checks (ejection on failures) are always on
            interval = float(os.environ.get("GATEWAY_ACTIVE_HEALTH_INTERVAL", "5"))
            self._tasks.append(
                asyncio.create_task(self._probe_targets(health_path.encode(), interval), name="active-health")
            )

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        metrics.flush()
        await self.limiter.close()
        await self.calllog.stop()
        self.upstream.close()
        await self.redis.aclose()

    # -- configuration ------------------------------------------------------------------

    async def _config_version(self) -> int | None:
        try:
            return int(await self.redis.get(self.settings.PORTICO_CONFIG_VERSION_KEY) or 0)
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
        self.balancers.forget_others({route.version_id for route in snapshot.routes})
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
        """Reload when the version changes (pub/sub wakes us; polling is the fallback)."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), POLL_SECONDS)
            self._changed.clear()
            version = await self._config_version()
            stale = time.monotonic() - self._last_full_reload > self._full_reload_seconds
            if (version is not None and version != self.snapshot.version) or stale or self.snapshot is EMPTY:
                await self._reload(version)

    async def _listen_config(self) -> None:
        while True:
            client = aioredis.Redis.from_url(self.settings.REDIS_URL, socket_connect_timeout=0.5)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(self.settings.PORTICO_CONFIG_CHANNEL)
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

    # -- active health checks -------------------------------------------------------------

    async def _probe_targets(self, path: bytes, interval: float) -> None:
        """Every ``interval``: GET ``path`` on each routed target; 2xx/3xx readmits it, anything
        else (or no answer) ejects it, so traffic stops before a request has to fail."""
        while True:
            await asyncio.sleep(interval)
            states: dict[str, list] = {}
            for route in self.snapshot.routes:
                if route.state != "retired" and route.targets:
                    for state in self.balancers.for_route(route).targets:
                        states.setdefault(state.url, []).append(state)
            verdicts = await asyncio.gather(*(self._probe(group[0].target, path) for group in states.values()))
            for group, healthy in zip(states.values(), verdicts, strict=True):
                for state in group:
                    Balancer.report_probe(state, healthy)

    async def _probe(self, target, path: bytes) -> bool:
        head = b"GET %s%s HTTP/1.1\r\nhost: %s\r\nuser-agent: portico-gateway-health\r\n\r\n" % (
            target.path_prefix,
            path,
            target.host_header,
        )
        try:
            response = await self.upstream.request(
                target.pool_key,
                head,
                None,
                chunked=False,
                head_request=False,
                connect_timeout=PROBE_TIMEOUT_SECONDS,
                read_timeout=PROBE_TIMEOUT_SECONDS,
                total_timeout=PROBE_TIMEOUT_SECONDS,
                replayable=True,
            )
        except (TimeoutError, UpstreamConnectError, UpstreamProtocolError):
            return False
        try:
            async for _chunk in response.iter_chunks():
                pass
        except (TimeoutError, UpstreamConnectError, UpstreamProtocolError):
            return False
        finally:
            response.release()
        return 200 <= response.status < 400

    # -- ASGI ---------------------------------------------------------------------------

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            await self.handle(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive, send):
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

    async def handle(self, scope, receive, send):
        started = time.perf_counter()
        path = scope["path"]
        method = scope["method"]
        if path in OPS_PATHS:
            await OPS_PATHS[path](self, send, method)
            return

        # One C call instead of a Python loop over every header; a repeated header's last value
        # wins, as it did in the loop this replaced.
        fields = dict(scope["headers"])
        get = fields.get
        origin = get(b"origin")
        client_request_id = get(b"x-request-id")
        chunked = b"transfer-encoding" in fields

        request_id = self._new_request_id()
        if client_request_id is not None:
            candidate = client_request_id.decode("latin-1")
            echo_id = candidate if SANE_REQUEST_ID.match(candidate) else request_id
        else:
            echo_id = request_id
        client_ip = scope["client"][0] if scope.get("client") else ""
        record = {
            "request_id": request_id,
            "client_request_id": echo_id if echo_id != request_id else None,
            "time": time.time(),
            "api_id": None,
            "version_id": None,
            "tenant_id": None,
            "application_id": None,
            "key_prefix": "",
            "method": method,
            "path": path[:2000],
            "status": 0,
            "latency_ms": 0.0,
            "upstream_latency_ms": None,
            "bytes_in": 0,
            "bytes_out": 0,
            "cache_hit": 0,
            "error_code": "",
            "client_ip": client_ip,
        }
        headers_out = [(b"x-request-id", echo_id.encode())]
        if origin is not None and origin in self.cors_origins:
            # The portal's try-it console calls the gateway from the browser.
            headers_out += [(b"access-control-allow-origin", origin), (b"vary", b"origin"), CORS_EXPOSE]
            if method == "OPTIONS":
                await self._preflight(scope, send, headers_out, record)
                return
        try:
            status = await self._serve(scope, receive, send, record, headers_out, fields, chunked)
        except Exception:
            log.exception("unexpected error on %s %s", method, path)
            status = 500
            record["error_code"] = record["error_code"] or "internal_error"
            with contextlib.suppress(Exception):
                await send_json(
                    send, 500, error_body("internal_error", "The gateway failed; this is logged."), headers_out
                )
        elapsed = time.perf_counter() - started
        record["status"] = status
        record["latency_ms"] = round(elapsed * 1000, 3)
        self.calllog.append(record)
        metrics.count_request(status, elapsed)

    async def _preflight(self, scope, send, headers_out, record) -> None:
        requested = next((v for k, v in scope["headers"] if k == b"access-control-request-headers"), b"")
        headers_out += [
            (b"access-control-allow-methods", b"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            (b"access-control-allow-headers", requested or b"authorization, x-api-key, content-type"),
            (b"access-control-max-age", b"600"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers_out})
        await send({"type": "http.response.body", "body": b""})
        record["status"] = 204
        self.calllog.append(record)

    async def _refuse_auth_flood(self, send, record, headers_out, method: str) -> int:
        headers_out.append((b"retry-after", str(self.auth_failures.window).encode()))
        return await self._refuse(
            send, record, headers_out, 429, "too_many_auth_failures", "Too many failed attempts; wait.", method
        )

    async def _refuse(self, send, record, headers_out, status: int, code: str, message: str, method: str) -> int:
        record["error_code"] = code
        body = error_body(code, message)
        record["bytes_out"] = len(body)
        await send_json(send, status, body, headers_out, head=method == "HEAD")
        return status

    async def _serve(self, scope, receive, send, record, headers_out, fields: dict, chunked: bool) -> int:
        method = record["method"]
        snapshot = self.snapshot
        host = fields.get(b"host")
        host_name = host.split(b":", 1)[0].decode("latin-1").lower() if host else ""
        route, _rest = snapshot.routes.match(scope["path"], host_name)
        if route is None:
            return await self._refuse(send, record, headers_out, 404, "route_not_found", "No API at this path.", method)
        record["api_id"] = route.api_id
        record["version_id"] = route.version_id
        if route.state == "retired":
            return await self._refuse(
                send, record, headers_out, 410, "version_retired", "This API version is retired.", method
            )
        headers_out.extend(route.deprecation_headers)

        client_ip = record["client_ip"]
        if self.auth_failures.is_blocked(client_ip):
            return await self._refuse_auth_flood(send, record, headers_out, method)
        presented, key_header = presented_key(fields.get(b"authorization"), fields.get(b"x-api-key"))
        query = scope["query_string"]
        if self.key_query_param and query:
            # Removed from what goes upstream even when a header carried the key.
            from_query, query = key_from_query(query, self.key_query_param)
            presented = presented or from_query
        try:
            key = authenticate(snapshot.keys, presented)
        except AuthFailure as failure:
            if presented and await self.auth_failures.record_failure(client_ip):
                return await self._refuse_auth_flood(send, record, headers_out, method)
            headers_out.append((b"www-authenticate", b'Bearer realm="portico"'))
            return await self._refuse(send, record, headers_out, 401, failure.code, failure.message, method)
        record["key_prefix"] = key.prefix
        record["tenant_id"] = key.tenant_id
        record["application_id"] = key.application_id

        grant = snapshot.grants.get((key.application_id, route.api_id))
        if grant is None:
            return await self._refuse(
                send,
                record,
                headers_out,
                403,
                "not_subscribed",
                "This application has no approved subscription to this API.",
                method,
            )
        # Most requests are admitted from this worker's reserved units, without an await.
        decision = self.limiter.admit_reserved(grant.subscription_id, grant.limits)
        if decision is None:
            decision = await self.limiter.check(grant.subscription_id, grant.limits)
        headers_out.extend(decision.headers)
        if not decision.allowed:
            status = 503 if decision.error_code == "limits_unavailable" else 429
            return await self._refuse(send, record, headers_out, status, decision.error_code, decision.message, method)

        content_length = fields.get(b"content-length")
        if content_length is not None:
            try:
                declared = int(content_length)
            except ValueError:
                return await self._refuse(
                    send, record, headers_out, 400, "bad_content_length", "Content-Length is not a number.", method
                )
            if declared > route.max_request_bytes:
                return await self._refuse(
                    send,
                    record,
                    headers_out,
                    413,
                    "request_too_large",
                    f"The request body exceeds {route.max_request_bytes} bytes.",
                    method,
                )
        has_body = chunked or (content_length is not None and content_length != b"0")

        cache_key = None
        if route.cache_ttl and not has_body and self.cache.request_allows_cache(method, scope["headers"]):
            cache_key = self.cache.key_for(route.version_id, key.application_id, "GET", scope["path"], query)
            cached = await self.cache.lookup(cache_key)
            if cached is not None:
                record["cache_hit"] = 1
                record["bytes_out"] = len(cached.body)
                await send(
                    {
                        "type": "http.response.start",
                        "status": cached.status,
                        "headers": [*cached.headers, *headers_out, (b"x-cache", b"HIT")],
                    }
                )
                await send({"type": "http.response.body", "body": b"" if method == "HEAD" else cached.body})
                return cached.status
            headers_out.append((b"x-cache", b"MISS"))
        elif route.cache_ttl:
            headers_out.append((b"x-cache", b"MISS"))

        return await self._proxy(
            scope,
            receive,
            send,
            record,
            headers_out,
            route,
            key,
            key_header,
            query,
            has_body,
            cache_key,
            # A body without Content-Length (chunked from the client) goes upstream chunked too.
            chunked_body=has_body and content_length is None,
            connection=fields.get(b"connection"),
        )

    def _upstream_head(
        self,
        scope,
        method: str,
        target,
        raw_rest: bytes,
        query: bytes,
        key,
        key_header,
        record,
        chunked: bool,
        connection: bytes | None,
    ):
        """The request head sent upstream: hop-by-hop and the consumer's key removed,
        X-Forwarded-* and the consumer's identity added."""
        # Headers the client's Connection header names are hop-by-hop too (RFC 9110 7.6.1).
        dropped = {t.strip().lower() for t in connection.split(b",")} if connection else ()
        forwarded_for = record["client_ip"].encode()
        original_host = b""
        lines = [
            b"%s %s%s%s HTTP/1.1\r\nhost: %s\r\n"
            % (
                method.encode(),
                target.path_prefix,
                raw_rest,
                b"?" + query if query else b"",
                target.host_header,
            )
        ]
        for name, value in scope["headers"]:
            if name in dropped:
                continue
            if name in NOT_COPIED_UPSTREAM:  # one set lookup for the common header
                if name == b"host":
                    original_host = value
                elif name == b"x-forwarded-for":
                    forwarded_for = value + b", " + forwarded_for
                elif name != key_header and name not in HOP_BY_HOP and name not in FORWARDING_HEADERS:
                    lines.append(b"%s: %s\r\n" % (name, value))  # a key header that did not carry the key
                continue
            lines.append(b"%s: %s\r\n" % (name, value))
        lines.append(
            b"x-forwarded-for: %s\r\nx-forwarded-proto: %s\r\nx-forwarded-host: %s\r\nx-request-id: %s\r\n"
            b"x-portico-application-id: %d\r\nx-portico-tenant-id: %d\r\n%s\r\n"
            % (
                forwarded_for,
                scope.get("scheme", "http").encode(),
                original_host,
                (record["client_request_id"] or record["request_id"]).encode(),
                key.application_id,
                key.tenant_id,
                b"transfer-encoding: chunked\r\n" if chunked else b"",
            )
        )
        return b"".join(lines)

    async def _proxy(
        self,
        scope,
        receive,
        send,
        record,
        headers_out,
        route,
        key,
        key_header,
        query,
        has_body,
        cache_key,
        chunked_body: bool,
        connection: bytes | None,
    ) -> int:
        method = record["method"]
        balancer: Balancer = self.balancers.for_route(route)
        raw_path = scope.get("raw_path") or scope["path"].encode()
        raw_rest = raw_path[len(route.base_path) :] or b"/"

        body_state = {"bytes": 0, "too_large": False, "client_gone": False}
        limit = route.max_request_bytes

        async def request_body():
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    body_state["client_gone"] = True
                    raise ClientGone()
                chunk = message.get("body", b"")
                more = message.get("more_body", False)
                body_state["bytes"] += len(chunk)
                if body_state["bytes"] > limit:
                    body_state["too_large"] = True
                    raise BodyTooLarge()
                if chunk:
                    yield chunk

        replayable = method in IDEMPOTENT and not has_body
        attempts = 1 + (route.retries if replayable else 0)
        tried: list[str] = []
        connect_timed_out = False
        upstream_started = time.perf_counter()
        response = None
        state = None
        for _attempt in range(attempts):
            state = balancer.pick(tried)
            if state is None:
                break
            tried.append(state.url)
            target = state.target
            state.active += 1
            try:
                response = await self.upstream.request(
                    target.pool_key,
                    self._upstream_head(
                        scope, method, target, raw_rest, query, key, key_header, record, chunked_body, connection
                    ),
                    request_body() if has_body else None,
                    chunked=chunked_body,
                    head_request=method == "HEAD",
                    connect_timeout=route.connect_timeout,
                    read_timeout=route.read_timeout,
                    total_timeout=route.total_timeout,
                    replayable=replayable,
                )
                record["upstream_latency_ms"] = round((time.perf_counter() - upstream_started) * 1000, 3)
                break
            except TimeoutError:
                state.active -= 1
                record["upstream_latency_ms"] = round((time.perf_counter() - upstream_started) * 1000, 3)
                metrics.UPSTREAM_ERRORS.labels("timeout").inc()
                return await self._refuse(
                    send, record, headers_out, 504, "upstream_timeout", "The upstream did not answer in time.", method
                )
            except Exception as error:
                state.active -= 1
                record["bytes_in"] = body_state["bytes"]
                if body_state["too_large"]:
                    return await self._refuse(
                        send,
                        record,
                        headers_out,
                        413,
                        "request_too_large",
                        f"The request body exceeds {limit} bytes.",
                        method,
                    )
                if body_state["client_gone"]:
                    record["error_code"] = "client_disconnected"
                    return 499
                if isinstance(error, UpstreamStaleConnection):
                    # A kept-alive connection closed under us: the target is fine.
                    continue
                if isinstance(error, UpstreamConnectError):
                    balancer.report_connect_failure(state)
                    connect_timed_out = isinstance(error, UpstreamConnectTimeout)
                    metrics.UPSTREAM_ERRORS.labels("connect_timeout" if connect_timed_out else "connect").inc()
                    continue
                metrics.UPSTREAM_ERRORS.labels("protocol").inc()
                log.warning("upstream %s failed: %r", state.url, error)
                return await self._refuse(
                    send, record, headers_out, 502, "bad_gateway", "The upstream failed to answer.", method
                )

        if response is None:
            record["upstream_latency_ms"] = round((time.perf_counter() - upstream_started) * 1000, 3)
            if not tried:
                return await self._refuse(
                    send, record, headers_out, 503, "no_upstream", "This API has no upstream target.", method
                )
            if connect_timed_out:
                return await self._refuse(
                    send, record, headers_out, 504, "upstream_timeout", "No upstream target answered in time.", method
                )
            return await self._refuse(
                send, record, headers_out, 502, "upstream_unreachable", "No upstream target could be reached.", method
            )

        try:
            return await self._relay(send, record, headers_out, response, balancer, state, cache_key, route, method)
        finally:
            state.active -= 1
            response.release()
            record["bytes_in"] = body_state["bytes"]

    async def _relay(self, send, record, headers_out, response, balancer, state, cache_key, route, method) -> int:
        status = response.status
        if status >= 500:
            balancer.report_server_error(state)
        else:
            balancer.report_success(state)
        headers = response.headers  # hop-by-hop ones are left out by the pool
        store_ttl = None
        if cache_key is not None:
            store_ttl = self.cache.ttl_for(status, headers, route.cache_ttl)
        await send({"type": "http.response.start", "status": status, "headers": headers + headers_out})
        if response.complete_in_one_chunk() and not store_ttl:
            # A small answer that has fully arrived: one body message instead of two.
            body = response.take_all()
            record["bytes_out"] = len(body)
            await send({"type": "http.response.body", "body": body})
            return status
        sent = 0
        kept: list[bytes] | None = [] if store_ttl else None
        try:
            async for chunk in response.iter_chunks():
                sent += len(chunk)
                if kept is not None:
                    if sent <= self.cache.max_body_bytes:
                        kept.append(chunk)
                    else:
                        kept = None
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        except (TimeoutError, UpstreamConnectError, UpstreamProtocolError) as error:
            # The answer had started; all we can do is cut it short and say so in the log.
            record["error_code"] = "upstream_timeout" if isinstance(error, TimeoutError) else "upstream_broken"
            record["bytes_out"] = sent
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b""})
            return status
        record["bytes_out"] = sent
        if kept is not None and store_ttl:
            await self.cache.store(cache_key, CachedResponse(status, headers, b"".join(kept)), store_ttl)
        return status


# -- operations endpoints -----------------------------------------------------------------


async def _healthz(gateway: Gateway, send, method):
    await send_json(send, 200, b'{"status":"ok"}', [])


async def _readyz(gateway: Gateway, send, method):
    redis_ok = False
    with contextlib.suppress(RedisError, OSError, AttributeError):
        redis_ok = bool(await gateway.redis.ping())
    loaded = gateway.snapshot is not EMPTY
    body = (
        f'{{"status":"{"ready" if redis_ok and loaded else "not_ready"}","config_loaded":{str(loaded).lower()},'
        f'"config_version":{gateway.snapshot.version},"redis":{str(redis_ok).lower()},'
        f'"routes":{gateway.snapshot.route_count},"pid":{os.getpid()}}}'
    ).encode()
    await send_json(send, 200 if redis_ok and loaded else 503, body, [])


async def _metrics(gateway: Gateway, send, method):
    body, content_type = metrics.render()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


OPS_PATHS = {"/healthz": _healthz, "/readyz": _readyz, "/metrics": _metrics}

app = Gateway()
