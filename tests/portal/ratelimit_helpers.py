"""Helpers for tests of django-ratelimit's counters (the portal's abuse limits)."""

import time

from django_ratelimit.core import _get_window


def clear_counters(redis_client) -> None:
    """Forget every count: the session's Redis is shared by the tests that ran before."""
    for counter in redis_client.scan_iter("portico:cache*"):
        redis_client.delete(counter)


def start_of_a_fresh_window(value: str, period: int, *, needed: float = 15.0) -> None:
    """Wait, if need be, until ``value``'s counting window has at least ``needed`` seconds
    left, so a test's attempts all land in one window (django-ratelimit's windows are fixed
    and staggered per key value: a test could otherwise straddle a reset)."""
    window_end = _get_window(value, period)  # the last whole second of the current window
    if window_end - time.time() < needed:
        time.sleep(window_end + 1.05 - time.time())
