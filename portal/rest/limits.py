"""Abuse limits on REST key creation: the console form's rates, per user and per IP (own counters).

django-ratelimit counts in the shared cache (Redis), so every portal worker sees one counter.
When Redis is unreachable the limit fails open (``portal.cache`` logs it): a brief outage
should not stop developers from creating keys, and must not answer 500.
"""

from django_ratelimit.core import is_ratelimited
from rest_framework.exceptions import Throttled

KEY_CREATION_RATES = (("user", "30/h"), ("ip", "60/h"))


def check_key_creation(request) -> None:
    for key, rate in KEY_CREATION_RATES:
        limited = is_ratelimited(
            request, group=f"rest.key_create.{key}", key=key, rate=rate, method="POST", increment=True
        )
        if limited:
            raise Throttled(detail=f"Too many keys created (at most {rate.replace('/h', ' an hour')} per {key}).")
