"""The gunicorn worker class: uvicorn with uvloop, and the gateway's own HTTP protocol
(``gateway/server.py``, which says why) in place of uvicorn's. No Server header that would
duplicate the upstream's; Date is set once, by uvicorn.
"""

from __future__ import annotations

from typing import Any

from uvicorn.workers import UvicornWorker

from gateway.server import GatewayHttpProtocol


class GatewayWorker(UvicornWorker):
    CONFIG_KWARGS: dict[str, Any] = {
        "loop": "uvloop",
        "http": GatewayHttpProtocol,
        "server_header": False,
        "date_header": True,
        # The gateway sets X-Forwarded-* itself; uvicorn's middleware would cost every request.
        "proxy_headers": False,
        "access_log": False,
    }
