"""The official MCP SDK as a test client of the gateway's /mcp: a session with the
streamable HTTP transport, the API key in the Authorization header."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import mcp_types
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client


async def with_session(gateway, key: str | None, action):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        streamable_http_client(f"{gateway.url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        return await action(session)


def list_tools(gateway, key: str) -> dict[str, Any]:
    """The key's tools by name (every page)."""

    async def tools(session):
        found, cursor = {}, None
        while True:
            params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await session.list_tools(params=params)
            found.update({tool.name: tool for tool in page.tools})
            cursor = page.next_cursor
            if not cursor:
                return found

    return asyncio.run(with_session(gateway, key, tools))


def call(gateway, key: str, name: str, arguments: dict[str, Any]):
    async def run(session):
        return await session.call_tool(name, arguments)

    return asyncio.run(with_session(gateway, key, run))
