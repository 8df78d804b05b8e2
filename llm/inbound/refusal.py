"""A complete error answer (status, headers, body) in one inbound format, for the gateway's
own refusals (missing key, not subscribed, budget exhausted, token rate limit, invalid
body) and for provider failures it relays. The headers are the ones the official SDKs read:
``Retry-After`` (how long to wait), ``x-should-retry`` (whether to retry at all: ``false``
for an exhausted budget, which waiting a few seconds will not cure) and the request id."""

from __future__ import annotations

import math
from dataclasses import dataclass

JSON_CONTENT_TYPE = (b"content-type", b"application/json")


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


def refusal_headers(
    *,
    retry_after: float | None,
    should_retry: bool | None,
    request_id: str | None,
    request_id_header: bytes,
) -> tuple[tuple[bytes, bytes], ...]:
    headers = [JSON_CONTENT_TYPE]
    if retry_after is not None and math.isfinite(retry_after):
        # Whole seconds, rounded up: the SDKs read integers (and retry-after-ms); waiting
        # less than asked would only earn another 429.
        headers.append((b"retry-after", str(max(0, math.ceil(retry_after))).encode()))
    if should_retry is not None:
        headers.append((b"x-should-retry", b"true" if should_retry else b"false"))
    if request_id:
        headers.append((request_id_header, request_id.encode("latin-1", "replace")))
    return tuple(headers)
