"""gateway.promptcall.call_prompt: the prompt pipeline without HTTP, for a key the caller
(the MCP server) has already authenticated. Run in this process on a real Gateway object
(Redis, the snapshot from the test database, the call log) against the mock provider."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.promptcall import call_prompt
from tests.llm.prompt_apis import model_route, prompt_api

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

GOOD = {"text": "I love this", "language": "en"}


def run_calls(calls: list[tuple[str, dict[str, Any]]], version_id: int, key_prefix: str) -> list[tuple[int, dict]]:
    """Start a Gateway in this process, run ``calls`` (key prefix or "other", arguments)."""

    async def main() -> list[tuple[int, dict]]:
        gateway = Gateway()
        await gateway.startup()
        try:
            snapshot = gateway.snapshot
            route = next(r for r in snapshot.routes if r.version_id == version_id)
            results = []
            for prefix, arguments in calls:
                key = snapshot.keys[prefix]
                results.append(
                    await call_prompt(
                        gateway, route, key, arguments, path="/mcp", headers=[(b"x-request-id", b"mcp-test-0001")]
                    )
                )
            return results
        finally:
            await gateway.shutdown()

    return asyncio.run(main())


def test_call_prompt_runs_the_whole_pipeline_and_is_logged(ai_route, mock_llm, call_record):
    model = model_route(ai_route)
    built = prompt_api(ai_route, model, plan={"requests_per_minute": 2})
    stranger = prompt_api(ai_route, model_route(ai_route))  # a key subscribed to another prompt API
    (ok_status, ok), (bad_status, bad), (limited_status, limited), (other_status, other) = run_calls(
        [
            (built.key_prefix, {**GOOD, "stream": True}),  # stream is dropped: a body comes back
            (built.key_prefix, {"text": 5}),
            (built.key_prefix, GOOD),
            (stranger.key_prefix, GOOD),
        ],
        built.version.pk,
        built.key_prefix,
    )
    assert ok_status == 200 and isinstance(ok["output"], str) and ok["usage"]["total_tokens"] > 0
    assert ok["model"] == model.route.alias
    assert bad_status == 422 and {f["path"] for f in bad["error"]["fields"]} == {"$.text", "$.language"}
    assert limited_status == 429 and limited["error"]["code"] == "rate_limited"
    assert other_status == 403 and other["error"]["code"] == "not_subscribed"
    records = call_record.all_of(built.key_prefix)
    for _ in range(100):
        if len(records) >= 3:
            break
        asyncio.run(asyncio.sleep(0.05))
        records = call_record.all_of(built.key_prefix)
    assert sorted(r["status"] for r in records) == [200, 422, 429]
    for record in records:
        assert record["path"] == "/mcp" and record["api_id"] == built.api.pk
        assert record["version_id"] == built.version.pk and record["client_request_id"] == "mcp-test-0001"
    [success] = [r for r in records if r["status"] == 200]
    assert success["tokens_in"] == ok["usage"]["prompt_tokens"] and success["model"] == model.route.alias
