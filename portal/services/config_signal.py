"""Tell the gateways that routable configuration changed.

After the writing transaction commits we bump a counter in Redis and publish the new value
on a channel. Gateways reload their snapshot on the message, and poll the counter as a
fallback, so a lost message costs at most one poll interval.
"""

import logging

import redis
from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)

_client: redis.Redis | None = None


def redis_client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    return _client


def current_config_version() -> int:
    value = redis_client().get(settings.PORTICO_CONFIG_VERSION_KEY)
    return int(value or 0)


def _bump(reason: str) -> None:
    try:
        client = redis_client()
        version = client.incr(settings.PORTICO_CONFIG_VERSION_KEY)
        client.publish(settings.PORTICO_CONFIG_CHANNEL, str(version))
    except redis.RedisError:
        # The change is committed; gateways still pick it up on their periodic full reload.
        log.warning("config change (%s) committed but Redis is unreachable; gateways reload on their timer", reason)


def publish_config_change(reason: str) -> None:
    """Bump the config version once the current transaction (if any) commits."""
    transaction.on_commit(lambda: _bump(reason))
