"""Abuse limits on REST key creation: the same budget as the console's form, per user and per IP.

django-ratelimit counts in the shared cache (Redis), so every portal worker sees one counter.
"""

from django_ratelimit.core import is_ratelimited
from rest_framework.exceptions import Throttled

KEY_CREATION_RATES = (("user", "30/h"), ("ip", "60/h"))


def check_key_creation(request) -> None:
    for key, rate in KEY_CREATION_RATES:
        if is_ratelimited(request, group=f"rest.key_create.{key}", key=key, rate=rate, method="POST", increment=True):
            raise Throttled(detail=f"Too many keys created (at most {rate.replace('/h', ' an hour')} per {key}).")
