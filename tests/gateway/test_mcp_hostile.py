"""/mcp attacked (issue 13 review), on the real gateway under gunicorn: a provider's OpenAPI
document that would make tools/list huge, cursors that are digits only to ``str.isdigit``,
and batches whose refused tool calls must still be in the call log."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from gateway.calllog import records_of
from portal.models import Api
from portal.services import subscriptions
from portal.services.config_signal import publish_config_change
from tests.gateway.mcpclient import call, list_tools
from tests.gateway.test_gateway_mcp import NOTES, STREAM, add_version, document, rpc

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

MAX_TOOL_BYTES = 64 * 1024  # gateway/mcptools.py


@pytest.fixture
def staff_user(django_user_model):
    return django_user_model.objects.filter(username="gw-staff").first() or django_user_model.objects.create_user(
        "gw-staff", is_staff=True, is_superuser=True
    )


LIST = b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}'


def big_description_document(operations: int, description_bytes: int) -> dict[str, Any]:
    """One huge string in one schema, referenced by every operation: small as a document
    (under the portal's 1 MiB), each tool carries the string once."""
    body = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Big"}}}}
    doc = document(*((f"/op{i}", "post", {"operationId": f"op{i}", "requestBody": body}) for i in range(operations)))
    big = {"type": "object", "properties": {"text": {"type": "string", "description": "x" * description_bytes}}}
    doc["components"] = {"schemas": {"Big": big}}
    return doc


def test_a_document_repeating_a_huge_string_cannot_make_tools_list_huge(gateway, configure, upstream_a):
    doc = big_description_document(60, 600_000)
    assert len(orjson.dumps(doc)) < 1024 * 1024  # what the portal accepts
    config = configure([upstream_a], openapi=doc)
    names: list[str] = []
    cursor = None
    for _page in range(70):
        params = {"cursor": cursor} if cursor else {}
        body = orjson.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": params})
        answer = rpc(gateway, body, config.key, MCP_Protocol_Version="2025-11-25")
        assert answer.status_code == 200
        # Before: a page of 60 tools carrying the 600 kB string each (36 MB).
        assert len(answer.content) <= 2 * 1024 * 1024
        result = answer.json()["result"]
        for tool in result["tools"]:
            assert len(orjson.dumps(tool)) <= MAX_TOOL_BYTES
            names.append(tool["name"])
        cursor = result.get("nextCursor")
        if not cursor:
            break
    # Every operation is still a tool (listed without the huge schema) and callable.
    assert sorted(names) == sorted(f"{config.api.slug}_v1_op{i}" for i in range(60))
    call = {"name": f"{config.api.slug}_v1_op7", "arguments": {"body": {"text": "hi"}}}
    body = orjson.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call})
    answer = rpc(gateway, body, config.key, MCP_Protocol_Version="2025-11-25").json()
    assert answer["result"]["isError"] is False and answer["result"]["structuredContent"]["raw_path"] == "/op7"


def test_a_batch_of_listings_stays_bounded(gateway, configure, upstream_a):
    config = configure([upstream_a], openapi=big_description_document(60, 600_000))
    batch = b"[" + b",".join([LIST] * 32) + b"]"
    answer = rpc(gateway, batch, config.key, MCP_Protocol_Version="2025-03-26")
    assert answer.status_code == 200 and len(answer.json()) == 32
    # Before: 32 pages of 36 MB each in one answer (1.1 GB for one request).
    assert len(answer.content) <= 40 * 1024 * 1024


@pytest.mark.parametrize("cursor", ["p²", "p١٢", "p" + "9" * 12, "p-1", 5, None, ["p1"]])
def test_a_cursor_that_is_not_ascii_digits_is_invalid_params_not_a_500(gateway, configure, upstream_a, cursor):
    config = configure([upstream_a], openapi=NOTES)
    body = orjson.dumps({"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": {"cursor": cursor}})
    answer = rpc(gateway, body, config.key, MCP_Protocol_Version="2025-11-25")
    if cursor is None:  # no cursor: the first page
        assert answer.status_code == 200 and answer.json()["result"]["tools"]
        return
    assert answer.status_code == 200, answer.text
    assert answer.json()["error"]["code"] == -32602


def test_a_batch_records_a_refused_tool_call_next_to_the_calls_it_made(gateway, configure, upstream_a, redis_client):
    config = configure([upstream_a], openapi=NOTES)
    redis_client.delete(STREAM)
    good = {"name": f"{config.api.slug}_v1_getItem", "arguments": {"item_id": "1"}}
    bad = {"name": f"{config.api.slug}_v1_getItem", "arguments": {"item_id": "1", "nope": 1}}
    batch = orjson.dumps(
        [
            {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": good},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": bad},
        ]
    )
    answer = rpc(gateway, batch, config.key, MCP_Protocol_Version="2025-03-26", X_Request_Id="batch-review-0001")
    first, second = answer.json()
    assert first["result"]["isError"] is False and second["result"]["isError"] is True
    deadline = time.monotonic() + 10
    mine: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        records = [r for _i, f in redis_client.xrange(STREAM) for r in records_of(f)]
        mine = [r for r in records if r["application_id"] == config.application.pk]
        if len(mine) >= 2:
            break
        time.sleep(0.1)
    time.sleep(0.5)  # and no more come
    mine = [
        r
        for _i, f in redis_client.xrange(STREAM)
        for r in records_of(f)
        if r["application_id"] == config.application.pk
    ]
    [call] = [r for r in mine if r["path"] != "/mcp"]
    assert call["status"] == 200 and call["channel"] == "mcp"
    # Before: the envelope was dropped because one API call was made, and the refused call with it.
    [envelope] = [r for r in mine if r["path"] == "/mcp"]
    assert envelope["error_code"] == "invalid_tool_arguments" and envelope["channel"] == "mcp"


def test_a_document_with_a_number_json_allows_and_orjson_refuses_breaks_no_listing(gateway, configure, upstream_a):
    """An integer past 64 bits is valid JSON (the portal stores it); the gateway's encoder
    refuses it. The tool is listed without that schema; the other tools of the same
    application still list, and the snapshot (every API's routes) still loads."""
    good = configure([upstream_a], openapi=NOTES)
    huge = document(
        (
            "/n",
            "get",
            {
                "operationId": "bigNumber",
                "parameters": [{"name": "n", "in": "query", "schema": {"type": "integer", "maximum": 2**70}}],
            },
        )
    )
    bad = configure([upstream_a], openapi=huge)
    subscriptions.request_subscription(good.application, bad.api, bad.plan, actor=good.owner)
    after = configure([upstream_a], openapi=NOTES)  # the next configuration still loads
    assert gateway.get(after.base_path + "/items/1", after.key).status_code == 200
    answer = rpc(gateway, LIST, good.key, MCP_Protocol_Version="2025-11-25")
    # Before: a 500 for every application subscribed to the API with the number.
    assert answer.status_code == 200, answer.text
    tools = {tool["name"]: tool for tool in answer.json()["result"]["tools"]}
    assert f"{good.api.slug}_v1_addNote" in tools
    assert tools[f"{bad.api.slug}_v1_bigNumber"]["inputSchema"]["properties"] == {"n": {}}


def test_a_later_api_cannot_take_an_existing_tools_name(gateway, configure, upstream_a, redis_client):
    """Tool names are slug_version_operation with '_' between: another tenant can publish an
    API whose slug is a prefix of this one's (slugs allow '_') and whose operation completes
    the name. The API that had the name keeps it; the newcomer's is the one suffixed, so an
    agent calling a name it knows never reaches another tenant's upstream."""
    victim = configure([upstream_a], openapi=document(("/get", "get", {"operationId": "get"})))
    stem = victim.api.slug.replace("-", "")
    Api.objects.filter(pk=victim.api.pk).update(slug=f"{stem}_v1")
    publish_config_change("test: slug")
    gateway.wait_for_config()
    name = f"{stem}_v1_v1_get"
    assert set(list_tools(gateway, victim.key)) == {name}

    squatter = configure([upstream_a], openapi=document(("/x", "get", {"operationId": "v1_get"})))
    Api.objects.filter(pk=squatter.api.pk).update(slug=stem)
    subscriptions.request_subscription(victim.application, squatter.api, squatter.plan, actor=victim.owner)
    gateway.wait_for_config()
    tools = list_tools(gateway, victim.key)
    # Before: sorted by slug, the squatter's API took the name and the victim's became name_2.
    assert tools[name].description.startswith(f"{victim.api.name} v1: GET /get")
    assert set(tools) == {name, f"{name}_2"}
    result = call(gateway, victim.key, name, {})
    assert result.is_error is False and result.structured_content["raw_path"] == "/get"


def test_a_documents_tools_share_one_expansion_budget(gateway, configure, upstream_a):
    """256 operations whose body each expands (through $refs that double) to just under the
    per-tool node cap: every worker built a million nodes for this one version. Past the
    version's budget, tools are listed with slim schemas; all of them are still tools."""
    schemas: dict[str, Any] = {
        f"L{i}": {"allOf": [{"$ref": f"#/components/schemas/L{i + 1}"}, {"$ref": f"#/components/schemas/L{i + 1}"}]}
        for i in range(5)
    }
    schemas["L5"] = {"type": "object", "properties": {f"p{j}": {"type": "string"} for j in range(30)}}
    body = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/L0"}}}}
    doc = document(*((f"/op{i}", "post", {"operationId": f"op{i}", "requestBody": body}) for i in range(256)))
    doc["components"] = {"schemas": schemas}
    config = configure([upstream_a], openapi=doc)
    tools = list_tools(gateway, config.key)
    assert len(tools) == 256
    full = [name for name, tool in tools.items() if "allOf" in orjson.dumps(tool.input_schema).decode()]
    # Before: all 256 (about 4,000 nodes each).
    assert 0 < len(full) <= 100_000 // 2000
    slim = next(name for name in tools if name not in full)
    result = call(gateway, config.key, slim, {"body": {"p1": "x"}})
    assert result.is_error is False and result.structured_content["raw_path"].startswith("/op")


def test_a_batch_of_tool_calls_is_counted_call_by_call_against_the_plan(gateway, configure, upstream_a, redis_client):
    config = configure([upstream_a], openapi=NOTES, plan={"daily_quota": 3})
    redis_client.delete(STREAM)
    params = {"name": f"{config.api.slug}_v1_getItem", "arguments": {"item_id": "1"}}
    batch = orjson.dumps([{"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": params} for i in range(10)])
    answers = rpc(gateway, batch, config.key, MCP_Protocol_Version="2025-03-26").json()
    statuses = [answer["result"]["_meta"]["portico/status"] for answer in answers]
    assert statuses == [200] * 3 + [429] * 7
    assert {answer["result"]["structuredContent"]["error"]["code"] for answer in answers[3:]} == {"quota_exceeded"}
    deadline = time.monotonic() + 10
    records: list[dict[str, Any]] = []
    while time.monotonic() < deadline and len(records) < 10:
        records = [
            r
            for _i, f in redis_client.xrange(STREAM)
            for r in records_of(f)
            if r["application_id"] == config.application.pk
        ]
        time.sleep(0.1)
    assert sorted(r["status"] for r in records) == [200] * 3 + [429] * 7  # each call once, the envelope none


def test_retired_and_draft_tools_cannot_be_called_by_their_would_be_names(gateway, configure, upstream_a, staff_user):
    config = configure([upstream_a], openapi=NOTES)
    add_version(config, staff_user, "old", document(("/old", "get", {"operationId": "oldOp"})), upstream_a, "retired")
    add_version(config, staff_user, "next", document(("/next", "get", {"operationId": "draftOp"})), upstream_a, "draft")
    gateway.wait_for_config()
    slug = config.api.slug
    for name in (f"{slug}_old_oldOp", f"{slug}_next_draftOp"):
        params = {"name": name, "arguments": {}}
        body = orjson.dumps({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": params})
        answer = rpc(gateway, body, config.key, MCP_Protocol_Version="2025-11-25")
        assert answer.status_code == 200 and answer.json()["error"]["code"] == -32602, name
        assert "Unknown tool" in answer.json()["error"]["message"]
    # The retired version's route still answers 410 to a direct call; the draft has none.
    assert gateway.get(f"{config.base_path}-old/old", config.key).status_code == 410
    assert gateway.get(f"{config.base_path}-next/next", config.key).status_code == 404
