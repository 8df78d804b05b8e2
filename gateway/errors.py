"""Error answers: ``{"error": {"code": ..., "message": ...}}`` with the right status, and
the one exception every refusal on the request path raises."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson

JSON = (b"content-type", b"application/json")

Headers = list[tuple[bytes, bytes]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class Refusal(Exception):
    """The gateway answers the request itself: raised by any step, answered in one place
    (``Call.refuse``). ``headers`` are added to the answer (Retry-After, WWW-Authenticate)."""

    def __init__(
        self, status: int, code: str, message: str, headers: Headers | None = None, *, param: str | None = None
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or []
        self.param = param  # the request field at fault, where a format can say (OpenAI's ``param``)


class ResponseAborted(Exception):
    """The answer had started and cannot be completed truthfully (the upstream failed
    mid-body): the server closes the client connection without ending the message, so the
    client sees an incomplete answer rather than a short one that looks whole."""


def error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message}})


async def send_json(send: Send, status: int, body: bytes, headers: Headers, head: bool = False) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [JSON, (b"content-length", b"%d" % len(body)), *headers],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})
