"""Each provider's error answers, as its public API sends them: the body shape, the status,
and the rate-limit headers of a 429.

- OpenAI (and OpenAI-compatible servers): ``{"error": {"message", "type", "param", "code"}}``.
- Azure OpenAI: the OpenAI shape for what the model service refuses; its own
  ``{"error": {"code": "401", "message"}}`` for what its front door refuses (key, rate).
- Mistral: ``{"object": "error", "message", "type", "param", "code"}``, a 422 with pydantic
  ``detail`` entries for a body it cannot validate, ``{"message": "Unauthorized"}`` on 401.
- Anthropic: ``{"type": "error", "error": {"type", "message"}, "request_id"}``.
- Gemini: ``{"error": {"code", "message", "status"}}`` (google.rpc), a bad key is a 400
  ``API_KEY_INVALID``, a missing one a 403, a 429 carries ``RetryInfo``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from llm.mock_provider.httpserver import Reply

Json = dict[str, Any]

OPENAI_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", None),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
GOOGLE_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
DEFAULT_MESSAGES = {
    400: "Bad request.",
    401: "Unauthorized.",
    403: "Forbidden.",
    404: "Not found.",
    429: "Rate limit reached for requests.",
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The service is temporarily unavailable.",
    504: "The request timed out.",
    529: "Overloaded",
}


def default_message(status: int) -> str:
    return DEFAULT_MESSAGES.get(status, "Internal server error." if status >= 500 else "Request failed.")


def _json(value: Json) -> bytes:
    return orjson.dumps(value)


def openai_body(status: int, message: str, *, param: str | None = None, code: str | None = None) -> bytes:
    error_type, default_code = OPENAI_TYPES.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None)
    )
    return _json({"error": {"message": message, "type": error_type, "param": param, "code": code or default_code}})


def anthropic_body(status: int, message: str, request_id: str) -> bytes:
    error_type = ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return _json({"type": "error", "error": {"type": error_type, "message": message}, "request_id": request_id})


def gemini_body(status: int, message: str, details: list[Json] | None = None) -> bytes:
    error: Json = {"code": status, "message": message, "status": GOOGLE_STATUSES.get(status, "UNKNOWN")}
    if details:
        error["details"] = details
    return _json({"error": error})


def mistral_body(status: int, message: str) -> bytes:
    if status == 401:
        return _json({"message": "Unauthorized", "request_id": "mock"})
    if status == 429:
        return _json({"object": "error", "message": message, "type": "rate_limited", "param": None, "code": "1300"})
    error_type = "internal_server_error" if status >= 500 else "invalid_request_error"
    return _json({"object": "error", "message": message, "type": error_type, "param": None, "code": None})


def azure_front_door_body(status: int, message: str) -> bytes:
    return _json({"error": {"code": str(status), "message": message}})


def rate_limit_headers(kind: str, retry_after: float) -> tuple[tuple[bytes, bytes], ...]:
    seconds = b"%d" % math.ceil(retry_after)
    if kind == "anthropic":
        reset = (
            (datetime.now(UTC) + timedelta(seconds=retry_after)).isoformat(timespec="seconds").replace("+00:00", "Z")
        )
        return (
            (b"retry-after", seconds),
            (b"anthropic-ratelimit-requests-limit", b"50"),
            (b"anthropic-ratelimit-requests-remaining", b"0"),
            (b"anthropic-ratelimit-requests-reset", reset.encode()),
        )
    if kind == "azure-openai":
        return (
            (b"retry-after", seconds),
            (b"retry-after-ms", b"%d" % round(retry_after * 1000)),
            (b"x-ratelimit-remaining-requests", b"0"),
        )
    if kind == "gemini":
        return ((b"retry-after", seconds),)
    return (
        (b"retry-after", seconds),
        (b"x-ratelimit-limit-requests", b"500"),
        (b"x-ratelimit-remaining-requests", b"0"),
        (b"x-ratelimit-reset-requests", b"%gs" % retry_after),
    )


def error_reply(
    kind: str,
    status: int,
    message: str | None = None,
    *,
    retry_after: float | None = None,
    code: str | None = None,
    param: str | None = None,
    request_id: str = "req_mock",
) -> Reply:
    """An error answer in ``kind``'s shape. A 429 always carries its reset headers."""
    message = message or default_message(status)
    if status == 429 and retry_after is None:
        retry_after = 1.0
    headers = rate_limit_headers(kind, retry_after) if retry_after is not None else ()
    if kind == "anthropic":
        body = anthropic_body(status, message, request_id)
        headers = ((b"request-id", request_id.encode()), *headers)
    elif kind == "gemini":
        details = (
            [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{math.ceil(retry_after)}s"}]
            if status == 429 and retry_after is not None
            else None
        )
        body = gemini_body(status, message, details)
    elif kind == "mistral":
        body = mistral_body(status, message)
    elif kind == "azure-openai" and (status in (401, 429) or status >= 500):
        body = azure_front_door_body(status, message)
    else:
        body = openai_body(status, message, param=param, code=code)
    return Reply(status, body, headers)


def auth_error(kind: str, key: str | None) -> Reply:
    """The answer to a missing key (``key`` None) or a key the provider refuses."""
    if kind == "gemini":
        if key is None:
            return Reply(
                403,
                gemini_body(
                    403,
                    "Method doesn't allow unregistered callers (callers without established identity). "
                    "Please use API Key or other form of API consumer identity to call this API.",
                ),
            )
        info = {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "API_KEY_INVALID",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"},
        }
        return Reply(400, gemini_body(400, "API key not valid. Please pass a valid API key.", [info]))
    if kind == "anthropic":
        message = "x-api-key header is required" if key is None else "invalid x-api-key"
        return error_reply(kind, 401, message)
    if kind == "azure-openai":
        return error_reply(
            kind,
            401,
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key "
            "for an active subscription and use a correct regional API endpoint for your resource.",
        )
    if kind == "mistral":
        return error_reply(kind, 401)
    if key is None:
        message = (
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
        )
        error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
        return Reply(401, _json({"error": error}))
    return error_reply(
        kind,
        401,
        f"Incorrect API key provided: {key[:3]}...{key[-4:]}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
    )


def conformance_error(kind: str, problems: list[str]) -> Reply:
    """The provider's answer to a body it cannot accept, naming the first problem."""
    if kind == "mistral":
        detail = [{"type": "value_error", "loc": ["body"], "msg": problem, "input": None} for problem in problems]
        body = _json(
            {
                "object": "error",
                "message": {"detail": detail},
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
        )
        return Reply(422, body)
    if kind in ("openai", "openai-compatible", "azure-openai"):
        return Reply(400, openai_body(400, problems[0]))
    return error_reply(kind, 400, problems[0])


def context_length_error(kind: str, prompt_tokens: int) -> Reply:
    window = 128000
    asked = max(prompt_tokens, window + 1000)
    if kind == "anthropic":
        return error_reply(kind, 400, f"prompt is too long: {asked} tokens > {window} maximum")
    if kind == "gemini":
        return error_reply(
            kind, 400, f"The input token count ({asked}) exceeds the maximum number of tokens allowed ({window})."
        )
    if kind == "mistral":
        return error_reply(
            kind,
            400,
            f"Prompt contains {asked} tokens and 0 draft tokens, too large for model with {window} "
            "maximum context length",
        )
    return Reply(
        400,
        openai_body(
            400,
            f"This model's maximum context length is {window} tokens. However, your messages resulted in {asked} "
            "tokens. Please reduce the length of the messages.",
            param="messages",
            code="context_length_exceeded",
        ),
    )


def in_stream_error(kind: str, status: int, message: str | None = None) -> bytes:
    """The provider's error event inside a stream that has already started (framed)."""
    message = message or default_message(status)
    if kind == "anthropic":
        return b"event: error\ndata: " + anthropic_body(status, message, "req_mock") + b"\n\n"
    if kind == "gemini":
        return b"data: " + gemini_body(status, message) + b"\r\n\r\n"
    if kind == "mistral":
        return b"data: " + mistral_body(status, message) + b"\n\n"
    return b"data: " + openai_body(status, message) + b"\n\n"
