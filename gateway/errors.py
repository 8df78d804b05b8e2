"""Error answers: ``{"error": {"code": ..., "message": ...}}`` with the right status."""

import orjson

JSON = (b"content-type", b"application/json")


def error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message}})


async def send_json(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]], head: bool = False) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [JSON, (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": b"" if head else body})
