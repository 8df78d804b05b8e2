"""Trace context on the LLM endpoints, through the real gateway and the mock provider: the
provider receives the client's trace under the gateway's span (never the client's
tracestate), the call record holds the trace id, and a sampled call's spans (exported to a
loopback OTLP receiver) show the AI steps, one span per provider attempt."""

from __future__ import annotations

import re
import time

import pytest
from django.conf import settings

from tests.gateway.conftest import GatewayProcess
from tests.gateway.otlp_receiver import OtlpReceiver
from tests.llm.conftest import Target, user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

TRACE = "5ca1ab1e" * 4
PARENT = "00f067aa0ba902b7"
TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
SERVER = 2


@pytest.fixture(scope="module")
def receiver():
    otlp = OtlpReceiver()
    otlp.url = otlp.start()
    yield otlp
    otlp.stop()


@pytest.fixture(scope="module")
def llm_gateway(django_db_setup, django_db_blocker, tmp_path_factory, receiver):
    process = GatewayProcess(
        settings.REDIS_URL,
        tmp_path_factory.mktemp("llm-gateway-otlp"),
        extra_env={
            "PORTICO_ENCRYPTION_KEY": ",".join(settings.PORTICO_ENCRYPTION_KEYS),
            "GATEWAY_OTLP_ENDPOINT": receiver.url,
            "GATEWAY_TRACE_SAMPLE_RATIO": "0",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
    )
    process.start()
    yield process
    process.stop()


def chat(route, headers):
    client = route.openai(default_headers=headers)
    raw = client.chat.completions.with_raw_response.create(model=route.alias, messages=user("Hello there"))
    return raw.headers["x-request-id"], raw.parse()


def provider_traceparent(request: dict) -> tuple[str, str, str]:
    match = TRACEPARENT.fullmatch(request["headers"].get("traceparent", ""))
    assert match, request["headers"]
    return match.group(1), match.group(2), match.group(3)


def test_the_provider_gets_the_trace_and_the_record_and_spans_hold_it(ai_route, mock_llm, call_record, receiver):
    route = ai_route([Target("openai")])
    request_id, completion = chat(route, {"traceparent": f"00-{TRACE}-{PARENT}-01", "tracestate": "me=private"})
    assert completion.choices[0].message.content

    (seen,) = mock_llm.requests(model=route.target.upstream)
    trace_id, parent_id, flags = provider_traceparent(seen)
    assert (trace_id, flags) == (TRACE, "01") and parent_id != PARENT
    assert "tracestate" not in seen["headers"]  # the client's, for its own systems
    assert call_record(request_id)["trace_id"] == TRACE

    spans = receiver.wait_for(TRACE, 8)
    (root,) = [s for s in spans if s.kind == SERVER]
    assert root.span_id == parent_id and root.parent_span_id == PARENT
    assert root.name == "POST /v1/chat/completions"
    assert root.attributes["gen_ai.request.model"] == route.alias
    assert root.attributes["gen_ai.response.model"] == route.target.upstream
    assert root.attributes["gen_ai.usage.output_tokens"] > 0
    names = [s.name for s in sorted(spans, key=lambda s: s.start) if s is not root]
    assert names == ["auth", "read_body", "limits", "policy", "cache", "provider", "reconcile_budget"]
    (provider,) = [s for s in spans if s.name == "provider"]
    assert provider.attributes == {"gen_ai.system": "openai", "gen_ai.request.model": route.target.upstream}
    everything = repr([(s.attributes, s.resource) for s in spans])
    assert route.key not in everything and "Hello there" not in everything
    assert route.target.keys[0] not in everything


def test_a_call_without_a_traceparent_is_traced_by_the_gateway_and_not_exported_at_ratio_zero(
    ai_route, mock_llm, call_record, receiver
):
    route = ai_route([Target("openai")])
    request_id, _completion = chat(route, {"tracestate": "me=private"})
    (seen,) = mock_llm.requests(model=route.target.upstream)
    trace_id, _parent, flags = provider_traceparent(seen)
    assert call_record(request_id)["trace_id"] == trace_id and flags == "00"
    assert "tracestate" not in seen["headers"]
    barrier = "b" * 32
    chat(route, {"traceparent": f"00-{barrier}-{PARENT}-01"})
    assert receiver.wait_for(barrier, 8)
    assert receiver.of_trace(trace_id) == []


def test_each_provider_attempt_is_a_span_of_its_own(ai_route, mock_llm, call_record, receiver):
    route = ai_route([Target("openai")], fallbacks=[Target("anthropic")])
    primary, backup = route.targets[0], route.fallbacks[0]
    mock_llm.faults("status", match={"model": primary.upstream}, times=-1, status=500)
    request_id, _completion = chat(route, {"traceparent": f"00-{TRACE[::-1]}-{PARENT}-01"})
    fallbacks = call_record(request_id)["fallbacks"]
    assert fallbacks >= 1
    spans = receiver.wait_for(TRACE[::-1], 8 + fallbacks)
    attempts = sorted((s for s in spans if s.name == "provider"), key=lambda s: s.start)
    assert len(attempts) == fallbacks + 1
    models = [a.attributes["gen_ai.request.model"] for a in attempts]
    assert models[0] == primary.upstream and models[-1] == backup.upstream
    assert all(a.end == b.start for a, b in zip(attempts, attempts[1:], strict=False))
    # Both providers saw the same gateway span as their parent.
    parents = {
        provider_traceparent(r)[1]
        for r in mock_llm.requests()
        if r["body"].get("model") in (primary.upstream, backup.upstream)
    }
    (root,) = [s for s in spans if s.kind == SERVER]
    assert parents == {root.span_id}


def test_a_prompt_api_call_keeps_one_trace_and_one_call_span(ai_route, gateway, mock_llm, call_record, receiver):
    import orjson
    import requests

    from tests.llm.prompt_apis import model_route, prompt_api

    built = prompt_api(ai_route, model_route(ai_route, ()))
    gateway.wait_for_config()

    def post(headers):
        response = requests.post(
            gateway.url + built.base_path,
            data=orjson.dumps({"text": "I love this", "language": "en"}),
            headers={"authorization": f"Bearer {built.key}", "content-type": "application/json", **headers},
            timeout=15,
        )
        assert response.status_code == 200, response.text
        return response.headers["x-request-id"]

    # Started by the gateway: the record and the provider see the same trace.
    request_id = post({})
    (seen,) = mock_llm.requests(kind="openai")
    assert call_record(request_id)["trace_id"] == provider_traceparent(seen)[0]

    sampled = "d" * 32
    request_id = post({"traceparent": f"00-{sampled}-{PARENT}-01"})
    assert call_record(request_id)["trace_id"] == sampled
    seen = mock_llm.requests(kind="openai")[-1]
    trace_id, parent_id, _flags = provider_traceparent(seen)
    receiver.wait_for(sampled, 2)
    time.sleep(0.5)  # a second export of the same call would have come by now
    spans = receiver.of_trace(sampled)
    roots = [s for s in spans if s.kind == SERVER]
    assert len(roots) == 1, roots  # the REST call that handed over exports nothing of its own
    assert trace_id == sampled and roots[0].span_id == parent_id and roots[0].parent_span_id == PARENT
    assert roots[0].name == f"POST {built.base_path}"
    assert any(s.name == "provider" for s in spans)
