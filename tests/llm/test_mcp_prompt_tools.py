"""A prompt API as an MCP tool, on the real gateway with the real mock provider and the
official MCP client: listed with its input schema, called through the prompt pipeline
(output, usage, model), invalid input a tool error naming each field, the plan's limit
refusing, and the call log saying the calls came through MCP."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from llm.models import OutputMode
from portal.services import lifecycle
from tests.gateway.mcpclient import call, list_tools
from tests.llm.conftest import MockLLM
from tests.llm.prompt_apis import SENTIMENT_INPUT, SENTIMENT_OUTPUT, model_route, prompt_api

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

GOOD = {"text": "I love this", "language": "en"}


def test_a_prompt_api_is_a_tool_taking_its_input(ai_route, gateway, mock_llm, call_record):
    built = prompt_api(ai_route, model_route(ai_route), plan={"daily_quota": 3})
    gateway.wait_for_config()
    name = f"{built.api.slug}_v1"

    tools = list_tools(gateway, built.key)
    assert set(tools) == {name}
    assert tools[name].input_schema == SENTIMENT_INPUT

    result = call(gateway, built.key, name, GOOD)
    assert result.is_error is False, result.content[0].text
    [sent] = mock_llm.requests(kind="openai")
    said = MockLLM.answer_for(sent)
    assert sent["body"]["messages"][1]["content"] == "Classify the sentiment of: I love this (language en)"
    assert result.content[0].text == said.text
    answer = result.structured_content
    assert answer["output"] == said.text and answer["model"] == built.model.route.alias
    assert answer["usage"]["prompt_tokens"] == said.prompt_tokens
    assert answer["usage"]["completion_tokens"] == said.completion_tokens

    # Input the schema refuses: a tool error naming each field, and no model call.
    refused = call(gateway, built.key, name, {"text": "", "language": "xx", "strength": 9})
    assert refused.is_error is True and refused.meta["portico/status"] == 422
    paths = {field["path"] for field in refused.structured_content["error"]["fields"]}
    assert {"$.text", "$.language", "$.strength"} <= paths
    assert len(mock_llm.requests(kind="openai")) == 1

    # The plan counts tool calls like any other: the quota of 3 is spent (two calls above).
    assert call(gateway, built.key, name, GOOD).is_error is False
    over = call(gateway, built.key, name, GOOD)
    assert over.is_error is True and over.meta["portico/status"] == 429
    assert over.structured_content["error"]["code"] == "quota_exceeded"

    def tool_calls() -> list[dict]:
        return [r for r in call_record.all_of(built.key_prefix) if r["api_id"] == built.api.pk]

    deadline = time.monotonic() + 10  # the call log ships in batches
    while len(tool_calls()) < 4 and time.monotonic() < deadline:
        time.sleep(0.1)
    found = tool_calls()
    assert len(found) == 4 and {r["channel"] for r in found} == {"mcp"}
    assert [r["status"] for r in found] == [200, 422, 200, 429]
    assert found[0]["tokens_in"] == said.prompt_tokens and found[0]["path"] == built.base_path


def test_json_output_prompts_answer_structured_output(ai_route, gateway, mock_llm):
    built = prompt_api(ai_route, model_route(ai_route), output_mode=OutputMode.JSON, output_schema=SENTIMENT_OUTPUT)
    gateway.wait_for_config()
    result = call(gateway, built.key, f"{built.api.slug}_v1", GOOD)
    assert result.is_error is False
    output = result.structured_content["output"]
    assert output["label"] in ("positive", "negative", "neutral") and isinstance(output["score"], int | float)


def test_unsubscribed_draft_and_broken_prompt_apis_are_not_tools(ai_route, gateway, mock_llm):
    model = model_route(ai_route)
    unsubscribed = prompt_api(ai_route, model, subscribe=False)
    draft = prompt_api(ai_route, model, state="draft")
    # A stored schema the gateway refuses to serve (a remote $ref): a 503 when called, so no tool.
    remote = {
        **SENTIMENT_INPUT,
        "properties": {**SENTIMENT_INPUT["properties"], "text": {"$ref": "http://127.0.0.1:9/x"}},
    }
    broken = prompt_api(ai_route, model, input_schema=remote)
    gateway.wait_for_config()
    assert list_tools(gateway, unsubscribed.key) == {}
    assert list_tools(gateway, draft.key) == {}
    assert list_tools(gateway, broken.key) == {}
    direct = requests.post(
        gateway.url + broken.base_path, json=GOOD, headers={"Authorization": f"Bearer {broken.key}"}, timeout=10
    )
    assert direct.status_code == 503  # routed and subscribed: only its brokenness keeps it off the list


def test_a_deprecated_prompt_tool_says_so_in_its_result_as_a_rest_tool_does(ai_route, gateway, mock_llm):
    built = prompt_api(ai_route, model_route(ai_route), plan={"daily_quota": 1})
    sunset = timezone.now() + timedelta(days=30)
    lifecycle.deprecate_version(built.version, actor=ai_route.staff, sunset_at=sunset)
    gateway.wait_for_config()
    name = f"{built.api.slug}_v1"
    assert list_tools(gateway, built.key)[name].description.startswith("[deprecated]")

    result = call(gateway, built.key, name, GOOD)
    assert result.is_error is False, result.content[0].text
    direct = requests.post(gateway.url + built.base_path, json=GOOD, headers={"Authorization": "Bearer x"}, timeout=10)
    # The same notice a direct call's answer carries (Deprecation, Sunset), and the call's id.
    assert result.meta["portico/deprecation"] == direct.headers["deprecation"]
    assert result.meta["portico/sunset"] == direct.headers["sunset"]
    assert len(result.meta["portico/request-id"]) == 32
    # A refusal (the quota of 1 is spent) still carries it, and when to retry.
    over = call(gateway, built.key, name, GOOD)
    assert over.is_error is True and over.meta["portico/status"] == 429
    assert over.meta["portico/deprecation"].startswith("@") and int(over.meta["portico/retry-after"]) > 0
