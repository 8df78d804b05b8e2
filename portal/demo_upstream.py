"""A tiny JSON upstream for the demo APIs (``python -m portal.demo_upstream --port 9001``).

It echoes what it received, so a newcomer can see what the gateway forwards. A path ending
in ``/status/<4xx or 5xx>`` is answered with that status (``/weather/v2/status/503`` through the
gateway), and ``?delay_ms=<n>`` waits up to 5 s first: the traffic generator
(``manage.py generate_traffic``) uses both for upstream errors and slow answers.
"""

import argparse
import json
import re
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

STATUS_PATH = re.compile(r"/status/([45][0-9][0-9])$")  # errors only: a 1xx, 204 or 304 cannot carry this body
MAX_DELAY_MS = 5000


class EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        delay = parse_qs(url.query).get("delay_ms", ["0"])[0]
        if delay.isascii() and delay.isdigit():
            time.sleep(min(int(delay), MAX_DELAY_MS) / 1000)
        wanted = STATUS_PATH.search(url.path)
        status = int(wanted.group(1)) if wanted else 200
        payload = json.dumps(
            {
                "upstream": f"demo:{self.server.server_address[1]}",
                "method": self.command,
                "path": self.path,
                "headers": {k: v for k, v in self.headers.items() if k.lower().startswith("x-")},
                "body": body.decode(errors="replace"),
            }
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _answer

    def log_message(self, format, *args):  # noqa: A002 - keep the demo quiet
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=9001)
    options = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", options.port), EchoHandler)
    print(f"demo upstream on http://127.0.0.1:{options.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
