"""The smallest useful ASGI application: the same answer as the nginx upstream.

It is the upstream when nginx is missing, and, served by the gateway's own gunicorn worker
class, the ceiling a Python ASGI data plane can reach on this box before doing any work.
"""

BODY = b'{"ok":true}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
