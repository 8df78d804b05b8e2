"""The gateway's MCP server: ``POST /mcp``, the Model Context Protocol's streamable HTTP
transport, answering with ``application/json`` (which the transport allows in place of an
event stream), so an AI agent can use every API its key is subscribed to as a tool.

Stateless on purpose: gunicorn runs several workers and a request may reach any of them,
so no ``Mcp-Session-Id`` is issued and nothing is remembered between requests. The
protocol version travels in each request's ``MCP-Protocol-Version`` header, the key in each
request's ``Authorization``/``X-API-Key`` header, as on every other call. Two ways in: the
``initialize`` handshake (2024-11-05 to 2025-11-25), and 2026-07-28, which has no handshake
(``server/discover``, then each request carries its own envelope in ``params._meta``, and its
routing headers must agree with its body). A GET (the server's own event stream) and a DELETE
(ending a session) are answered 405, which the transport allows.

``McpCall`` is a ``Call`` (gateway/call.py) with its own steps:

    origin -> method -> content type / accept -> authenticate -> read body -> parse
      -> dispatch each JSON-RPC message (initialize, server/discover, ping, tools/list,
         tools/call; a 2026-07-28 request's envelope and headers checked first)

and a tools/call runs the operation as an ``McpRestCall``: the very ``Call`` a direct request
runs (subscription, plan limits, body limit, cache, targets, retries, timeouts, call log),
given the tool's route and the caller's key instead of finding them, fed the request the
arguments make and answering into a buffer that becomes the tool result. Its call record is
an ``McpCallRecord`` (``channel: "mcp"``). An MCP request that made no API call is recorded
as itself (path /mcp).

Messages are checked and written by hand with orjson rather than through the SDK's pydantic
models (``mcp_types``): measured on this box, validating the envelope of a tools/call costs
8.2 us there against 1.9 us here, a 100-tool listing 381 us against 56 us, and importing
``mcp_types`` costs each worker 0.45 s at start. The shapes are few; the tests hold them to
the SDK's client, which validates every result against the negotiated revision's models.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import orjson

from gateway.call import Call
from gateway.callrecord import McpCallRecord
from gateway.errors import JSON, Refusal, ResponseAborted
from gateway.mcptools import McpTool, ToolInputError, ToolRequest, request_for
from gateway.routing import BadPath, parse_request_path
from gateway.tracing import child_headers

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.call import Receive
    from gateway.errors import Headers, Send
    from gateway.snapshot import KeyEntry, Route, Snapshot

log = logging.getLogger("portico.gateway.mcp")

MCP_PATH = "/mcp"
# The revisions negotiated by the initialize handshake, newest first.
HANDSHAKE_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
LATEST_VERSION = HANDSHAKE_VERSIONS[0]
# The handshake-free revision: every request carries its version (header and _meta), the
# client learns the server's from server/discover, and results say how long they may be
# cached. Stateless by design, as this server is.
MODERN_VERSION = "2026-07-28"
PROTOCOL_VERSIONS = (MODERN_VERSION, *HANDSHAKE_VERSIONS)
SERVER_INFO_META = "io.modelcontextprotocol/serverInfo"
# What a request without MCP-Protocol-Version speaks (the transport says to assume this).
DEFAULT_VERSION = "2025-03-26"
# JSON-RPC batches were removed in 2025-06-18; older revisions may send them.
BATCH_VERSIONS = frozenset({"2024-11-05", "2025-03-26"})
MAX_BATCH = 32
PAGE_SIZE = 100
PAGE_BYTES = 1024 * 1024
SERVER_INFO = {"name": "portico-gateway", "title": "Portico API gateway", "version": "1.0"}
INSTRUCTIONS = (
    "Each tool is one operation of an API your key's application is subscribed to; a call is an "
    "ordinary API call (plan limits apply, and it is logged). A tool result with isError true carries "
    "the API's or the gateway's error answer."
)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
UNSUPPORTED_PROTOCOL_VERSION = -32022  # as the SDK names it (mcp_types.UNSUPPORTED_PROTOCOL_VERSION)
HEADER_MISMATCH = -32020  # 2026-07-28: a routing header says other than the body
# 2026-07-28 gives JSON-RPC errors HTTP statuses (others stay 200); earlier revisions do not.
MODERN_ERROR_STATUS = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400,
    METHOD_NOT_FOUND: 404,
}
# The per-request envelope of 2026-07-28 (params._meta) and the headers that must agree with
# it: an intermediary may route or authorize on the headers, so they may not say otherwise.
VERSION_META = "io.modelcontextprotocol/protocolVersion"
CAPABILITIES_META = "io.modelcontextprotocol/clientCapabilities"
_ROUTING_HEADERS = frozenset({b"mcp-protocol-version", b"mcp-method", b"mcp-name"})
_BASE64_VALUE = re.compile(r"=\?base64\?(?P<payload>.*)\?=")

ALLOW_POST = (b"allow", b"POST")
# What a tool call's request keeps of the MCP request's headers: who the client is (as seen
# through trusted proxies), its request id, its user agent. Never its key or its framing.
_PASSED_ON = (b"x-forwarded-for", b"x-request-id", b"user-agent")
_JSON_TYPES = (b"application/json", b"application/*", b"*/*")


class RpcError(Exception):
    """A JSON-RPC error answer to one message."""

    def __init__(self, code: int, message: str, data: dict[str, Any] | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class RpcRefusal(Refusal):
    """An HTTP-level refusal whose JSON-RPC error code and data are not the default ones."""

    def __init__(self, status: int, code: str, message: str, rpc_code: int, data: dict[str, Any] | None = None):
        super().__init__(status, code, message)
        self.rpc_code = rpc_code
        self.data = data or {}


def _error(request_id: Any, code: int, message: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def _valid_id(value: Any) -> bool:
    # MCP: a string or an integer (never null); bool is an int to Python, not to JSON.
    return type(value) is str or type(value) is int


def _media_type(value: bytes | None) -> bytes:
    return value.split(b";", 1)[0].strip().lower() if value else b""


class _Capture:
    """The ``send`` an inner call answers into: status, headers and the body up to a cap."""

    __slots__ = ("status", "headers", "chunks", "size", "limit", "truncated")

    def __init__(self, limit: int):
        self.status = 0
        self.headers: Headers = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.limit = limit
        self.truncated = False

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = list(message.get("headers") or ())
            return
        chunk: bytes = message.get("body", b"")
        room = self.limit - self.size
        if len(chunk) > room:
            chunk = chunk[: max(room, 0)]
            self.truncated = True
        if chunk:
            self.chunks.append(chunk)
            self.size += len(chunk)

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


def _receive_once(body: bytes) -> Receive:
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:  # nothing reads past the body; a reader that does sees the client leave
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


class McpRestCall(Call):
    """A tool call's REST request: a direct call's steps, with the route the tool names and the
    key the MCP request presented (already checked) instead of finding them again."""

    record_class = McpCallRecord

    __slots__ = ("tool_route", "mcp_key")

    def __init__(
        self,
        gateway: Gateway,
        scope: dict[str, Any],
        receive: Receive,
        send: Send,
        *,
        route: Route,
        key: KeyEntry,
        snapshot: Snapshot,
    ):
        super().__init__(gateway, scope, receive, send)
        self.snapshot = snapshot  # the MCP request's: the tool was found in it
        self.tool_route = route
        self.mcp_key = key

    def route_request(self) -> None:
        """The tool's own route (not a lookup: a longer base path of another API must not take
        the call); the path is still parsed like any request's, and cut the same way."""
        try:
            path = self.path = parse_request_path(self.scope["raw_path"])
        except BadPath as error:
            raise Refusal(400, "bad_path", str(error)) from None
        self.enter_route(self.tool_route, path)

    async def authenticate(self) -> None:
        key = self.key = self.mcp_key
        record = self.record
        record.key_prefix = key.prefix
        record.tenant_id = key.tenant_id
        record.application_id = key.application_id


class McpCall(Call):
    record_class = McpCallRecord

    __slots__ = ("protocol_version", "inner_calls", "requests")

    def __init__(self, gateway: Gateway, scope: dict[str, Any], receive: Receive, send: Send):
        super().__init__(gateway, scope, receive, send)
        self.protocol_version = DEFAULT_VERSION
        self.inner_calls = 0  # API calls made (each leaves its own record)
        self.requests = 0  # JSON-RPC requests answered (a batch holds several)

    # -- the steps ------------------------------------------------------------------------

    async def steps(self) -> None:
        if self.is_preflight():  # a browser-based client from an allowed origin
            await self.answer_preflight()
            return
        self.check_transport()
        await self.authenticate()
        body = await self.read_body()
        try:
            message = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise RpcRefusal(400, "parse_error", "The body is not JSON.", PARSE_ERROR) from None
        self.check_protocol_version(message)
        if isinstance(message, list):
            await self.answer_batch(message)
        else:
            response = await self.handle(message)
            if response is None:
                await self.answer(202, b"")
            else:
                await self.answer(self.status_of(response), self.encode(response))

    def status_of(self, response: dict[str, Any]) -> int:
        error = response.get("error")
        if error is None:
            return 200
        if response["id"] is None:
            return 400  # about the message itself: the transport's 400
        if self.protocol_version == MODERN_VERSION:
            return MODERN_ERROR_STATUS.get(error["code"], 200)
        return 200

    def check_transport(self) -> None:
        fields = self.fields
        origin = fields.get(b"origin")
        if origin is not None and origin not in self.gateway.cors_origins:
            # The transport requires it: a web page must not reach a local MCP server through
            # a browser (DNS rebinding); browsers send Origin, agents do not.
            raise Refusal(403, "origin_forbidden", "Requests from this Origin are not allowed.")
        if self.method != "POST":
            message = "Send JSON-RPC messages with POST; this server keeps no stream."
            raise Refusal(405, "method_not_allowed", message, [ALLOW_POST])
        if _media_type(fields.get(b"content-type")) != b"application/json":
            raise Refusal(415, "unsupported_media_type", "Send Content-Type: application/json.")
        accept = fields.get(b"accept", b"").lower()
        if not any(media in accept for media in _JSON_TYPES):
            raise Refusal(406, "not_acceptable", "Accept must allow application/json (and text/event-stream).")

    def check_protocol_version(self, message: Any) -> None:
        header = self.fields.get(b"mcp-protocol-version")
        if isinstance(message, dict) and message.get("method") == "initialize":
            return  # the handshake negotiates the version in its body
        if header is None:
            return
        version = header.decode("latin-1").strip()
        if version not in PROTOCOL_VERSIONS:
            raise RpcRefusal(
                400,
                "unsupported_protocol_version",
                f"Unsupported MCP-Protocol-Version {version[:40]!r}.",
                UNSUPPORTED_PROTOCOL_VERSION,
                {"supported": list(PROTOCOL_VERSIONS), "requested": version[:40]},
            )
        self.protocol_version = version

    async def read_body(self) -> bytes:
        declared = self.fields.get(b"content-length")
        if declared is not None and not declared.isdigit():
            raise Refusal(400, "bad_content_length", "Content-Length is not a number.")
        return await self.whole_body(self.gateway.settings.mcp_max_body_bytes)

    async def answer_batch(self, messages: list[Any]) -> None:
        if self.protocol_version not in BATCH_VERSIONS:
            raise Refusal(400, "batch_not_supported", f"Batches are not part of MCP {self.protocol_version}.")
        if not messages or len(messages) > MAX_BATCH:
            raise Refusal(400, "invalid_request", f"A batch holds 1 to {MAX_BATCH} messages.")
        responses = []
        for message in messages:
            if isinstance(message, dict) and message.get("method") == "initialize":
                request_id = message.get("id") if _valid_id(message.get("id")) else None
                responses.append(_error(request_id, INVALID_REQUEST, "initialize may not be batched."))
                continue
            response = await self.handle(message)
            if response is not None:
                responses.append(response)
        if responses:
            await self.answer(200, self.encode(responses))
        else:
            await self.answer(202, b"")

    # -- JSON-RPC -------------------------------------------------------------------------

    async def handle(self, message: Any) -> dict[str, Any] | None:
        """The response to one message, or None for a notification or a client's response."""
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            return _error(None, INVALID_REQUEST, "Not a JSON-RPC 2.0 message.")
        method = message.get("method")
        if method is None:
            if "id" in message and ("result" in message or "error" in message):
                return None  # a response to a request of ours: this server sends none, so it is ignored
            return _error(None, INVALID_REQUEST, "A message needs a method.")
        if "id" not in message:
            if not isinstance(method, str):
                return _error(None, INVALID_REQUEST, "The method must be a string.")
            return None  # notifications/initialized, cancelled, ...: nothing to do when stateless
        self.requests += 1
        request_id = message["id"]
        if not _valid_id(request_id):
            return _error(None, INVALID_REQUEST, "The id must be a string or an integer.")
        if not isinstance(method, str):
            return _error(request_id, INVALID_REQUEST, "The method must be a string.")
        params = message.get("params")
        if params is None:
            params = {}
        elif not isinstance(params, dict):
            return _error(request_id, INVALID_PARAMS, "params must be an object.")
        if self.protocol_version == MODERN_VERSION and method != "initialize":
            refused = self.check_envelope(method, params)
            if refused is not None:
                return _error(request_id, *refused)
        handler = HANDLERS.get(method)
        if handler is None:
            return _error(request_id, METHOD_NOT_FOUND, f"Method not found: {method[:100]}")
        try:
            result = await handler(self, params)
        except RpcError as error:
            return _error(request_id, error.code, error.message, error.data)
        if self.protocol_version == MODERN_VERSION and method != "initialize":
            # 2026-07-28 results say what they are, and list-like ones how long they stay
            # fresh: the tools are the key's own (private) and change with its subscriptions.
            result["resultType"] = "complete"
            if method in _CACHEABLE:
                result["cacheScope"] = "private"
                result["ttlMs"] = 0
            result.setdefault("_meta", {})[SERVER_INFO_META] = SERVER_INFO
        return {"jsonrpc": "2.0", "id": request_id, "result": result}

    def check_envelope(self, method: str, params: dict[str, Any]) -> tuple[int, str, dict[str, Any] | None] | None:
        """A 2026-07-28 request's envelope: its version and capabilities in params._meta, and
        the routing headers (MCP-Protocol-Version, Mcp-Method, Mcp-Name) saying the same as
        the body, each sent once. None when it holds; else the JSON-RPC error to answer."""
        meta = params.get("_meta")
        if not isinstance(meta, dict) or VERSION_META not in meta or CAPABILITIES_META not in meta:
            return INVALID_PARAMS, f"params._meta must carry {VERSION_META} and {CAPABILITIES_META}.", None
        seen = [name for name, _value in self.scope["headers"] if name in _ROUTING_HEADERS]
        if len(seen) != len(set(seen)):
            return HEADER_MISMATCH, "A routing header (MCP-Protocol-Version, Mcp-Method, Mcp-Name) is repeated.", None
        fields = self.fields
        version = meta[VERSION_META]
        if fields.get(b"mcp-protocol-version", b"").decode("latin-1").strip() != version:
            return HEADER_MISMATCH, "MCP-Protocol-Version does not match params._meta.", None
        if fields.get(b"mcp-method", b"").decode("latin-1") != method:
            return HEADER_MISMATCH, "Mcp-Method does not match the method.", None
        name = params.get("name")
        if method == "tools/call" and name is not None and _header_text(fields.get(b"mcp-name")) != name:
            return HEADER_MISMATCH, "Mcp-Name does not match params.name.", None
        if not isinstance(version, str):
            return INVALID_PARAMS, "The protocol version must be a string.", None
        if version != MODERN_VERSION:
            data = {"supported": [MODERN_VERSION], "requested": version[:40]}
            return UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version.", data
        return None

    async def initialize(self, params: dict[str, Any]) -> dict[str, Any]:
        requested = params.get("protocolVersion")
        if not isinstance(requested, str):
            raise RpcError(INVALID_PARAMS, "initialize needs params.protocolVersion (a string).")
        # The client's version when we speak it, else our newest (the client then decides).
        version = requested if requested in HANDSHAKE_VERSIONS else LATEST_VERSION
        return {
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": SERVER_INFO,
            "instructions": INSTRUCTIONS,
        }

    async def ping(self, params: dict[str, Any]) -> dict[str, Any]:
        return {}

    async def discover(self, params: dict[str, Any]) -> dict[str, Any]:
        """server/discover (2026-07-28): what this server speaks and offers, no handshake."""
        return {
            "supportedVersions": list(PROTOCOL_VERSIONS),
            "capabilities": {"tools": {"listChanged": False}},
            "instructions": INSTRUCTIONS,
        }

    async def list_tools(self, params: dict[str, Any]) -> dict[str, Any]:
        assert self.key is not None
        tools = self.snapshot.mcp.tools_for(self.key.application_id)
        start = 0
        cursor = params.get("cursor")
        if cursor is not None:
            # isascii: str.isdigit() also passes '²', which int() refuses (a 500).
            digits = cursor[1:] if isinstance(cursor, str) and cursor[:1] == "p" else ""
            if not digits.isascii() or not digits.isdigit() or len(digits) > 11:
                raise RpcError(INVALID_PARAMS, "Invalid cursor.")
            start = int(digits)
        # A page ends at PAGE_SIZE tools or PAGE_BYTES of entries, whichever comes first
        # (at least one tool): what one request may make the worker encode.
        end, size = start, 0
        while end < len(tools) and end - start < PAGE_SIZE:
            size += tools[end].size
            if size > PAGE_BYTES and end > start:
                break
            end += 1
        result: dict[str, Any] = {"tools": [tool.definition for tool in tools[start:end]]}
        if end < len(tools):
            result["nextCursor"] = f"p{end}"
        return result

    async def call_tool(self, params: dict[str, Any]) -> dict[str, Any]:
        assert self.key is not None
        name = params.get("name")
        if not isinstance(name, str):
            raise RpcError(INVALID_PARAMS, "tools/call needs params.name (a string).")
        tool = self.snapshot.mcp.tool_for(self.key.application_id, name)
        if tool is None:  # unknown, unsubscribed, retired: the same answer
            raise RpcError(INVALID_PARAMS, f"Unknown tool: {name[:100]}")
        self.record.api_id = tool.api_id
        self.record.version_id = tool.version_id
        try:
            request = request_for(tool, params.get("arguments"))
        except ToolInputError as error:
            self.record.error_code = "invalid_tool_arguments"
            return _tool_error(str(error))
        except orjson.JSONEncodeError:
            self.record.error_code = "invalid_tool_arguments"
            return _tool_error("The request body is nested too deeply.")
        if tool.kind == "prompt":
            return await self.call_prompt(tool, request)
        return await self.call_rest(tool, request)

    # -- tool calls -----------------------------------------------------------------------

    def inner_scope(self, route_host: str, request: ToolRequest, raw_path: bytes) -> dict[str, Any]:
        fields = self.fields
        host = route_host.encode() if route_host else fields.get(b"host", b"")
        headers: Headers = [(b"host", host), *request.headers]
        if request.body is not None:
            headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(request.body))]
        # The same client as the MCP request, as seen through the same trusted proxies; a header
        # the operation declares (Accept, User-Agent) is the tool argument's, sent once.
        given = {name for name, _value in request.headers}
        defaults = (
            (b"accept", b"application/json"),
            *((name, fields.get(name)) for name in _PASSED_ON),
            # The tool call is a child of this MCP request's span, in its trace.
            *child_headers(self.trace_id, self.span_id, self.trace_flags, self.tracestate),
        )
        headers += [(name, value) for name, value in defaults if value is not None and name not in given]
        scope = self.scope
        return {
            "type": "http",
            "http_version": "1.1",
            "method": request.method,
            "scheme": scope.get("scheme", "http"),
            "path": unquote(raw_path.decode("latin-1")),
            "raw_path": raw_path,
            "query_string": request.query,
            "headers": headers,
            "client": scope.get("client"),
            "server": scope.get("server"),
        }

    async def call_rest(self, tool: McpTool, request: ToolRequest) -> dict[str, Any]:
        assert self.key is not None
        route = self.snapshot.mcp.routes.get(tool.version_id)
        if route is None:
            return _tool_error("This API version is not served right now.")
        raw_path = route.base_path.encode() + request.path
        capture = _Capture(self.gateway.settings.mcp_max_result_bytes)
        inner = McpRestCall(
            self.gateway,
            self.inner_scope(route.host, request, raw_path),
            _receive_once(request.body or b""),
            capture,
            route=route,
            key=self.key,
            snapshot=self.snapshot,
        )
        self.inner_calls += 1  # from here the inner call records itself, whatever happens
        try:
            await inner.run()
        except ResponseAborted:
            return _tool_error("The API's answer was cut short.", status=capture.status or 502)
        return _tool_result(capture)

    async def call_prompt(self, tool: McpTool, request: ToolRequest) -> dict[str, Any]:
        """A prompt API's tool: its pipeline (gateway/promptcall.py: subscription, plan,
        input schema, budgets, PII, cache, providers, JSON checks), recorded as an AI call."""
        from gateway.promptcall import call_prompt  # only MCP's prompt tools pay for the import

        assert self.key is not None
        route = self.snapshot.mcp.routes.get(tool.version_id)
        if route is None or route.prompt is None:
            return _tool_error("This API version is not served right now.", status=503)
        fields = self.fields
        headers = [(name, value) for name in _PASSED_ON if (value := fields.get(name)) is not None]
        headers += child_headers(self.trace_id, self.span_id, self.trace_flags, self.tracestate)
        peer = self.scope["client"][0] if self.scope.get("client") else ""
        arguments = orjson.loads(request.body or b"{}")
        self.inner_calls += 1  # the prompt call records itself
        answered: list[tuple[bytes, bytes]] = []
        status, answer = await call_prompt(
            self.gateway,
            route,
            self.key,
            arguments,
            client_ip=peer,
            headers=headers,
            channel="mcp",
            response_headers=answered,
        )
        output = answer.get("output")
        text = output if isinstance(output, str) and status < 400 else orjson.dumps(answer).decode()
        return {
            "content": [{"type": "text", "text": text}],
            "structuredContent": answer,
            "isError": status >= 400,
            "_meta": _result_meta(status, {name.lower(): value for name, value in reversed(answered)}),
        }

    # -- answering ------------------------------------------------------------------------

    def encode(self, response: Any) -> bytes:
        try:
            return orjson.dumps(response)
        except orjson.JSONEncodeError:
            # An API's JSON nested deeper than the encoder goes: its text stays, the
            # structured copy goes.
            for item in response if isinstance(response, list) else [response]:
                result = item.get("result") if isinstance(item, dict) else None
                if isinstance(result, dict):
                    result.pop("structuredContent", None)
            return orjson.dumps(response)

    async def answer(self, status: int, body: bytes) -> None:
        self.record.status = status
        self.record.bytes_out = len(body)
        headers = [(b"content-length", b"%d" % len(body)), *self.headers_out]
        if body:
            headers.insert(0, JSON)
        await self.start_response(status, headers)
        await self.finish(body)

    async def refuse(self, refusal: Refusal) -> None:
        """HTTP-level refusals carry a JSON-RPC error without an id (the transport allows it),
        with the gateway's code in ``data``; the status says what it is (401, 405, 413, ...)."""
        record = self.record
        record.status = refusal.status
        record.error_code = refusal.code
        if self.responded:
            raise ResponseAborted(refusal.code)
        data: dict[str, Any] = {"status": refusal.status, "code": refusal.code}
        if isinstance(refusal, RpcRefusal):
            rpc_code = refusal.rpc_code
            data.update(refusal.data)
        else:
            rpc_code = INTERNAL_ERROR if refusal.status >= 500 else INVALID_REQUEST
        body = orjson.dumps(_error(None, rpc_code, refusal.message, data))
        record.bytes_out = len(body)
        headers = [JSON, (b"content-length", b"%d" % len(body)), *self.headers_out, *refusal.headers]
        await self.start_response(refusal.status, headers)
        await self.finish(body)

    def record_call(self) -> None:
        if self.inner_calls and self.inner_calls >= self.requests:
            # The API calls this request made are its records (channel "mcp"); one more
            # for the envelope would count each tool call twice. A batch where some request
            # made no API call (a refused tool call, a ping) is recorded as itself too, or
            # that refusal would be in no record.
            self.recorded = True
            return
        super().record_call()


def _header_text(value: bytes | None) -> str | None:
    """A routing header's text: verbatim, or the UTF-8 inside ``=?base64?...?=`` (how the SDK
    sends a name that is not plain printable ASCII); None when malformed, so it never matches."""
    if value is None:
        return None
    text = value.decode("latin-1")
    wrapped = _BASE64_VALUE.fullmatch(text)
    if wrapped is None:
        return text
    try:
        raw = base64.b64decode(wrapped["payload"], validate=True)
        if base64.b64encode(raw).decode("ascii") != wrapped["payload"]:
            return None  # not canonical: another spelling of other bytes
        return raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def _tool_error(message: str, status: int = 400) -> dict[str, Any]:
    """A tool execution error: the model sees it and can correct its arguments."""
    body = {"error": {"code": "invalid_tool_arguments" if status == 400 else "tool_failed", "message": message}}
    return {
        "content": [{"type": "text", "text": orjson.dumps(body).decode()}],
        "structuredContent": body,
        "isError": True,
        "_meta": {"portico/status": status},
    }


def _tool_result(capture: _Capture) -> dict[str, Any]:
    """An API's answer as a tool result: its body as text, parsed into ``structuredContent``
    when it is a JSON object, ``isError`` for a status of 400 or more (the gateway's own
    refusals, 401 to 504, arrive here as its JSON error answers)."""
    status = capture.status
    body = b"".join(capture.chunks)
    content_type = _media_type(capture.header(b"content-type"))
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = f"(a binary answer of {capture.size} bytes, {content_type.decode('latin-1') or 'no content type'})"
    if capture.truncated:
        text += f"\n\n(cut at {capture.limit} bytes)"
    elif not body:
        text = f"(no content; HTTP {status})"
    result: dict[str, Any] = {"content": [{"type": "text", "text": text}], "isError": status >= 400}
    if body and not capture.truncated and (content_type == b"application/json" or content_type.endswith(b"+json")):
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, dict):  # structuredContent is an object by definition
            result["structuredContent"] = parsed
    result["_meta"] = _result_meta(
        status, {name: value for name, _key in _META_HEADERS if (value := capture.header(name)) is not None}
    )
    return result


def _result_meta(status: int, headers: dict[bytes, bytes]) -> dict[str, Any]:
    """A tool result's _meta, the same for REST and prompt tools: the status and the answer
    headers an agent needs (``_META_HEADERS``; names lowercase, as the gateway writes them)."""
    meta: dict[str, Any] = {"portico/status": status}
    for name, key in _META_HEADERS:
        value = headers.get(name)
        if value is not None:
            meta[key] = value.decode("latin-1")
    return meta


# Answer headers a tool result passes on in its _meta: the call's id, when to retry, and a
# deprecated version's notice (RFC 9745 Deprecation, RFC 8594 Sunset).
_META_HEADERS = (
    (b"x-request-id", "portico/request-id"),
    (b"retry-after", "portico/retry-after"),
    (b"deprecation", "portico/deprecation"),
    (b"sunset", "portico/sunset"),
)

_CACHEABLE = frozenset({"server/discover", "tools/list"})

HANDLERS = {
    "initialize": McpCall.initialize,
    "server/discover": McpCall.discover,
    "ping": McpCall.ping,
    "tools/list": McpCall.list_tools,
    "tools/call": McpCall.call_tool,
}
