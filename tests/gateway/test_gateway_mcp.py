"""The gateway's MCP server (/mcp) against the real gateway under gunicorn, with the official
``mcp`` SDK as the client: the tools a key sees are exactly the operations of the live
versions its application is subscribed to; a tool call is an ordinary API call (the upstream
gets the path, query and body the arguments make, plan limits refuse, the call log records
it as an MCP call); and the transport refuses what it must with JSON, never a 500."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import csv
import io
import time
from typing import Any

import httpx2
import orjson
import pytest
import requests
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from analytics import explorer
from analytics.ingest import ingest_call_logs
from analytics.models import CallLog
from gateway.calllog import records_of
from portal.models import ApiVersion, UpstreamTarget
from portal.services import lifecycle
from tests.gateway.mcpclient import call, list_tools, with_session

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

STREAM = "portico:calls"


def document(*operations: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, method, operation in operations:
        paths.setdefault(path, {})[method] = operation
    return {"openapi": "3.0.3", "info": {"title": "t", "version": "1"}, "paths": paths}


NOTES = document(
    (
        "/items/{item_id}/notes",
        "post",
        {
            "operationId": "addNote",
            "summary": "Add a note to an item",
            "parameters": [
                {"name": "item_id", "in": "path", "required": True, "schema": {"type": "string"}},
                {"name": "lang", "in": "query", "schema": {"type": "string", "enum": ["en", "fr"]}},
                {"name": "X-Trace", "in": "header", "schema": {"type": "string"}},
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Note"}}},
            },
        },
    ),
    (
        "/items/{item_id}",
        "get",
        {
            "operationId": "getItem",
            "summary": "Read an item",
            "parameters": [{"name": "Accept", "in": "header", "schema": {"type": "string"}}],
        },
    ),
    ("/status/{code}", "get", {"operationId": "status"}),
)
NOTES["components"] = {
    "schemas": {
        "Note": {
            "type": "object",
            "required": ["text"],
            "properties": {
                "text": {"type": "string", "maxLength": 200},
                "replies": {"type": "array", "items": {"$ref": "#/components/schemas/Note"}},  # recursive
                "remote": {"$ref": "http://127.0.0.1:9/never-fetched.json"},
            },
        }
    }
}


def list_names(gateway, key: str) -> set[str]:
    return set(list_tools(gateway, key))


def add_version(config, staff, label: str, doc: dict[str, Any], upstream: str, state: str) -> ApiVersion:
    version = ApiVersion.objects.create(
        api=config.api, version=label, base_path=f"{config.base_path}-{label}", openapi=doc
    )
    UpstreamTarget.objects.create(version=version, url=upstream)
    if state != "draft":
        lifecycle.publish_version(version, actor=staff)
    if state in ("deprecated", "retired"):
        lifecycle.deprecate_version(version, actor=staff)
    if state == "retired":
        lifecycle.retire_version(version, actor=staff)
    return version


def rpc(gateway, body: bytes, key: str | None, **headers: str) -> requests.Response:
    sent = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if key:
        sent["Authorization"] = f"Bearer {key}"
    sent.update({name.replace("_", "-"): value for name, value in headers.items()})
    return requests.post(f"{gateway.url}/mcp", data=body, headers=sent, timeout=10)


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.filter(username="gw-staff").first() or django_user_model.objects.create_user(
        "gw-staff", is_staff=True, is_superuser=True
    )


def test_a_key_lists_exactly_the_tools_of_its_subscribed_live_versions(gateway, configure, upstream_a, staff_user):
    mine = configure([upstream_a], openapi=NOTES)
    add_version(mine, staff_user, "old", document(("/old", "get", {"operationId": "oldOp"})), upstream_a, "retired")
    add_version(mine, staff_user, "next", document(("/next", "get", {"operationId": "draftOp"})), upstream_a, "draft")
    deprecated = document(("/dep", "get", {"operationId": "depOp"}))
    add_version(mine, staff_user, "dep", deprecated, upstream_a, "deprecated")
    theirs = configure([upstream_a], openapi=document(("/other", "get", {"operationId": "otherOp"})))
    # An API the first application is not subscribed to, though it is published and public.
    configure([upstream_a], openapi=document(("/free", "get", {"operationId": "freeOp"})), subscribe=False)
    gateway.wait_for_config()

    slug = mine.api.slug
    expected = {f"{slug}_v1_addNote", f"{slug}_v1_getItem", f"{slug}_v1_status", f"{slug}_dep_depOp"}
    assert list_names(gateway, mine.key) == expected
    assert list_names(gateway, theirs.key) == {f"{theirs.api.slug}_v1_otherOp"}

    tools = list_tools(gateway, mine.key)
    add_note = tools[f"{slug}_v1_addNote"]
    assert "Add a note to an item" in add_note.description and "POST /items/{item_id}/notes" in add_note.description
    schema = add_note.input_schema
    assert schema["required"] == ["item_id", "body"]
    assert set(schema["properties"]) == {"item_id", "lang", "X-Trace", "body"}
    body = schema["properties"]["body"]
    assert body["required"] == ["text"] and body["properties"]["text"]["maxLength"] == 200
    # The body is a Note; a Note's replies are Notes again: the cycle is cut there (any value).
    assert body["properties"]["replies"] == {"type": "array", "items": {}}
    assert "$ref" not in orjson.dumps(schema).decode()  # inlined; the remote one never fetched
    assert tools[f"{slug}_dep_depOp"].description.startswith("[deprecated]")
    # Calling it works, and says it is deprecated as a direct call would (Deprecation header).
    result = call(gateway, mine.key, f"{slug}_dep_depOp", {})
    assert result.is_error is False and result.meta["portico/deprecation"].startswith("@")
    assert result.structured_content["raw_path"] == "/dep"

    # Another tenant's tool is not callable by name either: the same answer as an unknown tool.
    async def call_theirs(session):
        try:
            await session.call_tool(f"{theirs.api.slug}_v1_otherOp", {})
        except MCPError as error:
            return error
        raise AssertionError("another tenant's tool was called")

    error = asyncio.run(with_session(gateway, mine.key, call_theirs))
    assert error.code == -32602 and "Unknown tool" in str(error)


def test_many_tools_come_in_pages(gateway, configure, upstream_a):
    many = document(*((f"/op{i}", "get", {"operationId": f"op{i}"}) for i in range(230)))
    config = configure([upstream_a], openapi=many)

    async def pages(session):
        first = await session.list_tools()
        return len(first.tools), first.next_cursor

    assert asyncio.run(with_session(gateway, config.key, pages)) == (100, "p100")
    assert set(list_tools(gateway, config.key)) == {f"{config.api.slug}_v1_op{i}" for i in range(230)}


def test_a_rest_tool_call_reaches_the_upstream_with_path_query_and_body(gateway, configure, upstream_a, redis_client):
    config = configure([upstream_a], openapi=NOTES)
    redis_client.delete(STREAM)
    arguments = {"item_id": "a b", "lang": "fr", "X-Trace": "t-1", "body": {"text": "héllo", "replies": []}}
    result = call(gateway, config.key, f"{config.api.slug}_v1_addNote", arguments)

    assert result.is_error is False
    echo = result.structured_content
    assert echo["method"] == "POST" and echo["upstream"] == "a"
    assert echo["raw_path"] == "/items/a%20b/notes?lang=fr"
    assert orjson.loads(echo["body"]) == {"text": "héllo", "replies": []}
    headers = {name.lower(): value for name, value in echo["headers"].items()}
    assert headers["content-type"] == "application/json" and headers["x-trace"] == "t-1"
    assert "authorization" not in headers  # the consumer's key never goes upstream
    assert headers["x-portico-application-id"] == str(config.application.pk)
    assert orjson.loads(result.content[0].text) == echo  # the answer as text too
    assert result.meta["portico/status"] == 200

    # The call is in the call log as an MCP call of this API, and ingested as one.
    request_id = result.meta["portico/request-id"]
    record = wait_for_record(redis_client, request_id)
    assert record["channel"] == "mcp" and record["status"] == 200 and record["method"] == "POST"
    assert record["api_id"] == config.api.pk and record["application_id"] == config.application.pk
    assert record["path"] == f"{config.base_path}/items/a b/notes"
    ingest_call_logs()
    assert CallLog.objects.get(request_id=request_id).channel == "mcp"
    # The tenant's export says so too.
    window = explorer.parse_filter({})
    rows = list(csv.reader(io.StringIO("".join(explorer.export_csv(config.owner, config.application.tenant, window)))))
    header = rows[0]
    [row] = [r for r in rows[1:] if r[header.index("request_id")] == request_id]
    assert row[header.index("channel")] == "mcp"

    # A header the operation declares is the argument's, sent once (not beside the gateway's default).
    result = call(gateway, config.key, f"{config.api.slug}_v1_getItem", {"item_id": "1", "Accept": "text/csv"})
    accepts = [value for name, value in result.structured_content["header_list"] if name.lower() == "accept"]
    assert accepts == ["text/csv"]


def wait_for_record(redis_client, request_id: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for _id, fields in redis_client.xrange(STREAM):
            for record in records_of(fields):
                if record["request_id"] == request_id:
                    return record
        time.sleep(0.1)
    raise AssertionError(f"no call record {request_id}")


def test_path_arguments_cannot_leave_the_base_path(gateway, configure, upstream_a):
    config = configure([upstream_a], openapi=NOTES)
    name = f"{config.api.slug}_v1_getItem"
    before = requests.get(f"{upstream_a}/count", timeout=5).json()["requests"]
    for hostile in ("../../admin", "..", ".", "a/b", "..;x", "a\\b", ""):
        result = call(gateway, config.key, name, {"item_id": hostile})
        assert result.is_error is True, hostile
        assert "item_id" in result.content[0].text
    assert requests.get(f"{upstream_a}/count", timeout=5).json()["requests"] == before  # none went upstream
    # Encoded dots stay one literal segment under the base path.
    result = call(gateway, config.key, name, {"item_id": "%2e%2e"})
    assert result.is_error is False and result.structured_content["raw_path"] == "/items/%252e%252e"


def test_an_upstream_error_is_a_tool_error_with_its_answer(gateway, configure, upstream_a):
    config = configure([upstream_a], openapi=NOTES)
    result = call(gateway, config.key, f"{config.api.slug}_v1_status", {"code": "503"})
    assert result.is_error is True and result.meta["portico/status"] == 503
    assert result.structured_content == {"upstream": "a"}


def test_a_call_over_the_plan_limit_is_refused_through_mcp(gateway, configure, upstream_a, redis_client):
    config = configure([upstream_a], openapi=NOTES, plan={"daily_quota": 2})
    redis_client.delete(STREAM)
    name = f"{config.api.slug}_v1_getItem"

    async def three_calls(session):
        return [await session.call_tool(name, {"item_id": str(i)}) for i in range(3)]

    results = asyncio.run(with_session(gateway, config.key, three_calls))
    assert [r.is_error for r in results] == [False, False, True]
    refused = results[2]
    assert refused.meta["portico/status"] == 429 and "portico/retry-after" in refused.meta
    assert refused.structured_content["error"]["code"] == "quota_exceeded"
    # A direct call agrees: the quota is the same one.
    assert gateway.get(f"{config.base_path}/items/9", config.key).status_code == 429
    record = wait_for_record(redis_client, refused.meta["portico/request-id"])
    assert record["channel"] == "mcp" and record["status"] == 429 and record["error_code"] == "quota_exceeded"


def test_the_sdk_client_speaks_2026_07_28_without_a_handshake_and_any_revision_by_handshake(
    gateway, configure, upstream_a
):
    config = configure([upstream_a], openapi=NOTES)
    name = f"{config.api.slug}_v1_getItem"

    async def run(mode: str):
        async with (
            httpx2.AsyncClient(headers={"X-API-Key": config.key}, timeout=30) as http,
            Client(streamable_http_client(f"{gateway.url}/mcp", http_client=http), mode=mode) as client,
        ):
            tools = await client.list_tools()
            result = await client.call_tool(name, {"item_id": "7"})
            return client.protocol_version, client.server_info, {tool.name for tool in tools.tools}, result

    # "auto": server/discover, then every request on its own (no initialize, no session).
    version, info, names, result = asyncio.run(run("auto"))
    assert version == "2026-07-28" and info is not None and info.name == "portico-gateway"
    assert name in names and result.is_error is False and result.structured_content["raw_path"] == "/items/7"
    # "legacy": the initialize handshake.
    version, info, names, result = asyncio.run(run("legacy"))
    assert version == "2025-11-25" and info.name == "portico-gateway"
    assert name in names and result.is_error is False


def test_no_key_or_a_bad_key_is_401_with_json_and_www_authenticate(gateway, configure, upstream_a):
    config = configure([upstream_a], openapi=NOTES)
    ping = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
    for key, code in ((None, "missing_api_key"), ("pt_nothere.secret", "invalid_api_key")):
        answer = rpc(gateway, ping, key)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        body = answer.json()
        assert body["jsonrpc"] == "2.0" and body["id"] is None and body["error"]["data"]["code"] == code
    assert rpc(gateway, ping, config.key).json() == {"jsonrpc": "2.0", "id": 1, "result": {}}


def test_hostile_protocol_input_gets_json_errors_never_a_500(gateway, configure, upstream_a):
    config = configure([upstream_a], openapi=NOTES)
    key = config.key
    url = f"{gateway.url}/mcp"
    auth = {"Authorization": f"Bearer {key}"}

    def error_of(answer: requests.Response) -> dict[str, Any]:
        assert answer.headers["Content-Type"] == "application/json", answer.text
        return answer.json()["error"]

    # The transport: only POST, JSON in and out, and no stream to open or session to end.
    for method in ("GET", "DELETE", "PUT"):
        answer = requests.request(method, url, headers=auth, timeout=5)
        assert answer.status_code == 405 and answer.headers["Allow"] == "POST" and error_of(answer)
    answer = requests.post(url, data=b"x=1", headers={**auth, "Content-Type": "text/plain"}, timeout=5)
    assert answer.status_code == 415 and error_of(answer)["data"]["code"] == "unsupported_media_type"
    answer = requests.post(url, data=b"{}", headers={**auth, "Content-Type": "application/json", "Accept": "text/html"})
    assert answer.status_code == 406 and error_of(answer)
    answer = requests.post(url, data=b"{}", headers={**auth, "Content-Type": "application/json", "Accept": None})
    assert answer.status_code == 406 and error_of(answer)["data"]["code"] == "not_acceptable"  # no Accept at all
    answer = rpc(gateway, b"{}", key, Origin="http://evil.example")
    assert answer.status_code == 403 and error_of(answer)["data"]["code"] == "origin_forbidden"

    # JSON-RPC: parse errors, invalid requests, unknown methods and bad params.
    assert error_of(rpc(gateway, b"{not json", key))["code"] == -32700
    deep = b'{"a":' * 5000 + b"1" + b"}" * 5000
    answer = rpc(gateway, deep, key)
    assert answer.status_code == 400 and error_of(answer)["code"] == -32700
    answer = rpc(gateway, b"x" * (2 * 1024 * 1024), key)
    assert answer.status_code == 413 and error_of(answer)["data"]["code"] == "request_too_large"
    answer = rpc(gateway, b'{"jsonrpc":"2.0","id":null,"method":"ping"}', key)
    assert answer.status_code == 400 and error_of(answer)["code"] == -32600
    assert error_of(rpc(gateway, b"[1, 2]", key, MCP_Protocol_Version="2025-06-18"))["data"]["code"] == (
        "batch_not_supported"
    )
    answer = rpc(gateway, b"{}", key, MCP_Protocol_Version="1999-01-01")
    assert answer.status_code == 400 and error_of(answer)["code"] == -32022
    for body, code in (
        (b'{"jsonrpc":"2.0","id":2,"method":"resources/list"}', -32601),
        (b'{"jsonrpc":"2.0","id":"x","method":"tools/call","params":[1]}', -32602),
        (b'{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"nope"}}', -32602),
        (b'{"jsonrpc":"2.0","id":4,"method":"tools/list","params":{"cursor":"zzz"}}', -32602),
        (b'{"jsonrpc":"2.0","id":5,"method":"initialize","params":{}}', -32602),
    ):
        answer = rpc(gateway, body, key, MCP_Protocol_Version="2025-11-25")
        assert answer.status_code == 200 and error_of(answer)["code"] == code, body
        assert answer.json()["id"] == orjson.loads(body)["id"]
    # A notification is accepted with no body; a batch, in a revision that has them, answered in one.
    answer = rpc(gateway, b'{"jsonrpc":"2.0","method":"notifications/initialized"}', key)
    assert answer.status_code == 202 and answer.content == b""
    batch = b'[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/x"},7]'
    answer = rpc(gateway, batch, key, MCP_Protocol_Version="2025-03-26")
    assert answer.status_code == 200
    assert answer.json() == [
        {"jsonrpc": "2.0", "id": 1, "result": {}},
        {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "Not a JSON-RPC 2.0 message."}},
    ]
    # Arguments: nested past what can be sent, of the wrong type, or a header that would split.
    name = f"{config.api.slug}_v1_addNote"
    deep_arguments = b'{"item_id":"1","body":' + b'{"a":' * 300 + b"1" + b"}" * 301
    for arguments in (
        orjson.Fragment(deep_arguments),  # deeper than the gateway's encoder goes
        {"item_id": {"x": 1}, "body": {}},
        {"item_id": "1", "X-Trace": "a\r\nX-Evil: 1", "body": {}},
        {"item_id": "1", "body": {}, "extra": 1},
        "not an object",
    ):
        params = {"name": name, "arguments": arguments}
        body = orjson.dumps({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": params})
        answer = rpc(gateway, body, key, MCP_Protocol_Version="2025-11-25")
        assert answer.status_code == 200, answer.text
        assert answer.json()["result"]["isError"] is True, arguments
    # Still serving.
    assert rpc(gateway, b'{"jsonrpc":"2.0","id":1,"method":"ping"}', key).status_code == 200


def test_2026_requests_carry_their_envelope_and_headers_that_agree_with_it(gateway, configure, upstream_a):
    config = configure([upstream_a], openapi=NOTES)
    name = f"{config.api.slug}_v1_getItem"
    envelope = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }

    def send(method: str, params: dict[str, Any], **headers: str) -> requests.Response:
        body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        headers = {"MCP_Protocol_Version": "2026-07-28", "Mcp_Method": method, **headers}
        return rpc(gateway, body, config.key, **headers)

    listed = send("tools/list", {"_meta": envelope})
    assert listed.status_code == 200
    result = listed.json()["result"]
    assert result["resultType"] == "complete" and result["cacheScope"] == "private" and result["ttlMs"] == 0
    assert name in {tool["name"] for tool in result["tools"]}

    before = requests.get(f"{upstream_a}/count", timeout=5).json()["requests"]
    for answer, code, status in (
        (send("tools/list", {}), -32602, 400),  # no envelope
        (send("tools/list", {"_meta": envelope}, Mcp_Method="tools/call"), -32020, 400),
        (
            send("tools/list", {"_meta": {**envelope, "io.modelcontextprotocol/protocolVersion": "2025-11-25"}}),
            -32020,
            400,
        ),
        (
            send("tools/call", {"_meta": envelope, "name": name, "arguments": {"item_id": "1"}}, Mcp_Name="other"),
            -32020,
            400,
        ),
        (
            send("tools/call", {"_meta": envelope, "name": name, "arguments": {"item_id": "1"}}),
            -32020,
            400,
        ),  # no Mcp-Name
        (send("resources/list", {"_meta": envelope}), -32601, 404),
        (send("tools/call", {"_meta": envelope, "name": "nope"}, Mcp_Name="nope"), -32602, 400),
    ):
        assert answer.status_code == status and answer.json()["error"]["code"] == code, answer.text
    assert requests.get(f"{upstream_a}/count", timeout=5).json()["requests"] == before  # nothing was called

    # A name that is not plain ASCII travels base64-wrapped, as the SDK sends it.
    wrapped = "=?base64?" + base64.b64encode(name.encode()).decode() + "?="
    called = send("tools/call", {"_meta": envelope, "name": name, "arguments": {"item_id": "1"}}, Mcp_Name=wrapped)
    assert called.status_code == 200 and called.json()["result"]["resultType"] == "complete"
    assert called.json()["result"]["isError"] is False


def test_each_tool_call_is_one_record_and_the_envelope_none(gateway, configure, upstream_a, redis_client):
    config = configure([upstream_a], openapi=NOTES, plan={"requests_per_second": 1000})
    redis_client.delete(STREAM)
    name = f"{config.api.slug}_v1_getItem"

    def one(i: int) -> str:
        params = {"name": name, "arguments": {"item_id": str(i)}}
        body = orjson.dumps({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": params})
        answer = rpc(gateway, body, config.key, MCP_Protocol_Version="2025-11-25").json()
        assert answer["result"]["isError"] is False
        return answer["result"]["_meta"]["portico/request-id"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        ids = set(pool.map(one, range(40)))
    listing = rpc(gateway, b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}', config.key)
    assert listing.status_code == 200
    assert len(ids) == 40
    deadline = time.monotonic() + 10
    mine: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        records = [r for _i, f in redis_client.xrange(STREAM) for r in records_of(f)]
        mine = [r for r in records if r["application_id"] == config.application.pk]
        if len(mine) >= 41:
            break
        time.sleep(0.1)
    tool_calls = [r for r in mine if r["path"] != "/mcp"]
    assert sorted(r["request_id"] for r in tool_calls) == sorted(ids)  # each once
    assert {r["channel"] for r in tool_calls} == {"mcp"} and {r["status"] for r in tool_calls} == {200}
    # The tools/list request made no API call: it is one record of its own.
    [envelope] = [r for r in mine if r["path"] == "/mcp"]
    assert envelope["channel"] == "mcp" and envelope["api_id"] is None and envelope["status"] == 200


def test_bad_keys_on_mcp_count_against_the_address_like_rest_calls_and_get_429(gateway, configure, upstream_a):
    """The per-address auth-failure limiter guards /mcp too, with one allowance shared with
    REST paths: a key guesser cannot get a second 20 attempts by switching to /mcp."""
    import http.client

    config = configure([upstream_a], openapi=NOTES)
    gateway.wait_for_config()
    address = "127.0.0.41"  # this test's own: the allowance is per address, in the session's Redis
    listing = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}})

    def attempt(path: str, key: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5, source_address=(address, 0))
        headers = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"}
        if path == "/mcp":
            conn.request("POST", path, body=listing, headers={**headers, "Content-Type": "application/json"})
        else:
            conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        answer = (response.status, response.read())
        conn.close()
        return answer

    wrong = config.key_prefix + ".wrong"
    rest = [attempt(f"{config.base_path}/status", wrong)[0] for _ in range(10)]
    mcp = [attempt("/mcp", wrong) for _ in range(15)]
    assert rest == [401] * 10
    assert [status for status, _body in mcp] == [401] * 10 + [429] * 5
    error = orjson.loads(mcp[-1][1])["error"]
    assert error["data"]["code"] == "too_many_auth_failures"
    # The block is for bad keys: the right key from that address still lists its tools.
    status, body = attempt("/mcp", config.key)
    assert status == 200 and orjson.loads(body)["result"]["tools"]
