"""Any inbound format to any provider, end to end: the openai SDK against a route on each
provider kind, and the anthropic SDK against an OpenAI and a Gemini route, non-streamed and
streamed. For each call, the mock says the request it received follows that provider's
documented format (conformance verdict clean), the answer's text and usage are what the mock
answered (in the canonical meaning: prompt tokens include cached ones), finish reasons are
mapped, and the Portico headers name the upstream model and provider."""

from __future__ import annotations

import json

import pytest

from llm.mock_provider.answers import embedding
from tests.llm.conftest import WEATHER_TOOL, WEATHER_TOOL_ANTHROPIC, Target, clean, user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

KINDS = ("openai", "azure-openai", "anthropic", "gemini", "mistral", "openai-compatible")
# Mistral and vLLM-style servers report no cached-token detail, so the canonical count is 0.
REPORTS_CACHED = {"openai", "azure-openai", "anthropic", "gemini"}
SYSTEM = "You are a careful assistant. " * 10  # long enough to count as a cached prefix upstream


def portico_headers_name(headers, target) -> None:
    assert headers["x-portico-model"] == target.upstream
    assert headers["x-portico-provider"] == target.kind
    assert float(headers["x-portico-overhead-ms"]) >= 0
    assert headers["x-request-id"]


def last_request(mock_llm, target) -> dict:
    seen = mock_llm.requests(model=target.upstream)
    assert seen, f"the {target.kind} mock received nothing for {target.upstream}"
    request = seen[-1]
    assert clean(request), request["conformance"]
    assert request["kind"] == target.kind and request["status"] == 200
    return request


@pytest.mark.parametrize("kind", KINDS)
def test_the_openai_sdk_reaches_each_provider_kind(kind, ai_route, mock_llm, call_record):
    route = ai_route([Target(kind)])
    target = route.target
    client = route.openai()

    raw = client.chat.completions.with_raw_response.create(
        model=route.alias, messages=[{"role": "system", "content": SYSTEM}, *user("Hello there")]
    )
    completion = raw.parse()
    said = mock_llm.answer_for(last_request(mock_llm, target))
    cached = said.cached_tokens if kind in REPORTS_CACHED else 0
    assert completion.choices[0].message.content == said.text == f"Mock {kind} answer to: Hello there"
    assert completion.choices[0].finish_reason == "stop" and completion.model == route.alias
    assert completion.usage.prompt_tokens == said.prompt_tokens
    assert completion.usage.completion_tokens == said.completion_tokens
    assert completion.usage.total_tokens == said.prompt_tokens + said.completion_tokens
    assert (completion.usage.prompt_tokens_details.cached_tokens or 0) == cached
    portico_headers_name(raw.headers, target)
    record = call_record(raw.headers["x-request-id"])
    assert (record["provider"], record["upstream_model"], record["model"]) == (kind, target.upstream, route.alias)
    assert (record["tokens_in"], record["tokens_out"], record["tokens_cached"]) == (
        said.prompt_tokens,
        said.completion_tokens,
        cached,
    )

    raw = client.chat.completions.with_raw_response.create(
        model=route.alias, messages=user("Stream it"), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(raw.parse())
    said = mock_llm.answer_for(last_request(mock_llm, target))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == said.text
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == said.prompt_tokens
    assert chunks[-1].usage.completion_tokens == said.completion_tokens
    portico_headers_name(raw.headers, target)
    assert call_record(raw.headers["x-request-id"])["ttft_ms"] is not None
    plain = list(client.chat.completions.create(model=route.alias, messages=user("Stream it"), stream=True))
    last_request(mock_llm, target)
    assert "".join(c.choices[0].delta.content or "" for c in plain if c.choices) == said.text
    assert all(c.usage is None and c.choices for c in plain)  # usage only when asked

    cut = client.chat.completions.create(model=route.alias, messages=user("Hello there"), max_tokens=3)
    said = mock_llm.answer_for(last_request(mock_llm, target))
    assert said.finish == "length" and said.completion_tokens == 3
    assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 3
    assert cut.choices[0].message.content == said.text

    messages = user("Please call tool for Paris")
    called = client.chat.completions.create(model=route.alias, messages=messages, tools=[WEATHER_TOOL])
    last_request(mock_llm, target)
    assert called.choices[0].finish_reason == "tool_calls"
    call = called.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "mock"}
    with client.chat.completions.stream(model=route.alias, messages=messages, tools=[WEATHER_TOOL]) as stream:
        final = stream.get_final_completion()
    last_request(mock_llm, target)
    assert final.choices[0].finish_reason == "tool_calls"
    streamed = final.choices[0].message.tool_calls[0]
    assert streamed.function.name == "get_weather" and json.loads(streamed.function.arguments) == {"city": "mock"}


@pytest.mark.parametrize("kind", ["openai", "gemini"])
def test_the_anthropic_sdk_reaches_an_openai_and_a_gemini_route(kind, ai_route, mock_llm, call_record):
    route = ai_route([Target(kind)])
    target = route.target
    client = route.anthropic()

    raw = client.messages.with_raw_response.create(
        model=route.alias, max_tokens=100, system=SYSTEM, messages=user("Hello there")
    )
    message = raw.parse()
    said = mock_llm.answer_for(last_request(mock_llm, target))
    assert said.cached_tokens > 0  # the long system prompt reads as cached upstream
    assert message.content[0].text == said.text == f"Mock {kind} answer to: Hello there"
    assert message.stop_reason == "end_turn" and message.model == route.alias
    assert message.usage.input_tokens == said.prompt_tokens - said.cached_tokens
    assert message.usage.cache_read_input_tokens == said.cached_tokens
    assert message.usage.output_tokens == said.completion_tokens
    portico_headers_name(raw.headers, target)
    record = call_record(raw.headers["x-request-id"])
    assert (record["tokens_in"], record["tokens_cached"]) == (said.prompt_tokens, said.cached_tokens)

    with client.messages.stream(model=route.alias, max_tokens=100, messages=user("Stream it")) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
        portico_headers_name(stream.response.headers, target)
    said = mock_llm.answer_for(last_request(mock_llm, target))
    assert "".join(texts) == said.text and final.stop_reason == "end_turn"
    assert final.usage.output_tokens == said.completion_tokens
    assert final.usage.input_tokens == said.prompt_tokens - said.cached_tokens

    cut = client.messages.create(model=route.alias, max_tokens=3, messages=user("Hello there"))
    said = mock_llm.answer_for(last_request(mock_llm, target))
    assert cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 3 and cut.content[0].text == said.text
    events = list(client.messages.create(model=route.alias, max_tokens=3, messages=user("Hello"), stream=True))
    assert next(e for e in events if e.type == "message_delta").delta.stop_reason == "max_tokens"
    assert events[-1].type == "message_stop"

    messages = user("Please call tool for Paris")
    called = client.messages.create(
        model=route.alias, max_tokens=200, tools=[WEATHER_TOOL_ANTHROPIC], messages=messages
    )
    last_request(mock_llm, target)
    assert called.stop_reason == "tool_use"
    block = next(b for b in called.content if b.type == "tool_use")
    assert block.name == "get_weather" and block.input == {"city": "mock"}
    with client.messages.stream(
        model=route.alias, max_tokens=200, tools=[WEATHER_TOOL_ANTHROPIC], messages=messages
    ) as stream:
        final = stream.get_final_message()
    last_request(mock_llm, target)
    assert final.stop_reason == "tool_use"
    assert next(b for b in final.content if b.type == "tool_use").input == {"city": "mock"}


@pytest.mark.parametrize("kind", ["azure-openai", "gemini", "mistral"])
def test_the_openai_sdk_embeds_through_other_provider_kinds(kind, ai_route, mock_llm):
    route = ai_route([Target(kind, capabilities=["embeddings"])])
    raw = route.openai().embeddings.with_raw_response.create(
        model=route.alias, input=["alpha", "beta"], encoding_format="float"
    )
    answer = raw.parse()
    seen = mock_llm.requests(model=route.target.upstream)
    assert len(seen) == 1 and clean(seen[0]) and seen[0]["endpoint"] == "embeddings"
    upstream = route.target.upstream
    assert [d.embedding for d in answer.data] == [embedding(upstream, "alpha"), embedding(upstream, "beta")]
    assert [d.index for d in answer.data] == [0, 1] and answer.model == route.alias
    portico_headers_name(raw.headers, route.target)
    as_base64 = route.openai().embeddings.create(model=route.alias, input="alpha")
    assert as_base64.data[0].embedding == pytest.approx(embedding(upstream, "alpha"), abs=1e-6)
