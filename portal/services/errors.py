"""Errors that services raise. Each carries an HTTP status and a stable machine code, so
every caller (portal view, admin action, REST API) can answer the same clear way."""


class ServiceError(Exception):
    status = 400
    code = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class InvalidInput(ServiceError):
    status = 400
    code = "invalid_input"


class NotFound(ServiceError):
    """Also used when the object exists but belongs to another tenant: we never confirm it."""

    status = 404
    code = "not_found"


class PermissionDenied(ServiceError):
    status = 403
    code = "permission_denied"


class IllegalTransition(ServiceError):
    status = 409
    code = "illegal_transition"
