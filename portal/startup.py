"""Checks the portal's server makes before it serves anything (portal/wsgi.py, portal/asgi.py)."""

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


def check_secret_key() -> None:
    """Refuse to serve on a generated SECRET_KEY unless DEBUG is on (a local run): in
    production every portal process must sign sessions and reset links with one shared,
    managed key, and a key made inside a container dies with it."""
    if not settings.DEBUG and not settings.SECRET_KEY_FROM_ENVIRONMENT:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. Set it in the environment (50 random characters, the same for "
            "every portal process), or set DEBUG=1 for a local run, which keeps a generated key in var/."
        )
