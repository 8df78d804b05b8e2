"""The official openai SDK against the real gateway (gunicorn, 2 workers) with the mock
provider behind it: answers, streams, tools, structured output, embeddings, the models list,
every error class, a cut stream, and the call records of those calls."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import httpx2 as httpx
import openai
import pydantic
import pytest
import requests

from llm.mock_provider.answers import embedding
from portal.services import lifecycle
from tests.llm.conftest import WEATHER_TOOL, Budget, Target, clean, user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

MILLION = Decimal(1_000_000)


def expected_cost(prompt: int, cached: int, completion: int, prices: dict) -> Decimal:
    cached_price = prices.get("cached_input_price") or prices["input_price"]
    total = (prompt - cached) * prices["input_price"] + cached * cached_price + completion * prices["output_price"]
    return (total / MILLION).quantize(Decimal("0.00000001"))


def counting_client() -> tuple[httpx.Client, list[str]]:
    """An HTTP client for the SDK that counts the requests it really sends."""
    sent: list[str] = []
    return httpx.Client(event_hooks={"request": [lambda request: sent.append(str(request.url))]}), sent


def test_sync_and_async_completions_answer_with_the_aliases_model_usage_and_portico_headers(
    ai_route, mock_llm, call_record
):
    route = ai_route()
    raw = route.openai().chat.completions.with_raw_response.create(model=route.alias, messages=user("Hello there"))
    completion = raw.parse()
    seen = mock_llm.requests(model=route.target.upstream)
    assert len(seen) == 1 and clean(seen[0])
    said = mock_llm.answer_for(seen[0])
    assert completion.choices[0].message.content == said.text == "Mock openai answer to: Hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == route.alias
    assert completion.usage.prompt_tokens == said.prompt_tokens
    assert completion.usage.completion_tokens == said.completion_tokens
    assert completion.usage.total_tokens == said.prompt_tokens + said.completion_tokens
    assert raw.headers["x-portico-model"] == route.target.upstream
    assert raw.headers["x-portico-provider"] == "openai"
    assert float(raw.headers["x-portico-overhead-ms"]) >= 0

    record = call_record(raw.headers["x-request-id"])
    assert record["status"] == 200 and record["key_prefix"] == route.key_prefix
    assert record["model"] == route.alias and record["provider"] == "openai"
    assert record["upstream_model"] == route.target.upstream
    assert (record["tokens_in"], record["tokens_out"], record["tokens_cached"]) == (
        said.prompt_tokens,
        said.completion_tokens,
        said.cached_tokens,
    )
    assert record["tokens_estimated"] is False
    assert Decimal(record["cost"]) == expected_cost(
        said.prompt_tokens, said.cached_tokens, said.completion_tokens, Target().prices
    )
    assert record["overhead_ms"] >= 0 and record["fallbacks"] == 0

    async def ask() -> openai.types.chat.ChatCompletion:
        async with route.async_openai() as client:
            return await client.chat.completions.create(model=route.alias, messages=user("And async?"))

    answered = asyncio.run(ask())
    said = mock_llm.answer_for(mock_llm.requests(model=route.target.upstream)[-1])
    assert answered.choices[0].message.content == said.text == "Mock openai answer to: And async?"
    assert answered.usage is not None and answered.usage.completion_tokens == said.completion_tokens


def test_the_overhead_header_leaves_out_the_time_spent_waiting_on_the_provider(ai_route, mock_llm, call_record):
    route = ai_route()
    client = route.openai()
    mock_llm.faults("slow_first_byte", match={"model": route.target.upstream}, times=2, ms=400)
    plain = client.chat.completions.with_raw_response.create(model=route.alias, messages=user("hi"))
    streamed = client.chat.completions.with_raw_response.create(model=route.alias, messages=user("hi"), stream=True)
    list(streamed.parse())
    for raw in (plain, streamed):
        record = call_record(raw.headers["x-request-id"])
        assert record["latency_ms"] >= 400
        assert float(raw.headers["x-portico-overhead-ms"]) < 200
        assert record["overhead_ms"] < 200


def test_a_cached_system_prompt_is_priced_at_the_cached_price(ai_route, mock_llm, call_record):
    prices = {"input_price": Decimal("2.5"), "output_price": Decimal("10"), "cached_input_price": Decimal("1.25")}
    route = ai_route([Target(prices=prices)])
    messages = [{"role": "system", "content": "You are a careful assistant. " * 10}, *user("Hi")]
    raw = route.openai().chat.completions.with_raw_response.create(model=route.alias, messages=messages)
    completion = raw.parse()
    said = mock_llm.answer_for(mock_llm.requests(model=route.target.upstream)[-1])
    assert said.cached_tokens == 64
    assert completion.usage.prompt_tokens_details.cached_tokens == 64
    assert completion.usage.prompt_tokens == said.prompt_tokens
    record = call_record(raw.headers["x-request-id"])
    assert record["tokens_cached"] == 64 and record["tokens_in"] == said.prompt_tokens
    assert Decimal(record["cost"]) == expected_cost(said.prompt_tokens, 64, said.completion_tokens, prices)


def test_streams_carry_usage_only_when_the_client_asks(ai_route, mock_llm, call_record):
    route = ai_route()
    client = route.openai()
    plain = list(client.chat.completions.create(model=route.alias, messages=user("Tell me a story"), stream=True))
    # The gateway asks upstream for usage on its own account, and strips it for this client.
    assert mock_llm.requests(model=route.target.upstream)[-1]["body"]["stream_options"] == {"include_usage": True}
    text = "".join(c.choices[0].delta.content or "" for c in plain if c.choices)
    assert text == "Mock openai answer to: Tell me a story"
    assert plain[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in plain) and all(c.model == route.alias for c in plain)

    raw = client.chat.completions.with_raw_response.create(
        model=route.alias, messages=user("Tell me a story"), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(raw.parse())
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    said = mock_llm.answer_for(mock_llm.requests(model=route.target.upstream)[-1])
    assert chunks[-1].usage.completion_tokens == said.completion_tokens == 9
    assert chunks[-1].usage.prompt_tokens == said.prompt_tokens
    assert all(c.usage is None for c in chunks[:-1])
    assert raw.headers["x-portico-provider"] == "openai" and "x-portico-overhead-ms" in raw.headers
    record = call_record(raw.headers["x-request-id"])
    assert record["tokens_out"] == 9 and record["tokens_in"] == said.prompt_tokens
    assert record["ttft_ms"] is not None and record["ttft_ms"] >= 0
    assert record["tokens_estimated"] is False


def test_tool_calls_come_whole_and_streamed_arguments_are_assembled_by_the_sdk(ai_route):
    route = ai_route()
    client = route.openai()
    messages = user("Please call tool for Paris")
    completion = client.chat.completions.create(model=route.alias, messages=messages, tools=[WEATHER_TOOL])
    call = completion.choices[0].message.tool_calls[0]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "mock"}

    with client.chat.completions.stream(model=route.alias, messages=messages, tools=[WEATHER_TOOL]) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_completion()
    assert events.count("tool_calls.function.arguments.delta") > 1
    streamed = final.choices[0].message.tool_calls[0]
    assert final.choices[0].finish_reason == "tool_calls"
    assert streamed.function.name == "get_weather" and json.loads(streamed.function.arguments) == {"city": "mock"}

    answered = client.chat.completions.create(
        model=route.alias,
        tools=[WEATHER_TOOL],
        messages=[
            *messages,
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"},
        ],
    )
    assert answered.choices[0].message.content == "Mock openai answer to tool result: Sunny, 21 C"


class Person(pydantic.BaseModel):
    name: str
    age: int


def test_a_json_schema_response_format_answers_json_the_sdk_parses(ai_route):
    route = ai_route()
    client = route.openai()
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}
    typed = client.chat.completions.create(
        model=route.alias,
        messages=user("Who?"),
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
    )
    assert json.loads(typed.choices[0].message.content) == {"name": "Mock openai answer to: Who?", "age": 1}
    parsed = client.chat.completions.parse(model=route.alias, messages=user("Who is it?"), response_format=Person)
    assert parsed.choices[0].message.parsed == Person(name="Mock openai answer to: Who is it?", age=1)


def test_embeddings_come_as_the_sdks_default_base64_and_as_floats(ai_route, mock_llm):
    route = ai_route([Target(capabilities=["embeddings"])])
    client = route.openai()
    as_base64 = client.embeddings.create(model=route.alias, input=["alpha", "beta"])
    as_float = client.embeddings.create(model=route.alias, input=["alpha", "beta"], encoding_format="float")
    upstream = route.target.upstream
    assert [d.embedding for d in as_float.data] == [embedding(upstream, "alpha"), embedding(upstream, "beta")]
    assert as_base64.data[1].embedding == pytest.approx(as_float.data[1].embedding, abs=1e-6)
    assert as_float.model == route.alias and as_float.usage.prompt_tokens == 2
    assert all(clean(r) for r in mock_llm.requests(model=upstream))


def test_the_models_list_shows_exactly_the_aliases_the_key_is_subscribed_to(ai_route):
    route = ai_route()
    second = ai_route.add_route(route)
    elsewhere = ai_route()  # another API, to which route's application is not subscribed
    listed = {m.id for m in route.openai().models.list()}
    assert listed == {route.alias, second.alias}
    assert {m.id for m in elsewhere.openai().models.list()} == {elsewhere.alias}


# -- errors ---------------------------------------------------------------------------------------


def test_a_missing_or_wrong_key_raises_authentication_error(ai_route):
    route = ai_route()

    def drop_authorization(request: httpx.Request) -> None:
        del request.headers["Authorization"]

    keyless = route.openai(http_client=httpx.Client(event_hooks={"request": [drop_authorization]}))
    with pytest.raises(openai.AuthenticationError) as missing:
        keyless.chat.completions.create(model=route.alias, messages=user("hi"))
    assert missing.value.status_code == 401 and missing.value.code == "missing_api_key"
    with pytest.raises(openai.AuthenticationError) as wrong:
        route.openai(api_key=route.key_prefix + "x" * 20).chat.completions.create(
            model=route.alias, messages=user("hi")
        )
    assert wrong.value.code == "invalid_api_key"
    assert wrong.value.body["type"] and wrong.value.body["message"]


def test_an_unsubscribed_application_raises_permission_denied(ai_route, mock_llm):
    route = ai_route(subscribe=False)
    with pytest.raises(openai.PermissionDeniedError) as raised:
        route.openai().chat.completions.create(model=route.alias, messages=user("hi"))
    assert raised.value.status_code == 403 and raised.value.code == "not_subscribed"
    assert route.openai().models.list().data == []
    assert mock_llm.requests(model=route.target.upstream) == []


def test_an_unknown_alias_raises_not_found(ai_route):
    route = ai_route()
    with pytest.raises(openai.NotFoundError) as raised:
        route.openai().chat.completions.create(model="no-such-alias", messages=user("hi"))
    assert raised.value.code == "model_not_found"


def test_a_wrong_method_on_an_llm_endpoint_is_refused_with_405_in_the_clients_format(ai_route):
    route = ai_route()
    headers = {"Authorization": f"Bearer {route.key}"}
    base = route.openai_base_url
    for method, path in [("GET", "/chat/completions"), ("DELETE", "/embeddings"), ("POST", "/models")]:
        answer = requests.request(method, base + path, headers=headers, timeout=10)
        assert answer.status_code == 405, (method, path)
        assert answer.json()["error"]["code"] == "method_not_allowed"
        assert answer.headers["allow"] in ("GET", "POST")
    answer = requests.get(route.anthropic_base_url + "/v1/messages", headers=headers, timeout=10)
    assert answer.status_code == 405 and answer.json()["type"] == "error"


def test_an_invalid_body_and_a_providers_own_400_raise_bad_request_without_fallback(ai_route, mock_llm):
    route = ai_route(fallbacks=[Target("mistral")])
    client = route.openai()
    with pytest.raises(openai.BadRequestError) as missing:
        client.post("/chat/completions", body={"model": route.alias}, cast_to=object)
    assert missing.value.param == "messages"
    assert mock_llm.requests() == []
    with pytest.raises(openai.BadRequestError) as relayed:
        client.chat.completions.create(model=route.alias, messages=user("hi"), extra_body={"top_k": 3})
    assert "Unrecognized request argument" in relayed.value.message
    assert len(mock_llm.requests(model=route.target.upstream)) == 1
    assert mock_llm.requests(model=route.fallbacks[0].upstream) == []  # the client's fault: no fallback


def test_a_plan_rate_limit_raises_rate_limit_error_with_retry_after(ai_route, mock_llm):
    route = ai_route(plan={"requests_per_minute": 1})
    client = route.openai()
    client.chat.completions.create(model=route.alias, messages=user("hi"))
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model=route.alias, messages=user("hi"))
    assert raised.value.code == "rate_limited"
    assert int(raised.value.response.headers["retry-after"]) > 0
    assert len(mock_llm.requests(model=route.target.upstream)) == 1


def test_an_exhausted_budget_raises_rate_limit_error_the_sdk_does_not_retry(ai_route, mock_llm):
    route = ai_route(budgets=[Budget("key", spend_limit_usd=Decimal("0.000001"))])
    for _ in range(3):  # the first call may pass (nothing spent yet): then it spends the budget
        try:
            route.openai().chat.completions.create(model=route.alias, messages=user("hi"), max_tokens=5)
        except openai.RateLimitError as error:
            assert error.code == "budget_exceeded"
            assert error.response.headers["x-should-retry"] == "false"
            break
    else:
        pytest.fail("the budget never ran out")
    http_client, sent = counting_client()
    with pytest.raises(openai.RateLimitError):
        route.openai(max_retries=2, http_client=http_client).chat.completions.create(
            model=route.alias, messages=user("hi"), max_tokens=5
        )
    assert len(sent) == 1  # x-should-retry: false, so the SDK's two retries were not spent
    assert len(mock_llm.requests(model=route.target.upstream)) <= 1


def test_upstream_5xx_on_every_target_raises_an_internal_server_error(ai_route, mock_llm, call_record):
    route = ai_route(fallbacks=[Target("mistral")])
    for target in route.targets + route.fallbacks:
        mock_llm.faults("status", match={"model": target.upstream}, times=-1, status=500)
    with pytest.raises(openai.InternalServerError) as raised:
        route.openai().chat.completions.create(model=route.alias, messages=user("hi"))
    assert raised.value.status_code == 502
    assert mock_llm.requests(model=route.target.upstream) and mock_llm.requests(model=route.fallbacks[0].upstream)
    record = call_record(raised.value.response.headers["x-request-id"])
    assert record["status"] == 502 and record["fallbacks"] >= 1 and record["error_code"]


def test_a_providers_own_404_and_422_are_relayed_without_fallback(ai_route, mock_llm):
    route = ai_route(fallbacks=[Target("openai")])
    mock_llm.faults("status", match={"model": route.target.upstream}, status=404)
    with pytest.raises(openai.NotFoundError):
        route.openai().chat.completions.create(model=route.alias, messages=user("hi"))
    unprocessable = ai_route([Target("mistral")], fallbacks=[Target("openai")])
    mock_llm.faults("status", match={"model": unprocessable.target.upstream}, status=422)
    with pytest.raises(openai.BadRequestError) as raised:
        unprocessable.openai().chat.completions.create(model=unprocessable.alias, messages=user("hi"))
    assert raised.value.status_code == 400
    assert mock_llm.requests(model=route.fallbacks[0].upstream) == []
    assert mock_llm.requests(model=unprocessable.fallbacks[0].upstream) == []


@pytest.mark.parametrize(
    ("kind", "fault", "error_class", "status"),
    [
        ("openai", {"fault": "status", "status": 429, "retry_after": 7}, openai.RateLimitError, 429),
        ("anthropic", {"fault": "status", "status": 529}, openai.InternalServerError, 503),
        ("openai", {"fault": "slow_first_byte", "ms": 1500}, openai.InternalServerError, 504),
    ],
    ids=["rate_limited", "overloaded", "timeout"],
)
def test_every_target_failing_answers_the_status_of_the_last_failure(
    kind, fault, error_class, status, ai_route, mock_llm
):
    route = ai_route([Target(kind)], fallbacks=[Target(kind)], first_byte_timeout_seconds=0.3)
    for target in route.targets + route.fallbacks:
        mock_llm.faults(match={"model": target.upstream}, times=-1, **fault)
    with pytest.raises(error_class) as raised:
        route.openai().chat.completions.create(model=route.alias, messages=user("hi"))
    assert raised.value.status_code == status
    if status == 429:
        assert raised.value.response.headers["retry-after"] == "7"
    assert mock_llm.requests(model=route.target.upstream) and mock_llm.requests(model=route.fallbacks[0].upstream)


def test_a_used_up_plan_quota_raises_rate_limit_error_the_sdk_does_not_retry(ai_route, mock_llm):
    # Retry-After points at the next month: beyond the SDK's two-minute horizon, so it gives up
    # at once (only in a month's last two minutes would it wait and retry).
    route = ai_route(plan={"monthly_quota": 1})
    route.openai().chat.completions.create(model=route.alias, messages=user("hi"))
    http_client, sent = counting_client()
    with pytest.raises(openai.RateLimitError) as raised:
        route.openai(max_retries=2, http_client=http_client).chat.completions.create(
            model=route.alias, messages=user("hi")
        )
    assert raised.value.code == "quota_exceeded" and len(sent) == 1
    assert len(mock_llm.requests(model=route.target.upstream)) == 1


def test_a_body_over_the_llm_cap_is_refused_with_413(ai_route, mock_llm):
    route = ai_route()
    with pytest.raises(openai.APIStatusError) as raised:
        route.openai().chat.completions.create(model=route.alias, messages=user("x" * (9 * 1024 * 1024)))
    assert raised.value.status_code == 413 and raised.value.code == "request_too_large"
    assert mock_llm.requests() == []


def test_a_retired_route_answers_410_and_leaves_the_models_list(ai_route):
    route = ai_route()
    lifecycle.retire_version(route.api.versions.get(), actor=ai_route.staff)
    ai_route.gateway.wait_for_config()
    with pytest.raises(openai.APIStatusError) as raised:
        route.openai().chat.completions.create(model=route.alias, messages=user("hi"))
    assert raised.value.status_code == 410 and raised.value.code == "version_retired"
    assert route.openai().models.list().data == []


def test_an_ai_call_record_carries_its_upstream_latency(ai_route, mock_llm, call_record):
    route = ai_route()
    mock_llm.faults("slow_first_byte", match={"model": route.target.upstream}, ms=50)
    raw = route.openai().chat.completions.with_raw_response.create(model=route.alias, messages=user("hi"))
    record = call_record(raw.headers["x-request-id"])
    assert record["latency_ms"] >= record["upstream_latency_ms"] >= 50


def test_a_stream_cut_after_its_first_content_makes_the_sdk_raise(ai_route, mock_llm, call_record):
    route = ai_route()
    mock_llm.faults("cut_stream", match={"model": route.target.upstream}, after_events=4)
    received = []
    stream = route.openai().chat.completions.create(
        model=route.alias, messages=user("Tell me a long story please"), stream=True
    )
    with pytest.raises(openai.APIError):
        for chunk in stream:
            received.append(chunk)
    text = "".join(c.choices[0].delta.content or "" for c in received if c.choices)
    assert text and text != "Mock openai answer to: Tell me a long story please"
    assert not any(c.choices and c.choices[0].finish_reason for c in received)
    record = call_record(stream.response.headers["x-request-id"])
    assert record["error_code"]


def test_records_of_an_unpriced_model_carry_no_cost_and_missing_usage_is_estimated(ai_route, mock_llm, call_record):
    route = ai_route([Target(prices=None)])
    client = route.openai()
    raw = client.chat.completions.with_raw_response.create(model=route.alias, messages=user("What does it cost?"))
    said = mock_llm.answer_for(mock_llm.requests(model=route.target.upstream)[-1])
    record = call_record(raw.headers["x-request-id"])
    assert record["cost"] is None  # unknown, never "0"
    assert record["tokens_in"] == said.prompt_tokens and record["tokens_estimated"] is False

    mock_llm.faults("no_usage", match={"model": route.target.upstream})
    raw = client.chat.completions.with_raw_response.create(model=route.alias, messages=user("And without usage?"))
    assert raw.parse().choices[0].message.content == "Mock openai answer to: And without usage?"
    assert mock_llm.requests(model=route.target.upstream)[-1]["fault"] == "no_usage"
    record = call_record(raw.headers["x-request-id"])
    assert record["tokens_estimated"] is True
    assert record["tokens_in"] > 0 and record["tokens_out"] > 0
    assert record["cost"] is None


def test_missing_usage_on_a_priced_stream_is_estimated_and_still_costed(ai_route, mock_llm, call_record):
    route = ai_route()
    mock_llm.faults("no_usage", match={"model": route.target.upstream})
    raw = route.openai().chat.completions.with_raw_response.create(
        model=route.alias, messages=user("Stream without usage"), stream=True, stream_options={"include_usage": True}
    )
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "Mock openai answer to: Stream without usage"
    )
    record = call_record(raw.headers["x-request-id"])
    assert record["tokens_estimated"] is True and record["tokens_out"] > 0
    assert Decimal(record["cost"]) > 0
    assert record["ttft_ms"] is not None
