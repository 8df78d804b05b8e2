"""DRF's per-person throttle, failing open when the cache (Redis) is unreachable.

The throttle protects the control plane from a runaway script; refusing every API call
(or answering 500) because Redis is briefly away would be the greater harm.
"""

import logging

from redis.exceptions import RedisError
from rest_framework.throttling import UserRateThrottle

log = logging.getLogger(__name__)

CACHE_FAILURES = (RedisError, ConnectionError, TimeoutError)


class PersonThrottle(UserRateThrottle):
    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except CACHE_FAILURES as error:
            log.warning("API throttle skipped, the cache is unreachable: %s", error)
            return True
