"""A loopback OTLP/HTTP trace sink for the tracing benchmark: ``python -m bench.otlp_sink
PORT``. Answers every export with success and counts what arrived; ``GET /count`` gives
``{"requests": n, "spans": n}``. It stands in for a collector, so the gateway's exporter does
its real work (encode, POST) and the sink's own cost stays off the gateway's workers."""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

COUNTS = {"requests": 0, "spans": 0}
ANSWER = ExportTraceServiceResponse().SerializeToString()


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        request = ExportTraceServiceRequest.FromString(body)
        COUNTS["requests"] += 1
        COUNTS["spans"] += sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        self._answer(ANSWER, "application/x-protobuf")

    def do_GET(self) -> None:  # noqa: N802
        self._answer(json.dumps(COUNTS).encode(), "application/json")

    def _answer(self, body: bytes, kind: str) -> None:
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
