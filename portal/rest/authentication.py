from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from portal.services.tokens import user_for_token


class AccessTokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Token pat_...`` (or ``Bearer pat_...``)."""

    keywords = ("token", "bearer")

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1").split()
        if not header or header[0].lower() not in self.keywords:
            return None
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("Send 'Authorization: Token <personal access token>'.")
        user = user_for_token(header[1])
        if user is None:
            raise exceptions.AuthenticationFailed("The access token is not valid, expired or revoked.")
        return user, None

    def authenticate_header(self, request):
        return 'Token realm="portico"'


class AccessTokenScheme(OpenApiAuthenticationExtension):
    target_class = "portal.rest.authentication.AccessTokenAuthentication"
    name = "AccessToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A personal access token: `manage.py create_access_token <user> <name>`.",
        }
