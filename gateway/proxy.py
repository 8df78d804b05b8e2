"""Calling upstreams for a request: the head sent upstream, target choice with retries,
and relaying the answer back. Also the active health probe, which uses the same pool.

What goes upstream is decided here and nowhere else:
- framing (Content-Length or chunked) always comes from what the gateway parsed, never
  copied from the client, so no header the client names in ``Connection`` can remove it;
- hop-by-hop headers, the consumer's key and every inbound ``X-Portico-*`` header are
  dropped; the gateway then adds its own identity headers, ``X-Forwarded-*`` and the trace
  context with its own span as the parent (``tracing.py``);
- the path is the target's own path plus the request's remainder cut by segments
  (``routing.forwarded_remainder``), so it never leaves the target's base path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gateway import metrics
from gateway.cache import CachedResponse, ResponseCache
from gateway.errors import Refusal, ResponseAborted
from gateway.httpclient import (
    UpstreamConnectError,
    UpstreamConnectTimeout,
    UpstreamPeerRefused,
    UpstreamPool,
    UpstreamProtocolError,
    UpstreamResponse,
    UpstreamStaleConnection,
    global_addresses_only,
)
from gateway.upstreams import Balancer, BalancerRegistry, TargetState

if TYPE_CHECKING:
    from gateway.call import Call
    from gateway.snapshot import Snapshot, Target

log = logging.getLogger("portico.gateway")

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"date",  # the server sets a fresh one
    }
)
# Written by the gateway itself from what it parsed or knows; a client's value never goes
# upstream as it is (X-Forwarded-For is rebuilt by clientaddress.py).
SET_BY_GATEWAY = frozenset(
    {
        b"host",
        b"content-length",
        b"expect",  # the gateway's server already answered 100-continue
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-request-id",
        # The gateway's own span is the upstream's parent (tracing.py); a client's tracestate
        # goes on only with a valid traceparent, checked and capped.
        b"traceparent",
        b"tracestate",
    }
)
NOT_COPIED_UPSTREAM = HOP_BY_HOP | SET_BY_GATEWAY
# Headers that may carry the consumer's key: dropped when they did.
KEY_HEADERS = frozenset({b"authorization", b"x-api-key"})
IDENTITY_PREFIX = b"x-portico-"
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
PROBE_TIMEOUT_SECONDS = 2.0


def upstream_head(call: Call, target: Target) -> bytes:
    """The request head for ``target``."""
    query = call.query
    lines = [
        b"%s %s%s%s HTTP/1.1\r\nhost: %s\r\n"
        % (
            call.method.encode(),
            target.path_prefix,
            call.forward_path,
            b"?" + query if query else b"",
            target.host_header,
        )
    ]
    connection = call.fields.get(b"connection")
    # Names the client lists in Connection are hop-by-hop to it (RFC 9110 7.6.1); only
    # headers that would otherwise be copied as they are can be removed that way.
    dropped = {t.strip().lower() for t in connection.split(b",")} if connection else ()
    key_header = call.key_header
    for name, value in call.scope["headers"]:
        # name[0] == 120 ("x") first: startswith on bytes costs 0.1 us, and few headers need it.
        if name in NOT_COPIED_UPSTREAM or name in dropped or (name[0] == 120 and name.startswith(IDENTITY_PREFIX)):
            continue
        if name == key_header and name in KEY_HEADERS:
            continue
        lines.append(b"%s: %s\r\n" % (name, value))
    key = call.key
    assert key is not None  # proxying happens only after authentication
    if call.chunked_body:
        framing = b"transfer-encoding: chunked\r\n"
    elif call.content_length is not None:
        framing = b"content-length: %d\r\n" % call.content_length
    else:
        framing = b""
    lines.append(
        b"x-forwarded-for: %s\r\nx-forwarded-proto: %s\r\nx-forwarded-host: %s\r\nx-request-id: %s\r\n"
        b"x-portico-application-id: %d\r\nx-portico-tenant-id: %d\r\n%s%s\r\n"
        % (
            call.forwarded_for,
            b"https" if call.scope.get("scheme") == "https" else b"http",
            call.fields.get(b"host", b""),
            call.echo_id,
            key.application_id,
            key.tenant_id,
            call.trace_lines,  # tracing.start made them: no encoding or formatting per attempt
            framing,
        )
    )
    return b"".join(lines)


class UpstreamProxy:
    """Per worker: the connection pools and each route's balancer.

    Two pools: ``pool`` for staff's targets (and the LLM providers), and ``checked_pool`` for
    targets a team set (``Target.requires_public_address``), whose every new connection
    resolves the host and connects only to an address ``global_addresses_only`` passes. Two
    pools, not one with a flag per connection, so an idle connection opened unchecked for a
    staff target can never be reused for a team's target to the same host and port. Pooled
    connections are reused without a check: the address they reached was checked.
    """

    def __init__(self, cache: ResponseCache, allowed_networks: Sequence[str] = ()):
        self.pool = UpstreamPool(drop_response_headers=HOP_BY_HOP)
        self.checked_pool = UpstreamPool(
            drop_response_headers=HOP_BY_HOP, peer_check=global_addresses_only(allowed_networks)
        )
        self.balancers = BalancerRegistry()
        self.cache = cache

    def pool_for(self, target: Target) -> UpstreamPool:
        return self.checked_pool if target.requires_public_address else self.pool

    def forget_routes_not_in(self, snapshot: Snapshot) -> None:
        self.balancers.forget_others({route.version_id for route in snapshot.routes})

    def close(self) -> None:
        self.pool.close()
        self.checked_pool.close()

    async def send(self, call: Call) -> tuple[UpstreamResponse, TargetState, Balancer]:
        """Send the request to a target, retrying others for idempotent bodiless requests when
        a connection fails; returns once the answer's head has arrived."""
        route = call.route
        assert route is not None
        record = call.record
        balancer = self.balancers.for_route(route)
        replayable = call.method in IDEMPOTENT and not call.has_body
        attempts = 1 + (route.retries if replayable else 0)
        tried: list[str] = []
        connect_timed_out = False
        address_refused = False
        started = time.perf_counter()
        for _attempt in range(attempts):
            state = balancer.pick(tried)
            if state is None:
                break
            tried.append(state.url)
            target = state.target
            state.active += 1
            try:
                # Inline, not pool_for(): one attribute test per request for ordinary targets.
                pool = self.checked_pool if target.requires_public_address else self.pool
                response = await pool.request(
                    target.pool_key,
                    upstream_head(call, target),
                    call.body_chunks() if call.has_body else None,
                    chunked=call.chunked_body,
                    head_request=call.method == "HEAD",
                    connect_timeout=route.connect_timeout,
                    read_timeout=route.read_timeout,
                    total_timeout=route.total_timeout,
                    replayable=replayable,
                )
            except TimeoutError:
                state.active -= 1
                record.upstream_latency_ms = round((time.perf_counter() - started) * 1000, 3)
                metrics.UPSTREAM_ERRORS.labels("timeout").inc()
                raise Refusal(504, "upstream_timeout", "The upstream did not answer in time.") from None
            except UpstreamStaleConnection:
                state.active -= 1  # a kept-alive connection closed under us: the target is fine
                continue
            except UpstreamPeerRefused as error:
                # A team's target resolved to an address it may not reach (counted by the pool
                # as peer_refused). Ejected like an unreachable one, so a version's other
                # targets take the traffic and the name is not resolved on every request.
                state.active -= 1
                balancer.report_connect_failure(state)
                address_refused = True
                log.debug("upstream %s refused: %s", state.url, error)
                continue
            except UpstreamConnectError as error:
                state.active -= 1
                balancer.report_connect_failure(state)
                connect_timed_out = isinstance(error, UpstreamConnectTimeout)
                metrics.UPSTREAM_ERRORS.labels("connect_timeout" if connect_timed_out else "connect").inc()
                continue
            except UpstreamProtocolError as error:
                state.active -= 1
                metrics.UPSTREAM_ERRORS.labels("protocol").inc()
                log.warning("upstream %s failed: %r", state.url, error)
                raise Refusal(502, "bad_gateway", "The upstream failed to answer.") from None
            except BaseException:  # the request body's own refusals (413, 408), or the client left
                state.active -= 1
                raise
            record.upstream_latency_ms = round((time.perf_counter() - started) * 1000, 3)
            return response, state, balancer

        record.upstream_latency_ms = round((time.perf_counter() - started) * 1000, 3)
        if not tried:
            raise Refusal(503, "no_upstream", "This API has no upstream target.")
        if address_refused:
            raise Refusal(
                502,
                "upstream_address_refused",
                "The upstream's address is not a public one, and the gateway may not connect there.",
            )
        if connect_timed_out:
            raise Refusal(504, "upstream_timeout", "No upstream target answered in time.")
        raise Refusal(502, "upstream_unreachable", "No upstream target could be reached.")

    async def relay(self, call: Call, response: UpstreamResponse, state: TargetState, balancer: Balancer) -> None:
        """Stream the answer back; tee it into the cache when it may be stored. An upstream
        that fails after the answer started aborts the client's connection (ResponseAborted):
        ending the message normally would make a cut answer look complete."""
        route = call.route
        assert route is not None
        record = call.record
        status = response.status
        if status >= 500:
            balancer.report_server_error(state)
        else:
            balancer.report_success(state)
        headers = response.headers  # hop-by-hop ones are left out by the pool
        store_ttl = None
        if call.cache_key is not None:
            store_ttl = self.cache.ttl_for(status, headers, route.cache_ttl)
        record.status = status
        await call.start_response(status, headers + call.headers_out)
        if response.complete_in_one_chunk() and not store_ttl:
            # A small answer that has fully arrived: one body message instead of two.
            body = response.take_all()
            record.bytes_out = len(body)
            await call.finish(body)
            return
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
                await call.send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (TimeoutError, UpstreamConnectError, UpstreamProtocolError) as error:
            record.bytes_out = sent
            record.error_code = "upstream_timeout" if isinstance(error, TimeoutError) else "upstream_truncated"
            metrics.UPSTREAM_ERRORS.labels("truncated").inc()
            raise ResponseAborted(record.error_code) from error
        record.bytes_out = sent
        await call.finish(b"")
        if kept is not None and store_ttl and call.cache_key is not None:
            await self.cache.store(call.cache_key, CachedResponse(status, headers, b"".join(kept)), store_ttl)

    # -- active health checks ---------------------------------------------------------------

    async def probe_all(self, snapshot: Snapshot, path: bytes) -> None:
        """GET ``path`` on each routed target once; 2xx/3xx readmits it, anything else (or no
        answer) ejects it, so traffic stops before a request has to fail."""
        # A team's target and a staff one at the same URL are probed apart: the team's
        # probe goes through the checked pool, and must not borrow the staff one's verdict.
        states: dict[tuple[str, bool], list[TargetState]] = {}
        for route in snapshot.routes:
            if route.state != "retired" and route.targets:
                for state in self.balancers.for_route(route).targets:
                    states.setdefault((state.url, state.target.requires_public_address), []).append(state)
        verdicts = await asyncio.gather(*(self._probe(group[0].target, path) for group in states.values()))
        for group, healthy in zip(states.values(), verdicts, strict=True):
            for state in group:
                Balancer.report_probe(state, healthy)

    async def _probe(self, target: Target, path: bytes) -> bool:
        head = b"GET %s%s HTTP/1.1\r\nhost: %s\r\nuser-agent: portico-gateway-health\r\n\r\n" % (
            target.path_prefix,
            path,
            target.host_header,
        )
        try:
            response = await self.pool_for(target).request(
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
