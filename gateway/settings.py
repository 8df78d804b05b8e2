"""The gateway's settings, read from the environment once into a frozen object.

Like uvicorn's ``Config``: every knob of the data plane is here with its default and its
environment variable, so a reader finds them in one place and nothing on the request path
reads ``os.environ``. ``docs/gateway.md`` ("Settings") lists them for operators.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from urllib.parse import urlsplit

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SettingsError(ValueError):
    """A setting in the environment that cannot be used: the gateway refuses to start."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env.get(name, "").strip().lower() or default
    if value not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _networks(env: Mapping[str, str], name: str, default: str) -> tuple[Network, ...]:
    raw = env.get(name, default)
    networks = []
    for item in raw.replace(" ", ",").split(","):
        if item:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise SettingsError(f"{name}: {item!r} is not an address or network") from None
    return tuple(networks)


def _ratio(env: Mapping[str, str], name: str, default: float) -> float:
    value = _float(env, name, default)
    if not value <= 1.0:  # also refuses NaN
        raise SettingsError(f"{name} must be between 0 and 1")
    return value


def _otlp_endpoint(env: Mapping[str, str]) -> str:
    """The OTLP/HTTP traces URL: ``GATEWAY_OTLP_ENDPOINT`` as it is, else OpenTelemetry's own
    variables with their meaning (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` as it is,
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` plus ``/v1/traces``), so a deployment that configures
    every service's exporter the standard way configures the gateway too.
    ``OTEL_SDK_DISABLED=true`` turns the standard ones off, not the gateway's own."""
    for name, suffix in (
        ("GATEWAY_OTLP_ENDPOINT", ""),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "/v1/traces"),
    ):
        raw = env.get(name, "").strip()
        if not raw:
            continue
        if name != "GATEWAY_OTLP_ENDPOINT" and env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return ""
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(f"{name} must be an http:// or https:// URL, not {raw!r}")
        return raw.rstrip("/") + suffix if suffix else raw
    return ""


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    # -- plan limits and abuse --------------------------------------------------------------
    # Rates while Redis is away: "open" enforces them per worker, "closed" answers 503.
    # Quotas never fail open (see limits.py): an exhausted quota stays exhausted.
    limits_on_redis_failure: str = "open"
    auth_failures_per_minute: int = 20
    # Client addresses are taken from X-Forwarded-For only when the TCP peer is one of these.
    trusted_proxies: tuple[Network, ...] = ()

    # -- configuration reloads ---------------------------------------------------------------
    full_reload_seconds: float = 30.0

    # -- authentication ----------------------------------------------------------------------
    key_query_param: bytes = b""  # off: keys in URLs end up in logs

    # -- upstream addresses ------------------------------------------------------------------
    # Networks a team's upstream targets may reach although they are not public; the same
    # variable the portal checks at save time (PORTICO_UPSTREAM_ALLOWED_NETWORKS), so both
    # checks agree. Staff's targets are not checked.
    upstream_allowed_networks: tuple[Network, ...] = ()

    # -- upstream health ---------------------------------------------------------------------
    active_health_path: bytes = b""
    active_health_interval: float = 5.0

    # -- request heads and slow clients (server.py) --------------------------------------------
    max_request_line_bytes: int = 8192  # method + target + version; more answers 414
    max_header_bytes: int = 32768  # all header lines together; more answers 431
    max_header_count: int = 100  # more answers 431
    head_timeout: float = 10.0  # from a request's first byte to its last header line; 408
    body_idle_timeout: float = 30.0  # longest pause inside a request body; 408
    max_connections_per_worker: int = 4096  # more are closed at once

    # -- response cache ----------------------------------------------------------------------
    cache_max_entries_per_version: int = 10_000  # oldest entries are evicted past this
    cache_max_body_bytes: int = 1_048_576

    # -- LLM endpoints -------------------------------------------------------------------------
    llm_max_body_bytes: int = 8 * 1024 * 1024  # a chat or embeddings body; more answers 413

    # -- MCP server (/mcp) -----------------------------------------------------------------------
    mcp_max_body_bytes: int = 1024 * 1024  # one JSON-RPC message or batch; more answers 413
    mcp_max_result_bytes: int = 1024 * 1024  # of an API's answer put in a tool result; the rest is cut

    # -- call log ----------------------------------------------------------------------------
    # Records held in memory while both Redis and the spool disk fail; past this the oldest
    # are dropped (counted in a metric, logged).
    calllog_max_pending: int = 200_000

    # -- tracing (gateway/tracing.py, gateway/otlp.py) -----------------------------------------
    # Where spans go (an OTLP/HTTP traces URL); empty: trace context is still propagated and
    # recorded, but nothing is exported and the OpenTelemetry SDK is not even imported.
    otlp_endpoint: str = ""
    # Share of the traces the gateway starts that are sampled; a client's sampled flag wins.
    trace_sample_ratio: float = 0.01

    # -- operations endpoints ------------------------------------------------------------------
    # /_portico/readyz and /_portico/metrics answer peers in ops_allow, or anyone presenting
    # this token as a bearer token. The legacy /readyz, /metrics, /healthz answer only peers
    # in ops_allow, and only where no API is routed.
    ops_token: str = field(default="", repr=False)
    ops_allow: tuple[Network, ...] = (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GatewaySettings:
        env = os.environ if env is None else env
        return cls(
            limits_on_redis_failure=_choice(env, "GATEWAY_LIMITS_ON_REDIS_FAILURE", "open", ("open", "closed")),
            auth_failures_per_minute=_int(env, "GATEWAY_AUTH_FAILURES_PER_MINUTE", 20, 1),
            trusted_proxies=_networks(env, "GATEWAY_TRUSTED_PROXIES", ""),
            full_reload_seconds=_float(env, "GATEWAY_FULL_RELOAD_SECONDS", 30.0, 1.0),
            key_query_param=env.get("GATEWAY_KEY_QUERY_PARAM", "").strip().encode(),
            upstream_allowed_networks=_networks(env, "PORTICO_UPSTREAM_ALLOWED_NETWORKS", ""),
            active_health_path=env.get("GATEWAY_ACTIVE_HEALTH_PATH", "").strip().encode(),
            active_health_interval=_float(env, "GATEWAY_ACTIVE_HEALTH_INTERVAL", 5.0, 0.1),
            max_request_line_bytes=_int(env, "GATEWAY_MAX_REQUEST_LINE_BYTES", 8192, 256),
            max_header_bytes=_int(env, "GATEWAY_MAX_HEADER_BYTES", 32768, 1024),
            max_header_count=_int(env, "GATEWAY_MAX_HEADER_COUNT", 100, 8),
            head_timeout=_float(env, "GATEWAY_HEAD_TIMEOUT", 10.0, 0.1),
            body_idle_timeout=_float(env, "GATEWAY_BODY_IDLE_TIMEOUT", 30.0, 0.1),
            max_connections_per_worker=_int(env, "GATEWAY_MAX_CONNECTIONS_PER_WORKER", 4096, 1),
            cache_max_entries_per_version=_int(env, "GATEWAY_CACHE_MAX_ENTRIES_PER_VERSION", 10_000, 1),
            cache_max_body_bytes=_int(env, "GATEWAY_CACHE_MAX_BODY_BYTES", 1_048_576, 0),
            llm_max_body_bytes=_int(env, "GATEWAY_LLM_MAX_BODY_BYTES", 8 * 1024 * 1024, 1024),
            mcp_max_body_bytes=_int(env, "GATEWAY_MCP_MAX_BODY_BYTES", 1024 * 1024, 1024),
            mcp_max_result_bytes=_int(env, "GATEWAY_MCP_MAX_RESULT_BYTES", 1024 * 1024, 1024),
            calllog_max_pending=_int(env, "GATEWAY_CALLLOG_MAX_PENDING", 200_000, 1000),
            otlp_endpoint=_otlp_endpoint(env),
            trace_sample_ratio=_ratio(env, "GATEWAY_TRACE_SAMPLE_RATIO", 0.01),
            ops_token=env.get("GATEWAY_OPS_TOKEN", "").strip(),
            ops_allow=_networks(env, "GATEWAY_OPS_ALLOW", "127.0.0.1/32,::1/128"),
        )


@cache
def gateway_settings() -> GatewaySettings:
    """The settings of this process, read once."""
    return GatewaySettings.from_env()
