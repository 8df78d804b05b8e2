"""An MCP tool call is a child of its MCP request in the request's trace: the upstream gets
the client's trace id under a span of the gateway's, and the tool call's record holds it."""

from __future__ import annotations

import asyncio
import re

import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.gateway.rawhttp import find_call_record

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

TRACE = "7ace" * 8
PARENT = "00f067aa0ba902b7"
ECHO = {
    "openapi": "3.0.3",
    "info": {"title": "t", "version": "1"},
    "paths": {"/echo": {"get": {"operationId": "echo"}}},
}


def call_tool(gateway, key: str, name: str, headers: dict[str, str]):
    async def run():
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}", **headers}, timeout=30) as http,
            streamable_http_client(f"{gateway.url}/mcp", http_client=http) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            return await session.call_tool(name, {})

    return asyncio.run(run())


def request_id(echo) -> str:
    (value,) = [v for n, v in echo["header_list"] if n.lower() == "x-request-id"]
    return value


def upstream_traceparent(echo) -> tuple[str, str, str]:
    (value,) = [v for n, v in echo["header_list"] if n.lower() == "traceparent"]
    match = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})", value)
    assert match, value
    return match.group(1), match.group(2), match.group(3)


def test_a_tool_call_joins_the_mcp_requests_trace(gateway, configure, upstream_a, redis_client):
    config = configure([upstream_a], openapi=ECHO)
    tool = f"{config.api.slug}_v1_echo"
    result = call_tool(gateway, config.key, tool, {"traceparent": f"00-{TRACE}-{PARENT}-01", "tracestate": "me=1"})
    assert result.is_error is False
    echo = result.structured_content
    trace_id, parent_id, flags = upstream_traceparent(echo)
    assert (trace_id, flags) == (TRACE, "01") and parent_id != PARENT
    assert [v for n, v in echo["header_list"] if n.lower() == "tracestate"] == ["me=1"]
    record = find_call_record(redis_client, request_id(echo))
    assert record["trace_id"] == TRACE and record["channel"] == "mcp"

    # Without one, the tool call is still in the trace of the MCP request that made it.
    result = call_tool(gateway, config.key, tool, {})
    echo = result.structured_content
    trace_id, _parent, _flags = upstream_traceparent(echo)
    assert trace_id != TRACE
    assert find_call_record(redis_client, request_id(echo))["trace_id"] == trace_id
