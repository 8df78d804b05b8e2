"""Prompt APIs attacked (issue 13 review), on the real gateway under gunicorn with the real
mock provider: schemas whose regular expressions would backtrack, and what a slow request
would do to the other requests of the same worker."""

from __future__ import annotations

import socket
import time
from decimal import Decimal

import orjson
import pytest
import requests
from django.contrib.auth import get_user_model

from llm import prompt_services
from llm.budgets import to_micros
from llm.models import OutputMode, PromptVersion
from llm.prompt_playground import run_draft
from llm.prompts import check_schema
from portal.models import Api, Membership, Role, Tenant
from portal.models.catalog import Visibility
from portal.services.config_signal import publish_config_change
from portal.services.errors import InvalidInput
from tests.llm.conftest import Budget, unique
from tests.llm.prompt_apis import SENTIMENT_OUTPUT, PromptApiBuilt, model_route, prompt_api
from tests.llm.test_gateway_prompts import built_api

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

# A backreference after a nested quantifier: fancy-regex (jsonschema_rs's default engine)
# backtracks on it: 300k 'a's and a '!' held the event loop for seconds (is_valid, then
# again to list the error).
BACKTRACKING = r"^(a+)+\1$"


def backtracking_schema(where: str) -> dict:
    if where == "pattern":
        text = {"type": "string", "pattern": BACKTRACKING}
        return {"type": "object", "required": ["text"], "properties": {"text": text}}
    return {
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "patternProperties": {BACKTRACKING: {"type": "string"}},
    }


def post(gateway, built: PromptApiBuilt, data: bytes) -> requests.Response:
    headers = {"authorization": f"Bearer {built.key}", "content-type": "application/json"}
    return requests.post(gateway.url + built.base_path, data=data, headers=headers, timeout=60)


@pytest.mark.parametrize("where", ["pattern", "patternProperties"])
def test_a_backtracking_pattern_is_refused_at_save_time(where):
    [problem] = check_schema(backtracking_schema(where))
    assert "lookaround or backreferences" in problem
    assert check_schema({"type": "object", "properties": {"t": {"type": "string", "pattern": r"^\d+-\p{L}$"}}}) == []


@pytest.mark.parametrize("where", ["pattern", "patternProperties"])
def test_a_stored_backtracking_pattern_is_503_not_seconds_of_event_loop(ai_route, gateway, mock_llm, where):
    built = built_api(ai_route, input_schema=backtracking_schema(where), user_template="{{text}}")
    text = "a" * 300_000 + "!"  # longer ones hit the engine's stack limit sooner
    data = orjson.dumps({"text": text} if where == "pattern" else {"text": "x", text: "y"})
    started = time.monotonic()
    response = post(gateway, built, data)
    elapsed = time.monotonic() - started
    # Before: validated with the backtracking engine (a 422 after seconds, twice: is_valid
    # and iter_errors), holding the worker's event loop all along.
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "prompt_unavailable"
    assert elapsed < 2.0
    assert mock_llm.requests(kind="openai") == []


ANY_TEXT = {
    "type": "object",
    "properties": {"text": {}, "n": {"type": "number"}, "tags": {"type": "array"}},
    "additionalProperties": True,
}
SHAPES = [
    b"null",
    b"1",
    b'"s"',
    b"true",
    b"[]",
    b"[{}]",
    b"{}",
    b'{"text": null}',
    b'{"text": "\\u0000 NUL"}',
    b'{"text": "\\ud800"}',
    b'{"\\ud800": 1}',
    b'{"text": "\\udc00\\ud800"}',
    b'{"text": 1e400}',
    b'{"text": 100000000000000000000000, "n": 18446744073709551615}',
    b'{"text": -18446744073709551617, "n": 1e-400}',
    b'{"text": "' + b"x" * 900_000 + b'"}',
    b'{"text": "a", "stream": null}',
    b'{"text": "a", "stream": 1}',
    b'{"text": {"a": [1, {"b": null}], "": true}}',
    b'{"": 1, "text": "a"}',
    b"\x00",
    b'{"text": "a"}\x00',
    b'{"text": "a"} {"text": "b"}',
    b'\xef\xbb\xbf{"text": "a"}',
    b'{"text": "\xe9"}',
    b'{"text": "a", "text": {"x": 1}}',
    b'{"tags": [' + b"[]," * 20_000 + b"[]]}",
]


def assert_json_error_or_answer(response: requests.Response, shape: bytes) -> None:
    assert response.status_code < 500, (shape[:60], response.status_code, response.text[:300])
    body = response.json()
    if response.status_code >= 400:
        assert isinstance(body["error"]["code"], str) and body["error"]["message"], shape[:60]
    else:
        assert "output" in body and "usage" in body, shape[:60]


def test_body_shapes_are_answers_or_json_errors_never_500(ai_route, gateway, mock_llm, call_record):
    built = built_api(ai_route, input_schema=ANY_TEXT, user_template="{{text}} {{n}} {{tags}}")
    for shape in SHAPES:
        response = post(gateway, built, shape)
        assert_json_error_or_answer(response, shape)
        record = call_record(response.headers["x-request-id"])
        assert record["status"] == response.status_code and record["api_id"] == built.api.pk


def test_tool_arguments_of_every_shape_are_tool_results_never_500(ai_route, gateway, mock_llm):
    built = built_api(ai_route, input_schema=ANY_TEXT, user_template="{{text}} {{n}} {{tags}}")
    name = f"{built.api.slug}_v1"
    headers = {
        "authorization": f"Bearer {built.key}",
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2025-11-25",
    }
    for shape in SHAPES:
        if shape.startswith((b"\x00", b"\xef")) or shape.endswith((b"\x00", b'"b"}')):
            continue  # not JSON values: the envelope's own parse error (covered by the MCP tests)
        envelope = b'{"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "%s", "arguments": %s}}'
        data = envelope % (name.encode(), shape)
        response = requests.post(gateway.url + "/mcp", data=data, headers=headers, timeout=60)
        assert response.status_code in (200, 400), (shape[:60], response.status_code, response.text[:300])
        answer = response.json()
        if "result" in answer:
            result = answer["result"]
            assert result["content"][0]["type"] == "text"
            assert result["_meta"]["portico/status"] < 500, (shape[:60], result)
        else:
            assert answer["error"]["code"] in (-32700, -32600, -32602), (shape[:60], answer)


def test_a_client_leaving_a_stream_early_leaves_one_record_and_no_reservation(
    ai_route, gateway, mock_llm, call_record, redis_client
):
    built = built_api(ai_route, max_tokens=400, input_schema=ANY_TEXT, user_template="{{text}}")
    assert built.api_key is not None
    ai_route._budgets(
        [Budget(scope="key", period="daily", spend_limit_usd=Decimal("5"), tokens_per_minute=100_000)],
        built.api_key,
        built.application,
    )
    gateway.wait_for_config()
    mock_llm.faults("slow_stream", ms=150)
    body = orjson.dumps({"text": "tell me a long story " * 20, "stream": True})
    port = int(gateway.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        head = (
            f"POST {built.base_path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {built.key}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        client.sendall(head.encode() + body)
        seen = b""
        while b"data: " not in seen:
            seen += client.recv(65536)
    # The client left after the first event, the provider still streaming (150 ms per event).
    assert seen.startswith(b"HTTP/1.1 200") and b"[DONE]" not in seen
    request_id = next(
        line.split(b":", 1)[1].strip().decode()
        for line in seen.split(b"\r\n")
        if line.lower().startswith(b"x-request-id:")
    )

    record = call_record(request_id, timeout=20)
    time.sleep(0.5)  # the reconcile follows the record
    assert [r["request_id"] for r in call_record.all_of(built.key_prefix)] == [request_id]
    prefix = f"portico:llm:budget:key:{built.api_key.pk}:"
    spend = sum(int(redis_client.get(k) or 0) for k in redis_client.scan_iter(prefix + "spend:*"))
    tokens = sum(int(v) for k in redis_client.scan_iter(prefix + "tpm*") for v in redis_client.hvals(k))
    # What the call really cost, not the reservation (400 completion tokens at the estimate).
    assert record["tokens_out"] is not None and record["tokens_out"] < 400
    assert tokens == record["tokens_in"] + record["tokens_out"]
    assert spend == to_micros(Decimal(record["cost"]))


def test_a_model_answer_of_a_fence_and_spaces_is_a_quick_502(ai_route, gateway, mock_llm, call_record):
    """A caller can ask the model for an opening code fence and a long run of spaces. The
    fence was recognized by a regular expression that backtracked quadratically on it, on
    the event loop, for the answer and again for the repair."""
    built = built_api(ai_route, output_mode=OutputMode.JSON, output_schema=SENTIMENT_OUTPUT)
    mock_llm.faults("off_schema", times=2, text="```json\n" + " " * 40_000 + "x")
    started = time.monotonic()
    response = post(gateway, built, orjson.dumps({"text": "I love this", "language": "en"}))
    elapsed = time.monotonic() - started
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "invalid_model_output"
    assert elapsed < 2.0
    record = call_record(response.headers["x-request-id"])
    assert record["status"] == 502 and record["error_code"] == "invalid_model_output"
    # A fenced answer is still read as its inside.
    mock_llm.faults("off_schema", times=1, text='```json\n{"label": "positive", "score": 0.5}\n```')
    answer = post(gateway, built, orjson.dumps({"text": "I love this", "language": "en"}))
    assert answer.status_code == 200 and answer.json()["output"] == {"label": "positive", "score": 0.5}


def test_a_template_of_braces_does_not_stall_every_workers_snapshot(ai_route, gateway, mock_llm):
    """50,000 characters (the field's limit) of '{{' and never a '}}': every worker checks
    every prompt version's template when it builds its snapshot, and the check rescanned
    the template from each '{{' (quadratic; the regex held the GIL, so the event loop of
    the worker stalled too). Such a template has no placeholder: it is sent as written."""
    model = model_route(ai_route)
    hostile = prompt_api(ai_route, model, input_schema=ANY_TEXT, user_template="{{" * 25_000)
    gateway.wait_for_config(timeout=5)  # before: the workers' builds (and /readyz) stalled past this
    response = post(gateway, hostile, orjson.dumps({"text": "x"}))
    assert response.status_code == 200, response.text
    fine = prompt_api(ai_route, model, input_schema=ANY_TEXT, user_template="{{text}}")
    gateway.wait_for_config(timeout=5)
    assert post(gateway, fine, orjson.dumps({"text": "x"})).status_code == 200


def test_a_cached_answer_is_never_served_for_a_changed_template_schema_or_another_tenant(ai_route, gateway, mock_llm):
    model = model_route(ai_route, cache_ttl_seconds=60)
    built = prompt_api(ai_route, model, output_mode=OutputMode.JSON, output_schema=SENTIMENT_OUTPUT)
    gateway.wait_for_config()
    body = orjson.dumps({"text": "I love this", "language": "en"})

    def cache(response: requests.Response) -> str:
        assert response.status_code == 200, response.text
        return response.headers["x-cache"]

    assert [cache(post(gateway, built, body)) for _ in range(2)] == ["MISS", "HIT"]
    # Another tenant's key, subscribed to the same prompt API: its own entry.
    _tenant, _owner, _application, _api_key, secret = ai_route._caller(built.api, built.plan, None)
    gateway.wait_for_config()
    assert cache(post(gateway, PromptApiBuilt(**{**built.__dict__, "key": secret}), body)) == "MISS"
    # The template changed: a new entry (the rendered request differs).
    PromptVersion.objects.filter(pk=built.prompt.pk).update(user_template="Sentiment of: {{text}}")
    publish_config_change("test: template edited")
    gateway.wait_for_config()
    assert cache(post(gateway, built, body)) == "MISS"
    # The output schema changed (the answer's contract): a new entry too.
    schema = {**SENTIMENT_OUTPUT, "properties": {**SENTIMENT_OUTPUT["properties"], "score": {"type": "integer"}}}
    PromptVersion.objects.filter(pk=built.prompt.pk).update(output_schema=schema)
    publish_config_change("test: output schema edited")
    gateway.wait_for_config()
    assert cache(post(gateway, built, body)) == "MISS"


def test_another_teams_private_model_route_is_not_a_prompt_apis_model(ai_route, gateway, mock_llm):
    """A private AI API is its owner team's alone (no one else can see or subscribe to it).
    A prompt API of another team on one of its routes would sell it to everyone: the
    authoring services do not offer it, and a row that bypassed them is not served."""
    model = model_route(ai_route)
    Api.objects.filter(pk=model.api.pk).update(visibility=Visibility.PRIVATE)
    team = Tenant.objects.create(name=unique("team"), slug=unique("team"))
    author = get_user_model().objects.create_user(unique("author"))
    Membership.objects.create(user=author, tenant=team, role=Role.OWNER)
    assert model.route not in prompt_services.available_routes(team)
    assert model.route in prompt_services.available_routes(model.api.owner)
    api = prompt_services.create_prompt_api(team, actor=author, slug=unique("p"), name="P")
    with pytest.raises(InvalidInput, match="route"):
        prompt_services.create_prompt_version(
            api, actor=author, version="v1", base_path=f"/{api.slug}/v1", route=model.route
        )

    # Rows written around the services: the gateway refuses to serve the version.
    built = prompt_api(ai_route, model, input_schema=ANY_TEXT, user_template="{{text}}")
    gateway.wait_for_config()
    response = post(gateway, built, orjson.dumps({"text": "x"}))
    assert response.status_code == 503, response.text  # before: the private model answered
    assert response.json()["error"]["code"] == "prompt_unavailable"
    assert mock_llm.requests(kind="openai") == []
    # The private AI API's own team may build on it.
    Api.objects.filter(pk=built.api.pk).update(owner=model.api.owner)
    publish_config_change("test: the prompt API moved to the model's team")
    gateway.wait_for_config()
    assert post(gateway, built, orjson.dumps({"text": "x"})).status_code == 200


def test_a_template_repeating_a_variable_cannot_make_a_huge_prompt(ai_route, gateway, mock_llm, call_record):
    """A template may name a variable many times; each copy of the value is built. 6,000
    copies of a 1 MiB value would be gigabytes in a worker shared by every API: the rendered
    message is capped (here 400 copies of 20 kB: 8 MB) before anything is built."""
    built = built_api(ai_route, input_schema=ANY_TEXT, user_template="{{text}}" * 400)
    body = orjson.dumps({"text": "x" * 20_000})
    response = post(gateway, built, body)
    assert response.status_code == 413, response.text[:300]  # before: 8 MB sent to the model
    assert response.json()["error"]["code"] == "prompt_too_large"
    assert call_record(response.headers["x-request-id"])["error_code"] == "prompt_too_large"
    assert mock_llm.requests(kind="openai") == []
    # Through MCP, the same refusal as a tool error.
    data = orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": f"{built.api.slug}_v1", "arguments": {"text": "x" * 20_000}},
        }
    )
    headers = {"authorization": f"Bearer {built.key}", "content-type": "application/json", "accept": "application/json"}
    result = requests.post(gateway.url + "/mcp", data=data, headers=headers, timeout=30).json()["result"]
    assert result["isError"] is True and result["_meta"]["portico/status"] == 413
    # The playground says so too.
    ran = run_draft(built.prompt, {"text": "x" * 20_000})
    assert ran.error_code == "prompt_too_large"
    assert mock_llm.requests(kind="openai") == []
    # A modest value through the same template is fine.
    assert post(gateway, built, orjson.dumps({"text": "ok"})).status_code == 200
