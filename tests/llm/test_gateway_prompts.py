"""Prompt APIs on the real gateway (gunicorn, 2 workers) with the real mock provider:
``POST <base path>`` with a JSON body -> output, usage, model; 422 by JSON path; hostile
bodies answered 400/413, never 500; SSE streaming read with a plain HTTP client; JSON
answers validated and repaired once, else 502; plan limits, lifecycle and the call log
against the PROMPT API."""

from __future__ import annotations

import socket
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest
import requests
from django.conf import settings
from django.utils import timezone

from llm import pricing, tokens
from llm.budgets import from_micros, spend_in_period, to_micros
from llm.canonical import BudgetPolicy, Prices, Usage
from llm.mock_provider.answers import OFF_SCHEMA_TEXT, count_tokens
from llm.models import OutputMode
from llm.prompts import MAX_BODY_BYTES, chat_request, render, spec_from_row
from portal.models import Membership, Plan, Subscription
from portal.services import lifecycle, subscriptions
from tests.llm.conftest import Budget, MockLLM, Target
from tests.llm.prompt_apis import SENTIMENT_OUTPUT, PromptApiBuilt, model_route, prompt_api

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

GOOD = {"text": "I love this", "language": "en"}


def post(gateway, built: PromptApiBuilt, body=None, *, key: str | None = None, data=None, **kwargs):
    headers = {"authorization": f"Bearer {key or built.key}", **kwargs.pop("headers", {})}
    if data is None:
        data = orjson.dumps(GOOD if body is None else body)
        headers.setdefault("content-type", "application/json")
    return requests.post(gateway.url + built.base_path, data=data, headers=headers, timeout=15, **kwargs)


def built_api(ai_route, **kwargs) -> PromptApiBuilt:
    model = model_route(ai_route, kwargs.pop("targets", ()))
    built = prompt_api(ai_route, model, **kwargs)
    ai_route.gateway.wait_for_config()
    return built


def expected_cost(*answers) -> Decimal:
    return sum((Decimal("0.15") * a.prompt_tokens + Decimal("0.60") * a.completion_tokens) / 1_000_000 for a in answers)


def test_valid_input_answers_output_usage_and_model_and_is_logged_to_the_prompt_api(
    ai_route, gateway, mock_llm, call_record
):
    built = built_api(ai_route)
    # The caller is subscribed to the prompt API only, not to the AI API owning the model route.
    assert not Subscription.objects.filter(application=built.application, api=built.model.api).exists()
    response = post(gateway, built, {"text": "I love {{language}}", "language": "en"})
    assert response.status_code == 200, response.text
    body = response.json()
    [sent] = mock_llm.requests(kind="openai")
    said = MockLLM.answer_for(sent)
    # The value went in as data: its placeholder was not expanded.
    assert sent["body"]["messages"] == [
        {"role": "system", "content": "You classify sentiment."},
        {"role": "user", "content": "Classify the sentiment of: I love {{language}} (language en)"},
    ]
    assert sent["body"]["temperature"] == 0.0 and sent["body"]["max_tokens"] == 64
    assert "response_format" not in sent["body"]
    assert body["output"] == said.text
    assert body["model"] == built.model.route.alias
    cost = expected_cost(said)
    assert body["usage"] == {
        "prompt_tokens": said.prompt_tokens,
        "completion_tokens": said.completion_tokens,
        "total_tokens": said.prompt_tokens + said.completion_tokens,
        "cost_usd": float(cost),
    }
    assert response.headers["x-portico-model"] == built.model.targets[0].upstream
    record = call_record(response.headers["x-request-id"])
    assert record["api_id"] == built.api.pk and record["version_id"] == built.version.pk
    assert record["application_id"] == built.application.pk and record["key_prefix"] == built.key_prefix
    assert record["status"] == 200 and record["model"] == built.model.route.alias
    assert (record["tokens_in"], record["tokens_out"]) == (said.prompt_tokens, said.completion_tokens)
    assert Decimal(record["cost"]) == cost
    assert record["path"] == built.base_path


def test_invalid_input_is_422_listing_every_field_by_path(ai_route, gateway, mock_llm, call_record):
    built = built_api(ai_route)
    response = post(gateway, built, {"text": "x" * 201, "strength": "9", "tags": ["a", "b", "c", "d"], "odd": 1})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    paths = {f["path"]: f["message"] for f in error["fields"]}
    assert set(paths) == {"$.text", "$.language", "$.strength", "$.tags", "$.odd"}
    assert paths["$.language"] == "This field is required."
    response = post(gateway, built, {"text": "ok", "language": "es", "strength": 6, "tags": [1]})
    paths = {f["path"]: f["message"] for f in response.json()["error"]["fields"]}
    assert set(paths) == {"$.language", "$.strength", "$.tags[0]"}
    assert "maximum of 5" in paths["$.strength"]
    assert mock_llm.requests(kind="openai") == []  # nothing reached the model
    record = call_record(response.headers["x-request-id"])
    assert record["status"] == 422 and record["error_code"] == "invalid_input" and record["api_id"] == built.api.pk


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (b"", 400, "invalid_json"),
        (b"{not json", 400, "invalid_json"),
        (b"\xff\xfe", 400, "invalid_json"),
        (b"[1, 2]", 422, "invalid_input"),
        (b'{"text": "a", "language": "en", "stream": "yes"}', 422, "invalid_input"),
        (b'{"text": "a", "language": "en", "tags": ' + b"[" * 300 + b"]" * 300 + b"}", 400, "too_deeply_nested"),
        (b"[" * 5000 + b"]" * 5000, 400, "invalid_json"),
    ],
)
def test_hostile_bodies_are_clear_errors_never_500(ai_route, gateway, data, status, code):
    built = built_api(ai_route)
    response = post(gateway, built, data=data)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_oversized_bodies_are_413(ai_route, gateway, mock_llm):
    built = built_api(ai_route, max_request_bytes=4096)
    big = orjson.dumps({"text": "x" * 5000, "language": "en"})
    assert post(gateway, built, data=big).status_code == 413

    def chunks():
        yield big[:3000]
        yield big[3000:]

    response = post(gateway, built, data=chunks())  # chunked: no declared length
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
    # Whatever the version allows (10 MiB by default), a prompt's body stops at 1 MiB.
    roomy = built_api(ai_route)
    assert roomy.version.max_request_bytes > MAX_BODY_BYTES
    huge = orjson.dumps({"text": "x", "language": "en", "tags": [1] * (MAX_BODY_BYTES // 2)})
    response = post(gateway, roomy, data=huge)
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
    assert mock_llm.requests(kind="openai") == []


def test_methods_paths_keys_and_subscriptions(ai_route, gateway):
    built = built_api(ai_route)
    response = requests.get(gateway.url + built.base_path, headers={"authorization": f"Bearer {built.key}"})
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert post(gateway, built, headers={}, key="wrong").status_code == 401
    assert requests.post(gateway.url + built.base_path + "/extra", json=GOOD, timeout=5).status_code == 404
    # A key of the model's own API is not a key of the prompt API.
    other = built_api(ai_route)
    response = post(gateway, built, key=other.key)
    assert response.status_code == 403 and response.json()["error"]["code"] == "not_subscribed"


def test_streaming_sends_deltas_then_usage_then_done(ai_route, gateway, mock_llm, call_record):
    built = built_api(ai_route)
    response = post(gateway, built, {**GOOD, "stream": True}, stream=True)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line[len("data: ") :] for line in response.iter_lines(decode_unicode=True) if line]
    assert events[-1] == "[DONE]"
    payloads = [orjson.loads(e) for e in events[:-1]]
    deltas = [p for p in payloads if p["type"] == "delta"]
    assert len(deltas) > 1 and payloads[-1]["type"] == "usage"
    [sent] = mock_llm.requests(kind="openai")
    said = MockLLM.answer_for(sent)
    assert sent["body"]["stream"] is True
    assert "".join(d["text"] for d in deltas) == said.text
    assert payloads[-1]["usage"]["completion_tokens"] == said.completion_tokens
    assert payloads[-1]["usage"]["cost_usd"] == float(expected_cost(said))
    assert payloads[-1]["model"] == built.model.route.alias
    record = call_record(response.headers["x-request-id"])
    assert record["status"] == 200 and record["tokens_out"] == said.completion_tokens


def test_json_output_is_structured_and_validated(ai_route, gateway, mock_llm):
    built = built_api(ai_route, output_mode=OutputMode.JSON, output_schema=SENTIMENT_OUTPUT)
    response = post(gateway, built)
    assert response.status_code == 200, response.text
    assert response.json()["output"] == {"label": "positive", "score": 1.5}
    [sent] = mock_llm.requests(kind="openai")
    assert sent["body"]["response_format"]["json_schema"]["schema"] == SENTIMENT_OUTPUT
    # Streamed: the checked JSON in one delta.
    response = post(gateway, built, {**GOOD, "stream": True}, stream=True)
    events = [line[len("data: ") :] for line in response.iter_lines(decode_unicode=True) if line]
    assert events[-1] == "[DONE]"
    delta, usage = (orjson.loads(e) for e in events[:-1])
    assert orjson.loads(delta["text"]) == {"label": "positive", "score": 1.5} and usage["type"] == "usage"


def test_a_non_conforming_answer_is_repaired_once_and_both_attempts_are_billed(
    ai_route, gateway, mock_llm, call_record
):
    built = built_api(ai_route, output_mode=OutputMode.JSON, output_schema=SENTIMENT_OUTPUT)
    mock_llm.faults("off_schema", times=1)
    response = post(gateway, built)
    assert response.status_code == 200, response.text
    assert response.json()["output"] == {"label": "positive", "score": 1.5}
    first, second = mock_llm.requests(kind="openai")
    assert first["fault"] == "off_schema" and second["fault"] is None
    assert second["body"]["messages"][-2] == {"role": "assistant", "content": OFF_SCHEMA_TEXT}
    assert "$" in second["body"]["messages"][-1]["content"]
    spent = [MockLLM.answer_for(first), MockLLM.answer_for(second)]
    # The first answer was replaced by the fault: its completion tokens are those of its text.
    first_out = count_tokens(OFF_SCHEMA_TEXT)
    usage = response.json()["usage"]
    assert usage["prompt_tokens"] == spent[0].prompt_tokens + spent[1].prompt_tokens
    assert usage["completion_tokens"] == first_out + spent[1].completion_tokens
    record = call_record(response.headers["x-request-id"])
    assert (record["tokens_in"], record["tokens_out"]) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert record["status"] == 200


def test_a_failed_repair_is_502_invalid_model_output(ai_route, gateway, mock_llm, call_record):
    built = built_api(ai_route, output_mode=OutputMode.JSON, output_schema=SENTIMENT_OUTPUT)
    mock_llm.faults("off_schema", times=2, text='{"label": "ecstatic", "score": 1}')
    response = post(gateway, built)
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_model_output" and [f["path"] for f in error["fields"]] == ["$.label"]
    assert len(mock_llm.requests(kind="openai")) == 2
    record = call_record(response.headers["x-request-id"])
    assert record["status"] == 502 and record["error_code"] == "invalid_model_output" and record["tokens_in"] > 0


def first_attempt_estimate(built: PromptApiBuilt, inputs: dict) -> int:
    """The tokens the gateway reserves for a prompt call's first attempt (its own rules)."""
    spec = spec_from_row(built.prompt, built.model.route.alias)
    system, user_text = render(spec, inputs)
    request = chat_request(spec, system, user_text, structured=True)
    return tokens.estimate_prompt_tokens(request) + tokens.estimate_max_completion(request, 1024)


def test_a_repair_the_token_budget_cannot_cover_is_refused_with_the_budget_error_and_leaks_nothing(
    ai_route, gateway, mock_llm, call_record, redis_client
):
    built = built_api(ai_route, output_mode=OutputMode.JSON, output_schema=SENTIMENT_OUTPUT)
    # One attempt fits; the repair (the same prompt plus the bad answer and the problems,
    # after the first attempt's real tokens were counted) does not.
    limit = first_attempt_estimate(built, GOOD) + 5
    assert built.api_key is not None
    ai_route._budgets([Budget(scope="key", tokens_per_minute=limit)], built.api_key, built.application)
    gateway.wait_for_config()
    mock_llm.faults("off_schema", times=1)
    response = post(gateway, built)
    assert response.status_code == 429, response.text
    # The repair's estimate alone is over the limit: waiting will not help (as for any call).
    assert response.json()["error"]["code"] == "token_rate_limited"
    assert response.headers["x-should-retry"] == "false"
    [first] = mock_llm.requests(kind="openai")  # the repair never reached the provider
    assert first["fault"] == "off_schema"
    spent = MockLLM.answer_for(first).prompt_tokens + count_tokens(OFF_SCHEMA_TEXT)
    # Both reservations settled: the window holds the first attempt's real tokens only.
    window = f"portico:llm:budget:key:{built.api_key.pk}:tpm"
    deadline = time.monotonic() + 5
    used = -1
    while used != spent and time.monotonic() < deadline:
        used = sum(int(v) for v in redis_client.hgetall(window).values())
        time.sleep(0.05)
    assert used == spent
    record = call_record(response.headers["x-request-id"])
    assert record["status"] == 429 and record["error_code"] == "token_rate_limited"
    assert record["tokens_in"] == MockLLM.answer_for(first).prompt_tokens
    assert record["tokens_out"] == count_tokens(OFF_SCHEMA_TEXT)


def test_a_repair_the_spend_budget_cannot_cover_is_refused_and_only_the_first_attempt_is_spent(
    ai_route, gateway, mock_llm, call_record, redis_client
):
    prices = {"input_price": Decimal("1"), "output_price": Decimal("200")}
    built = built_api(
        ai_route, targets=[Target("openai", prices=prices)], output_mode=OutputMode.JSON, output_schema=SENTIMENT_OUTPUT
    )
    spec = spec_from_row(built.prompt, built.model.route.alias)
    request = chat_request(spec, *render(spec, GOOD), structured=True)
    prompt, completion = tokens.estimate_prompt_tokens(request), tokens.estimate_max_completion(request, 1024)
    estimated = pricing.estimate_cost(prompt, completion, Prices(prices["input_price"], prices["output_price"], None))
    assert estimated is not None
    limit = from_micros(to_micros(estimated))  # exactly one first attempt; never a repair on top
    assert built.api_key is not None
    [budget] = ai_route._budgets([Budget(scope="key", spend_limit_usd=limit)], built.api_key, built.application)
    gateway.wait_for_config()
    mock_llm.faults("off_schema", times=1)
    response = post(gateway, built)
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "budget_exceeded" and response.headers["x-should-retry"] == "false"
    [first] = mock_llm.requests(kind="openai")
    said = Usage(MockLLM.answer_for(first).prompt_tokens, count_tokens(OFF_SCHEMA_TEXT))
    real = pricing.cost(said, Prices(prices["input_price"], prices["output_price"], None))
    assert real is not None
    policy = BudgetPolicy("key", built.api_key.pk, budget.pk, "monthly", limit)
    deadline = time.monotonic() + 5
    spent = spend_in_period(redis_client, policy, datetime.now(UTC))
    while spent != from_micros(to_micros(real)) and time.monotonic() < deadline:
        time.sleep(0.05)
        spent = spend_in_period(redis_client, policy, datetime.now(UTC))
    assert spent == from_micros(to_micros(real)) <= limit
    record = call_record(response.headers["x-request-id"])
    assert record["status"] == 429 and record["error_code"] == "budget_exceeded"
    assert Decimal(record["cost"]) == real


def test_plan_limits_are_the_prompt_apis(ai_route, gateway):
    built = built_api(ai_route, plan={"requests_per_minute": 1})
    assert post(gateway, built).status_code == 200
    response = post(gateway, built)
    assert response.status_code == 429 and response.json()["error"]["code"] == "rate_limited"


def test_deprecated_sends_headers_and_retired_is_410(ai_route, gateway):
    built = built_api(ai_route)
    sunset = timezone.now() + timedelta(days=30)
    lifecycle.deprecate_version(built.version, actor=ai_route.staff, sunset_at=sunset)
    gateway.wait_for_config()
    response = post(gateway, built)
    assert response.status_code == 200
    assert response.headers["deprecation"].startswith("@") and response.headers["sunset"].endswith("GMT")
    assert 'rel="deprecation"' in response.headers["link"]
    lifecycle.retire_version(built.version, actor=ai_route.staff)
    gateway.wait_for_config()
    response = post(gateway, built)
    assert response.status_code == 410 and response.json()["error"]["code"] == "version_retired"


def test_a_broken_model_route_is_503_not_500(ai_route, gateway):
    built = built_api(ai_route, targets=[Target("anthropic")])
    built.model.api.versions.update(state="draft")
    from portal.services.config_signal import publish_config_change

    publish_config_change("test: model api unpublished")
    gateway.wait_for_config()
    response = post(gateway, built)
    assert response.status_code == 503 and response.json()["error"]["code"] == "model_unavailable"


def test_the_model_routes_cache_and_pii_policy_apply(ai_route, gateway, mock_llm, call_record):
    model = model_route(ai_route, cache_ttl_seconds=60, pii_mode="block")
    built = prompt_api(ai_route, model)
    gateway.wait_for_config()
    first = post(gateway, built)
    second = post(gateway, built)
    assert first.status_code == second.status_code == 200
    assert first.headers["x-cache"] == "MISS" and second.headers["x-cache"] == "HIT"
    assert second.json()["output"] == first.json()["output"] and second.json()["usage"]["cost_usd"] == 0
    assert len(mock_llm.requests(kind="openai")) == 1
    assert call_record(second.headers["x-request-id"])["cache_hit"] is True
    blocked = post(gateway, built, {"text": "mail me at jane@example.com", "language": "en"})
    assert blocked.status_code == 400 and blocked.json()["error"]["code"] == "pii_blocked"
    assert len(mock_llm.requests(kind="openai")) == 1


def test_a_direct_chat_answer_cached_for_the_same_request_is_never_served_to_a_json_prompt_call(
    ai_route, gateway, mock_llm, call_record
):
    model = model_route(ai_route, cache_ttl_seconds=60)
    built = prompt_api(ai_route, model, output_mode=OutputMode.JSON, output_schema=SENTIMENT_OUTPUT)
    # The same tenant's application may also call the model route directly.
    owner = Membership.objects.filter(tenant=built.tenant).first()
    assert owner is not None
    plan = Plan.objects.create(api=model.api, name="Direct")
    subscriptions.request_subscription(built.application, model.api, plan, actor=owner.user)
    gateway.wait_for_config()
    # ...and send exactly the request the prompt call sends, whose answer does not conform.
    spec = spec_from_row(built.prompt, model.route.alias)
    request = chat_request(spec, *render(spec, GOOD), structured=True)
    mock_llm.faults("off_schema", times=1, text='{"label": "ecstatic", "score": 1}')
    direct = requests.post(
        gateway.url + "/v1/chat/completions",
        json=request,
        headers={"authorization": f"Bearer {built.key}"},
        timeout=15,
    )
    assert direct.status_code == 200 and direct.headers["x-cache"] == "MISS", direct.text
    assert direct.json()["choices"][0]["message"]["content"] == '{"label": "ecstatic", "score": 1}'
    again = requests.post(
        gateway.url + "/v1/chat/completions", json=request, headers={"authorization": f"Bearer {built.key}"}, timeout=15
    )
    assert again.headers["x-cache"] == "HIT"  # the entry is there, for direct calls

    response = post(gateway, built)
    assert response.status_code == 200, response.text
    assert response.headers["x-cache"] == "MISS"
    assert response.json()["output"] == {"label": "positive", "score": 1.5}
    assert len(mock_llm.requests(kind="openai")) == 2
    # The prompt call's own (checked) answer is cached for the next prompt call.
    hit = post(gateway, built)
    assert hit.headers["x-cache"] == "HIT" and hit.json()["output"] == {"label": "positive", "score": 1.5}
    assert call_record(hit.headers["x-request-id"])["cache_hit"] is True


def test_a_stored_schema_that_bypassed_the_checks_is_503_and_nothing_is_fetched(ai_route, gateway, mock_llm):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(2)
    port = listener.getsockname()[1]
    schema = {"type": "object", "properties": {"text": {"$ref": f"http://127.0.0.1:{port}/s.json"}}}
    built = built_api(ai_route, input_schema=schema, user_template="{{text}}")
    response = post(gateway, built, {"text": "hi"})
    assert response.status_code == 503 and response.json()["error"]["code"] == "prompt_unavailable"
    with pytest.raises(TimeoutError):
        listener.accept()
    listener.close()
    assert mock_llm.requests(kind="openai") == []


def test_a_stream_broken_by_the_provider_ends_with_an_error_event_and_no_done(ai_route, gateway, mock_llm, call_record):
    built = built_api(ai_route)
    mock_llm.faults("stream_error", after_events=2)
    response = post(gateway, built, {**GOOD, "stream": True}, stream=True)
    assert response.status_code == 200
    events = [line[len("data: ") :] for line in response.iter_lines(decode_unicode=True) if line]
    assert "[DONE]" not in events
    last = orjson.loads(events[-1])
    assert last["type"] == "error" and last["error"]["code"].startswith("provider_")
    record = call_record(response.headers["x-request-id"])
    assert record["error_code"] == "upstream_stream_broken" and record["api_id"] == built.api.pk


def test_token_budgets_of_the_caller_apply(ai_route, gateway):
    built = built_api(ai_route)
    ai_route._budgets([Budget(scope="key", requests_per_minute=1)], built.api_key, built.application)
    gateway.wait_for_config()
    assert post(gateway, built).status_code == 200
    refused = post(gateway, built)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"]


def test_without_structured_output_the_schema_goes_in_the_system_prompt_and_is_still_enforced(
    ai_route, gateway, mock_llm
):
    built = built_api(
        ai_route,
        targets=[Target(capabilities=("chat",))],
        output_mode=OutputMode.JSON,
        output_schema=SENTIMENT_OUTPUT,
    )
    response = post(gateway, built)
    # The mock answers prose when not held to JSON: repaired once, still prose, so 502.
    assert response.status_code == 502 and response.json()["error"]["code"] == "invalid_model_output"
    first, second = mock_llm.requests(kind="openai")
    assert "response_format" not in first["body"]
    system = first["body"]["messages"][0]["content"]
    assert system.startswith("You classify sentiment.") and '"enum":["positive","negative","neutral"]' in system
    assert "not valid JSON" in second["body"]["messages"][-1]["content"]


@pytest.mark.parametrize("kind", ["anthropic", "gemini"])
def test_any_provider_serves_a_prompt_api_streamed_or_not(ai_route, gateway, mock_llm, kind):
    built = built_api(ai_route, targets=[Target(kind)])
    whole = post(gateway, built)
    assert whole.status_code == 200, whole.text
    streamed = post(gateway, built, {**GOOD, "stream": True}, stream=True)
    events = [line[len("data: ") :] for line in streamed.iter_lines(decode_unicode=True) if line]
    assert events[-1] == "[DONE]"
    payloads = [orjson.loads(e) for e in events[:-1]]
    text = "".join(p["text"] for p in payloads if p["type"] == "delta")
    first, _second = mock_llm.requests(kind=kind)
    assert text == whole.json()["output"] == MockLLM.answer_for(first).text
    assert payloads[-1]["usage"] == whole.json()["usage"]


def test_the_portals_try_it_console_can_call_a_prompt_api(ai_route, gateway):
    """CORS as for REST routes: the preflight, then the POST with the portal's origin."""
    built = built_api(ai_route)
    origin = settings.PORTICO_CORS_ORIGINS[0]
    preflight = requests.options(
        gateway.url + built.base_path,
        headers={"origin": origin, "access-control-request-method": "POST"},
        timeout=5,
    )
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == origin
    response = post(gateway, built, headers={"origin": origin})
    assert response.status_code == 200 and response.headers["access-control-allow-origin"] == origin
    assert "x-request-id" in response.headers["access-control-expose-headers"]
