"""The official anthropic SDK against the real gateway (gunicorn, 2 workers) on a route
whose target is an Anthropic provider (the mock): messages, streams (the ``.stream()``
helper and ``create(stream=True)``), tools, the models list, the error classes and a cut
stream."""

from __future__ import annotations

from decimal import Decimal

import anthropic
import httpx2 as httpx
import pytest

from tests.llm.conftest import WEATHER_TOOL_ANTHROPIC, Budget, Target, clean, user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]


def test_messages_create_answers_with_the_aliases_model_and_anthropic_usage(ai_route, mock_llm, call_record):
    route = ai_route([Target("anthropic")])
    client = route.anthropic()
    raw = client.messages.with_raw_response.create(
        model=route.alias, max_tokens=100, system="Be brief.", messages=user("Hello")
    )
    message = raw.parse()
    seen = mock_llm.requests(model=route.target.upstream)
    assert len(seen) == 1 and clean(seen[0])
    said = mock_llm.answer_for(seen[0])
    assert message.type == "message" and message.role == "assistant"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == said.text == "Mock anthropic answer to: Hello"
    assert message.stop_reason == "end_turn" and message.model == route.alias
    assert message.usage.input_tokens == said.prompt_tokens - said.cached_tokens
    assert message.usage.output_tokens == said.completion_tokens
    assert raw.headers["x-portico-provider"] == "anthropic"
    assert raw.headers["x-portico-model"] == route.target.upstream
    assert float(raw.headers["x-portico-overhead-ms"]) >= 0
    record = call_record(raw.headers["x-request-id"])
    assert record["model"] == route.alias and record["provider"] == "anthropic"
    assert (record["tokens_in"], record["tokens_out"]) == (said.prompt_tokens, said.completion_tokens)
    assert record["cost"] is not None and record["tokens_estimated"] is False

    cut = client.messages.create(model=route.alias, max_tokens=3, messages=user("Hello"))
    assert cut.stop_reason == "max_tokens" and cut.content[0].text == "Mock anthropic answer"
    assert cut.usage.output_tokens == 3


def test_the_stream_helper_and_create_stream_true_deliver_every_event(ai_route, mock_llm, call_record):
    route = ai_route([Target("anthropic")])
    client = route.anthropic()
    with client.messages.stream(model=route.alias, max_tokens=100, messages=user("Tell me a story")) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
        request_id = stream.response.headers["x-request-id"]
    said = mock_llm.answer_for(mock_llm.requests(model=route.target.upstream)[-1])
    assert "".join(texts) == said.text == "Mock anthropic answer to: Tell me a story"
    assert len(texts) > 3
    assert final.stop_reason == "end_turn" and final.model == route.alias
    assert final.usage.output_tokens == said.completion_tokens
    assert final.usage.input_tokens == said.prompt_tokens - said.cached_tokens
    record = call_record(request_id)
    assert record["tokens_out"] == said.completion_tokens and record["ttft_ms"] is not None

    events = list(client.messages.create(model=route.alias, max_tokens=3, messages=user("Hello"), stream=True))
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start" and kinds[1] == "content_block_start"
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == "Mock anthropic answer"
    delta = next(e for e in events if e.type == "message_delta")
    assert delta.delta.stop_reason == "max_tokens" and delta.usage.output_tokens == 3


def test_a_tool_call_comes_as_a_tool_use_block_plain_and_streamed(ai_route):
    route = ai_route([Target("anthropic")])
    client = route.anthropic()
    messages = user("Please call tool for Paris")
    message = client.messages.create(
        model=route.alias, max_tokens=200, tools=[WEATHER_TOOL_ANTHROPIC], messages=messages
    )
    assert message.stop_reason == "tool_use"
    call = next(block for block in message.content if block.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"city": "mock"} and call.id
    with client.messages.stream(
        model=route.alias, max_tokens=200, tools=[WEATHER_TOOL_ANTHROPIC], messages=messages
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use" and events.count("input_json") > 1
    assert next(b for b in final.content if b.type == "tool_use").input == {"city": "mock"}
    answered = client.messages.create(
        model=route.alias,
        max_tokens=200,
        tools=[WEATHER_TOOL_ANTHROPIC],
        messages=[
            *messages,
            {"role": "assistant", "content": [block.model_dump() for block in message.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny"}]},
        ],
    )
    assert answered.content[0].text == "Mock anthropic answer to tool result: Sunny"


def test_the_models_list_comes_in_anthropics_format_with_the_subscribed_aliases(ai_route):
    route = ai_route([Target("anthropic")])
    second = ai_route.add_route(route)
    ai_route()  # another API's alias, not subscribed
    models = list(route.anthropic().models.list())
    assert {m.id for m in models} == {route.alias, second.alias}
    assert all(m.type == "model" for m in models)


# -- errors ---------------------------------------------------------------------------------------


def drop_credentials(request: httpx.Request) -> None:
    for name in ("authorization", "x-api-key"):
        if name in request.headers:
            del request.headers[name]


def test_errors_raise_the_anthropic_sdks_classes_in_anthropics_shape(ai_route, mock_llm):
    route = ai_route([Target("anthropic")], plan={"requests_per_minute": 1})
    ask = {"model": route.alias, "max_tokens": 20, "messages": user("hi")}
    keyless = route.anthropic(http_client=httpx.Client(event_hooks={"request": [drop_credentials]}))
    with pytest.raises(anthropic.AuthenticationError) as missing:
        keyless.messages.create(**ask)
    assert missing.value.body["type"] == "error"
    assert missing.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.AuthenticationError):
        route.anthropic(api_key=route.key_prefix + "x" * 20).messages.create(**ask)
    with pytest.raises(anthropic.NotFoundError) as unknown:
        route.anthropic().messages.create(**{**ask, "model": "no-such-alias"})
    assert unknown.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as invalid:
        route.anthropic().post("/v1/messages", body={"model": route.alias, "messages": user("hi")}, cast_to=object)
    assert invalid.value.body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in invalid.value.body["error"]["message"]
    assert mock_llm.requests(model=route.target.upstream) == []

    route.anthropic().messages.create(**ask)
    with pytest.raises(anthropic.RateLimitError) as limited:
        route.anthropic().messages.create(**ask)
    assert limited.value.body["error"]["type"] == "rate_limit_error"
    assert int(limited.value.response.headers["retry-after"]) > 0

    unsubscribed = ai_route([Target("anthropic")], subscribe=False)
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        unsubscribed.anthropic().messages.create(**{**ask, "model": unsubscribed.alias})
    assert denied.value.body["error"]["type"] == "permission_error"


def test_an_exhausted_budget_and_a_relayed_provider_error_come_in_anthropics_shape(ai_route, mock_llm):
    route = ai_route([Target("openai")], budgets=[Budget("application", spend_limit_usd=Decimal("0.000001"))])
    ask = {"model": route.alias, "max_tokens": 5, "messages": user("hi")}
    for _ in range(3):  # the first call may pass (nothing spent yet): then it spends the budget
        try:
            route.anthropic().messages.create(**ask)
        except anthropic.RateLimitError as error:
            assert error.body["error"]["type"] == "rate_limit_error"
            assert error.response.headers["x-should-retry"] == "false"
            break
    else:
        pytest.fail("the budget never ran out")

    relayed = ai_route([Target("openai")], fallbacks=[Target("gemini")])
    mock_llm.faults("status", match={"model": relayed.target.upstream}, status=400)
    with pytest.raises(anthropic.BadRequestError) as raised:
        relayed.anthropic().messages.create(**{**ask, "model": relayed.alias})
    assert raised.value.body["type"] == "error"
    assert raised.value.body["error"]["type"] == "invalid_request_error"
    assert mock_llm.requests(model=relayed.fallbacks[0].upstream) == []


def test_a_stream_cut_after_its_first_content_makes_the_sdk_raise(ai_route, mock_llm, call_record):
    route = ai_route([Target("anthropic")])
    mock_llm.faults("cut_stream", match={"model": route.target.upstream}, after_events=5)
    texts: list[str] = []
    with (
        pytest.raises(anthropic.APIStatusError) as raised,
        route.anthropic().messages.stream(
            model=route.alias, max_tokens=100, messages=user("Tell me a long story please")
        ) as stream,
    ):
        for text in stream.text_stream:  # the text arrives before the failure
            texts.append(text)
    assert raised.value.body["type"] == "error"
    assert texts and "".join(texts) != "Mock anthropic answer to: Tell me a long story please"
    record = call_record(stream.response.headers["x-request-id"])
    assert record["error_code"]
