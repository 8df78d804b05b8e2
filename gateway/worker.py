"""The gunicorn worker class: uvicorn with uvloop and httptools, and no headers of its own
that would duplicate the upstream's (Server) — Date is set once, by uvicorn."""

from uvicorn.workers import UvicornWorker


class GatewayWorker(UvicornWorker):
    CONFIG_KWARGS = {
        "loop": "uvloop",
        "http": "httptools",
        "server_header": False,
        "date_header": True,
        # The gateway sets X-Forwarded-* itself; uvicorn's middleware would cost every request.
        "proxy_headers": False,
        "access_log": False,
    }
