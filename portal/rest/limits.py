"""Abuse limits on the REST API's secret-issuing calls: the console's rates
(``portal.ratelimits``), per user and per IP, on their own counters.

django-ratelimit counts in the shared cache (Redis), so every portal worker sees one counter.
While Redis is unreachable ``portal.cache`` counts in each process instead (and logs it): a
brief outage neither stops developers nor answers 500, and the limits stay bounded.
"""

from django.http import HttpRequest
from django_ratelimit.core import is_ratelimited
from rest_framework.exceptions import Throttled

from portal import ratelimits


def _check(request: HttpRequest, group: str, what: str, rates: tuple[tuple[str, str], ...]) -> None:
    for key, rate in rates:
        limited = is_ratelimited(
            request, group=f"rest.{group}.{key}", key=key, rate=rate, method="POST", increment=True
        )
        if limited:
            raise Throttled(detail=f"Too many {what} (at most {rate.replace('/h', ' an hour')} per {key}).")


def check_key_creation(request: HttpRequest) -> None:
    _check(request, "key_create", "keys created", ratelimits.KEY_CREATION)


def check_key_rotation(request: HttpRequest) -> None:
    _check(request, "key_rotate", "keys rotated", ratelimits.KEY_ROTATION)


def check_token_creation(request: HttpRequest) -> None:
    _check(request, "token_create", "access tokens created", ratelimits.TOKEN_CREATION)
