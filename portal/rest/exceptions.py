"""Every error of the REST API reads ``{"error": {"code": ..., "message": ...}}``."""

from typing import Any

from django.http import Http404
from django_ratelimit.exceptions import Ratelimited
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from portal.services.errors import ServiceError

CODES = {
    400: "invalid_request",  # malformed bodies; field errors are "invalid_input"
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def _message(detail: Any) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{field}: {_message(value)}" for field, value in detail.items())
    if isinstance(detail, list):
        return " ".join(_message(item) for item in detail)
    return str(detail)


def handle(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ServiceError):
        return Response({"error": {"code": exc.code, "message": exc.message}}, status=exc.status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, Ratelimited):  # a django-ratelimit decorator: a 429, not a 403
        exc = exceptions.Throttled(detail="Too many requests. Wait a minute and try again.")
    response = exception_handler(exc, context)
    if response is None:
        return None
    body = {"error": {"code": CODES.get(response.status_code, "error"), "message": _message(response.data)}}
    if isinstance(exc, exceptions.ValidationError):
        # The same code as a service's InvalidInput: to the client both mean "fix your input".
        body["error"].update(code="invalid_input", fields=response.data)
    response.data = body
    if response.status_code == status.HTTP_401_UNAUTHORIZED:
        response["WWW-Authenticate"] = 'Token realm="portico"'
    return response
