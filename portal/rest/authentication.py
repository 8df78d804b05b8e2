from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from portal.services.tokens import user_for_token


class AccessTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Token pat_...`` (or ``Bearer pat_...``)."""

    keywords = ("token", "bearer")

    def authenticate(self, request: Request) -> tuple[User, None] | None:
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0].lower() not in self.keywords:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Send 'Authorization: Token <personal access token>'.")
        user = user_for_token(header[1])
        if user is None:
            raise exceptions.AuthenticationFailed("The access token is not valid, expired or revoked.")
        return user, None

    def authenticate_header(self, request: Request) -> str:
        return 'Token realm="portico"'


class AccessTokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]  # drf-spectacular's untyped registry
    target_class = "portal.rest.authentication.AccessTokenAuthentication"
    name = "AccessToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal access token: `manage.py create_access_token <user> <name>`.",
        }
