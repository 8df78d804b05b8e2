"""Schema post-processing: document the one error shape on every management API operation.

Views raise ServiceErrors and DRF errors; the exception handler turns all of them into
``{"error": {"code", "message"}}``. Declaring that once here keeps the schema honest without
repeating it on each view.
"""

from typing import Any

ERROR_COMPONENT = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "description": "Stable machine code, e.g. not_found, illegal_transition."},
                "message": {"type": "string", "description": "What went wrong, for people."},
                "fields": {
                    "type": "object",
                    "additionalProperties": True,
                    "description": "On invalid_input from validation: the messages of each field.",
                },
            },
        }
    },
}

ERRORS = {
    "400": "Invalid input (invalid_input) or a malformed body (invalid_request).",
    "401": "No, or an invalid, expired or revoked personal access token.",
    "403": "Your role in the team (or not being staff) does not allow this.",
    "404": "No such object in your teams; another team's objects are not found either.",
    "409": "The object is not in a state that allows this (illegal_transition).",
    "429": "Too many requests (rate_limited).",
}
READ_ONLY_ERRORS = ("401", "403", "404", "429")


def add_error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_COMPONENT
    reference = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/v1/"):
            continue
        for method, operation in operations.items():
            statuses = READ_ONLY_ERRORS if method == "get" else ERRORS
            responses = operation.setdefault("responses", {})
            for status in statuses:
                responses.setdefault(status, {"description": ERRORS[status], "content": reference})
    return result
