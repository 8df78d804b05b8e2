"""The mock provider as a real process on loopback: every wire format through the official
SDKs where there is one (raw SSE for Gemini), its conformance checks, each fault, the
request log."""

from __future__ import annotations

import base64
import json
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx2 as httpx
import openai
import pytest

from portal.embedded_redis import free_port

ROOT = Path(__file__).resolve().parents[2]
ANTHROPIC_HEADERS = {"x-api-key": "sk-ant-test-k3y9", "anthropic-version": "2023-06-01"}
GEMINI_HEADERS = {"x-goog-api-key": "AIza-test-g3m1"}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def start_mock(*args: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "llm.mock_provider", "--port", str(port), *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/_mock/health", timeout=0.5).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"mock provider did not start: {process.stderr.read() if process.stderr else ''!r}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    process, url = start_mock()
    yield url
    stop(process)


@pytest.fixture
def mock(mock_url: str) -> Iterator[str]:
    httpx.post(mock_url + "/_mock/reset")
    yield mock_url


def arm(url: str, **spec: object) -> None:
    response = httpx.post(url + "/_mock/faults", json=spec)
    assert response.status_code == 201, response.text


def requests_seen(url: str, **query: str) -> list[dict]:
    return httpx.get(url + "/_mock/requests", params=query).json()["requests"]


def oai(url: str, prefix: str = "openai", key: str = "sk-test-0a1b") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/{prefix}/v1", api_key=key, max_retries=0)


def claude(url: str, key: str = "sk-ant-test-k3y9") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"{url}/anthropic", api_key=key, max_retries=0)


def gemini_post(url: str, model: str, method: str, body: dict, **kw: object) -> httpx.Response:
    suffix = "?alt=sse" if method == "streamGenerateContent" else ""
    return httpx.post(f"{url}/gemini/v1beta/models/{model}:{method}{suffix}", json=body, headers=GEMINI_HEADERS, **kw)


def sse_data(text: str) -> list[dict]:
    return [json.loads(block[len("data: ") :]) for block in text.split("\r\n\r\n") if block.startswith("data: ")]


# -- OpenAI -----------------------------------------------------------------------------------


def test_openai_sdk_reads_a_deterministic_completion_with_usage(mock: str) -> None:
    client = oai(mock)
    messages = [{"role": "user", "content": "Hello there, how are you?"}]
    first = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    second = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert first.choices[0].message.content == "Mock openai answer to: Hello there, how are you?"
    assert first.choices[0].finish_reason == "stop"
    assert first.model == "gpt-4o-mini"
    assert first.usage is not None and first.usage.completion_tokens == 12
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens
    assert first.usage.prompt_tokens_details is not None and first.usage.prompt_tokens_details.cached_tokens == 0
    assert second.choices[0].message.content == first.choices[0].message.content
    assert second.usage == first.usage
    assert second.id != first.id


def test_a_long_system_prompt_is_reported_as_cached_tokens(mock: str) -> None:
    system = "You are a careful assistant. " * 10
    completion = oai(mock).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "system", "content": system}, {"role": "user", "content": "Hi"}]
    )
    assert completion.usage is not None and completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 4 + 60
    assert completion.usage.prompt_tokens == 4 + 60 + 4 + 1


def test_openai_stream_has_word_deltas_and_a_usage_chunk_only_when_asked(mock: str) -> None:
    client = oai(mock)
    messages = [{"role": "user", "content": "Tell me a story"}]
    plain = list(client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True))
    deltas = [c.choices[0].delta.content for c in plain if c.choices and c.choices[0].delta.content]
    assert "".join(deltas) == "Mock openai answer to: Tell me a story"
    assert len(deltas) == 9
    assert plain[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in plain)
    with_usage = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    assert with_usage[-1].choices == [] and with_usage[-1].usage is not None
    assert with_usage[-1].usage.completion_tokens == 9


def test_max_tokens_cuts_the_answer_and_finishes_with_length(mock: str) -> None:
    completion = oai(mock).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}], max_completion_tokens=3
    )
    assert completion.choices[0].message.content == "Mock openai answer"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 3


def test_openai_tool_call_streams_argument_deltas(mock: str) -> None:
    client = oai(mock)
    messages = [{"role": "user", "content": "Please call tool for Paris"}]
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL])
    call = completion.choices[0].message.tool_calls[0]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "mock"}
    chunks = list(
        client.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL], stream=True)
    )
    pieces = [c.choices[0].delta.tool_calls[0].function.arguments for c in chunks if c.choices[0].delta.tool_calls]
    assert len(pieces) > 2 and json.loads("".join(pieces)) == {"city": "mock"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    answered = client.chat.completions.create(
        model="gpt-4o-mini",
        tools=[WEATHER_TOOL],
        messages=[
            *messages,
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"},
        ],
    )
    assert answered.choices[0].message.content == "Mock openai answer to tool result: Sunny, 21 C"


def test_tool_choice_forces_a_call_and_none_forbids_it(mock: str) -> None:
    client = oai(mock)
    messages = [{"role": "user", "content": "What is the weather?"}]
    forced = client.chat.completions.create(model="m", messages=messages, tools=[WEATHER_TOOL], tool_choice="required")
    assert forced.choices[0].message.tool_calls
    refused = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "call tool"}], tools=[WEATHER_TOOL], tool_choice="none"
    )
    assert refused.choices[0].message.tool_calls is None


def test_json_schema_and_json_object_answers_are_json(mock: str) -> None:
    client = oai(mock)
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}}
    typed = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "Who?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "person", "schema": schema}},
    )
    assert json.loads(typed.choices[0].message.content) == {"name": "Mock openai answer to: Who?", "age": 1}
    loose = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Answer in JSON"}], response_format={"type": "json_object"}
    )
    assert json.loads(loose.choices[0].message.content) == {"answer": "Mock openai answer to: Answer in JSON"}


def test_openai_embeddings_are_deterministic_in_float_and_base64(mock: str) -> None:
    client = oai(mock)
    as_base64 = client.embeddings.create(model="text-embedding-3-small", input=["alpha", "beta"])
    as_float = client.embeddings.create(
        model="text-embedding-3-small", input=["alpha", "beta"], encoding_format="float"
    )
    assert len(as_float.data) == 2 and len(as_float.data[0].embedding) == 8
    assert as_float.data[0].embedding != as_float.data[1].embedding
    assert as_base64.data[0].embedding == pytest.approx(as_float.data[0].embedding, abs=1e-6)
    assert as_float.usage.prompt_tokens == 2
    raw = httpx.post(
        mock + "/openai/v1/embeddings",
        json={"model": "e", "input": "x", "encoding_format": "base64", "dimensions": 3},
        headers={"Authorization": "Bearer sk-1"},
    ).json()
    assert len(struct.unpack("<3f", base64.b64decode(raw["data"][0]["embedding"]))) == 3


def test_openai_refuses_what_the_api_refuses(mock: str) -> None:
    client = oai(mock)
    cases = [
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "top_k": 3}, "Unrecognized request argument"),
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream_options": {"include_usage": True}},
         "only allowed when 'stream' is enabled"),
        ({"model": "m", "messages": [{"role": "tool", "tool_call_id": "x", "content": "r"}]}, "preceeding message"),
        ({"model": "m", "messages": [{"role": "bogus", "content": "hi"}]}, "Invalid value: 'bogus'"),
        ({"model": "m", "messages": []}, "empty array"),
        ({"messages": [{"role": "user", "content": "hi"}]}, "you must provide a model parameter"),
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "below minimum value"),
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_object"}},
         "must contain the word 'json'"),
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "tool_choice": "auto"},
         "only allowed when 'tools' are specified"),
    ]  # fmt: skip
    for body, expected in cases:
        with pytest.raises(openai.BadRequestError) as raised:
            client.post("/chat/completions", body=body, cast_to=object)
        assert expected in raised.value.message, body
    function = {"name": "f", "arguments": "{}"}
    unanswered = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": function}]},
            {"role": "user", "content": "again"},
        ],
    }  # fmt: skip
    with pytest.raises(openai.BadRequestError, match="did not have response messages: call_1"):
        client.post("/chat/completions", body=unanswered, cast_to=object)


# -- Azure, Mistral, compatible ---------------------------------------------------------------


def test_azure_sdk_reaches_a_deployment_with_api_key_and_api_version(mock: str) -> None:
    client = openai.AzureOpenAI(
        azure_endpoint=f"{mock}/azure", api_key="azure-key-az12", api_version="2024-10-21", max_retries=0
    )
    completion = client.chat.completions.create(model="my-gpt4o", messages=[{"role": "user", "content": "Hi"}])
    assert completion.choices[0].message.content == "Mock azure-openai answer to: Hi"
    chunks = list(
        client.chat.completions.create(
            model="my-gpt4o",
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices == []  # Azure's first event carries only prompt_filter_results
    assert chunks[-1].usage is not None
    seen = requests_seen(mock, kind="azure-openai")[-1]
    assert seen["path"] == "/azure/openai/deployments/my-gpt4o/chat/completions"
    assert seen["query"] == {"api-version": "2024-10-21"}
    assert seen["headers"]["api-key"] == "...az12"
    assert seen["conformance"] == {"ok": True, "problems": []}
    missing_version = httpx.post(
        f"{mock}/azure/openai/deployments/d/chat/completions",
        json={"messages": [{"role": "user", "content": "hi"}]},
        headers={"api-key": "k"},
    )
    assert missing_version.status_code == 400 and "api-version" in missing_version.json()["error"]["message"]
    bearer_only = httpx.post(
        f"{mock}/azure/openai/deployments/d/chat/completions?api-version=2024-10-21",
        json={"messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": "Bearer k"},
    )
    assert bearer_only.status_code == 401 and bearer_only.json()["error"]["code"] == "401"


def test_mistral_refuses_openai_only_fields_with_422_and_reports_usage_on_its_last_chunk(mock: str) -> None:
    client = oai(mock, "mistral")
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        client.chat.completions.create(
            model="mistral-small", messages=[{"role": "user", "content": "hi"}], max_completion_tokens=5
        )
    assert (
        raised.value.body["message"]["detail"][0]["msg"] == "body.max_completion_tokens: Extra inputs are not permitted"
    )
    chunks = list(
        client.chat.completions.create(model="mistral-small", messages=[{"role": "user", "content": "hi"}], stream=True)
    )
    assert chunks[-1].choices[0].finish_reason == "stop" and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6
    tool = list(
        client.chat.completions.create(
            model="mistral-small",
            messages=[{"role": "user", "content": "call tool"}],
            tools=[WEATHER_TOOL],
            stream=True,
        )
    )
    call = tool[-1].choices[0].delta.tool_calls[0]
    assert json.loads(call.function.arguments) == {"city": "mock"} and len(call.id) == 9


def test_openai_compatible_server_takes_unknown_fields_and_no_key(mock: str) -> None:
    response = httpx.post(
        f"{mock}/compatible/v1/chat/completions",
        json={"model": "llama3", "messages": [{"role": "user", "content": "hi"}], "top_k": 20},
    )
    assert response.status_code == 200
    assert response.json()["usage"]["prompt_tokens_details"] is None


# -- Anthropic --------------------------------------------------------------------------------


def test_anthropic_sdk_reads_a_message_and_its_stream(mock: str) -> None:
    client = claude(mock)
    message = client.messages.create(
        model="claude-mock", max_tokens=100, system="Be brief.", messages=[{"role": "user", "content": "Hello"}]
    )
    assert message.content[0].text == "Mock anthropic answer to: Hello"
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 6 and message.usage.input_tokens == 3 + 4 + 1
    with client.messages.stream(
        model="claude-mock", max_tokens=3, messages=[{"role": "user", "content": "Hello"}]
    ) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert texts == ["Mock", " anthropic", " answer"]
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 3


def test_anthropic_tool_use_streams_input_json_deltas(mock: str) -> None:
    tool = {"name": "get_weather", "input_schema": WEATHER_TOOL["function"]["parameters"]}
    with claude(mock).messages.stream(
        model="claude", max_tokens=200, tools=[tool], messages=[{"role": "user", "content": "call tool now"}]
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [block.type for block in final.content] == ["text", "tool_use"]
    assert final.content[1].input == {"city": "mock"}
    assert events.count("input_json") > 1


def test_anthropic_cache_control_prefix_counts_as_cache_read(mock: str) -> None:
    message = claude(mock).messages.create(
        model="claude",
        max_tokens=50,
        system=[{"type": "text", "text": "A long stable prefix of rules.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "Hi"}],
    )
    assert message.usage.cache_read_input_tokens == 7
    assert message.usage.input_tokens == 4 + 1
    assert message.usage.cache_creation_input_tokens == 0


def test_anthropic_refuses_openai_shapes(mock: str) -> None:
    client = claude(mock)
    hi = {"role": "user", "content": "hi"}
    cases = [
        ({"model": "c", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}, hi]},
         'Unexpected role "system"'),
        ({"model": "c", "messages": [{"role": "user", "content": "hi"}]}, "max_tokens: Field required"),
        ({"model": "c", "max_tokens": 5, "n": 2, "messages": [{"role": "user", "content": "hi"}]},
         "n: Extra inputs are not permitted"),
        ({"model": "c", "max_tokens": 5, "temperature": 1.5, "messages": [{"role": "user", "content": "hi"}]},
         "temperature"),
        ({"model": "c", "max_tokens": 5, "tool_choice": "auto", "messages": [{"role": "user", "content": "hi"}]},
         "tool_choice: Input should be a valid dictionary"),
        ({"model": "c", "max_tokens": 5, "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}]},
            {"role": "user", "content": "no result"}]},
         "`tool_use` ids were found without `tool_result` blocks"),
    ]  # fmt: skip
    for body, expected in cases:
        with pytest.raises(anthropic.BadRequestError) as raised:
            client.post("/v1/messages", body=body, cast_to=object)
        assert expected in raised.value.message, body
    no_version = httpx.post(
        mock + "/anthropic/v1/messages",
        json={"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-api-key": "k"},
    )
    assert no_version.status_code == 400
    assert no_version.json()["error"] == {
        "type": "invalid_request_error",
        "message": "anthropic-version: header is required",
    }


# -- Gemini -----------------------------------------------------------------------------------


def test_gemini_generate_and_stream_with_usage_metadata(mock: str) -> None:
    body = {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [{"role": "user", "parts": [{"text": "Hello"}]}],
        "generationConfig": {"temperature": 0.2},
    }
    whole = gemini_post(mock, "gemini-2.0-flash", "generateContent", body).json()
    candidate = whole["candidates"][0]
    assert candidate["content"] == {"parts": [{"text": "Mock gemini answer to: Hello"}], "role": "model"}
    assert candidate["finishReason"] == "STOP"
    assert whole["usageMetadata"]["candidatesTokenCount"] == 6
    assert whole["usageMetadata"]["totalTokenCount"] == whole["usageMetadata"]["promptTokenCount"] + 6
    streamed = gemini_post(mock, "gemini-2.0-flash", "streamGenerateContent", body)
    assert streamed.headers["content-type"] == "text/event-stream"
    events = sse_data(streamed.text)
    assert len(events) == 6
    assert "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in events) == "Mock gemini answer to: Hello"
    assert "finishReason" not in events[0]["candidates"][0] and events[-1]["candidates"][0]["finishReason"] == "STOP"
    assert events[-1]["usageMetadata"] == whole["usageMetadata"]


def test_gemini_max_output_tokens_function_calls_and_json(mock: str) -> None:
    cut = gemini_post(
        mock, "g", "generateContent",
        {"contents": [{"parts": [{"text": "Hello"}]}], "generationConfig": {"maxOutputTokens": 2}},
    ).json()  # fmt: skip
    assert cut["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert cut["candidates"][0]["content"]["parts"][0]["text"] == "Mock gemini"
    tools = [
        {
            "functionDeclarations": [
                {"name": "get_weather", "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}}}
            ]
        }
    ]
    called = gemini_post(
        mock, "g", "generateContent", {"contents": [{"role": "user", "parts": [{"text": "call tool"}]}], "tools": tools}
    ).json()
    assert called["candidates"][0]["content"]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": {"city": "mock"}}}
    ]
    assert called["candidates"][0]["finishReason"] == "STOP"
    as_json = gemini_post(
        mock, "g", "generateContent",
        {"contents": [{"parts": [{"text": "Hi"}]}], "generation_config": {"response_mime_type": "application/json"}},
    ).json()  # fmt: skip
    assert json.loads(as_json["candidates"][0]["content"]["parts"][0]["text"]) == {
        "answer": "Mock gemini answer to: Hi"
    }


def test_gemini_refuses_openai_shaped_bodies(mock: str) -> None:
    cases = [
        ({"messages": [{"role": "user", "content": "hi"}]}, 'Unknown name "messages"'),
        ({"contents": [{"role": "system", "parts": [{"text": "x"}]}]}, "Please use a valid role: user, model."),
        ({"contents": [{"role": "user", "parts": [{"text": "x"}]}], "generationConfig": {"max_tokens": 5}},
         'Unknown name "max_tokens" at \'generation_config\''),
        ({"contents": [{"role": "user", "parts": []}]}, "must not be empty"),
    ]  # fmt: skip
    for body, expected in cases:
        response = gemini_post(mock, "g", "generateContent", body)
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["status"] == "INVALID_ARGUMENT" and expected in error["message"], body


def test_gemini_batch_embed_contents(mock: str) -> None:
    body = {
        "requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "alpha"}]}},
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "beta"}]}, "outputDimensionality": 4},
        ]
    }
    answer = gemini_post(mock, "text-embedding-004", "batchEmbedContents", body).json()
    assert [len(e["values"]) for e in answer["embeddings"]] == [8, 4]
    wrong_model = gemini_post(
        mock, "text-embedding-004", "batchEmbedContents",
        {"requests": [{"model": "models/other", "content": {"parts": [{"text": "a"}]}}]},
    )  # fmt: skip
    assert wrong_model.status_code == 400 and "does not match" in wrong_model.json()["error"]["message"]


# -- keys -------------------------------------------------------------------------------------


def test_an_invalid_key_gets_each_providers_own_refusal(mock: str) -> None:
    with pytest.raises(openai.AuthenticationError, match="Incorrect API key"):
        oai(mock, key="sk-invalid-0001").chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
    with pytest.raises(anthropic.AuthenticationError) as raised:
        claude(mock, key="invalid-key").messages.create(
            model="c", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert raised.value.body["error"]["type"] == "authentication_error"
    gemini = httpx.post(
        f"{mock}/gemini/v1beta/models/g:generateContent",
        json={"contents": [{"parts": [{"text": "hi"}]}]},
        headers={"x-goog-api-key": "invalid"},
    )
    assert gemini.status_code == 400 and gemini.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    missing = httpx.post(f"{mock}/openai/v1/chat/completions", json={"model": "m", "messages": []})
    assert missing.status_code == 401
    mistral = httpx.post(
        f"{mock}/mistral/v1/chat/completions",
        json={"model": "m", "messages": []},
        headers={"Authorization": "Bearer invalid"},
    )
    assert mistral.status_code == 401 and mistral.json()["message"] == "Unauthorized"


# -- faults -----------------------------------------------------------------------------------


def test_a_429_fault_fails_one_model_while_another_works_and_carries_its_reset(mock: str) -> None:
    arm(mock, match={"kind": "openai", "model": "primary"}, fault="status", status=429, retry_after=7, times=2)
    client = oai(mock)
    for _ in range(2):
        with pytest.raises(openai.RateLimitError) as raised:
            client.chat.completions.create(model="primary", messages=[{"role": "user", "content": "hi"}])
        assert raised.value.response.headers["retry-after"] == "7"
        assert raised.value.code == "rate_limit_exceeded"
        other = client.chat.completions.create(model="secondary", messages=[{"role": "user", "content": "hi"}])
        assert other.choices[0].message.content
    assert client.chat.completions.create(model="primary", messages=[{"role": "user", "content": "hi"}]).choices
    arm(mock, match={"kind": "anthropic"}, fault="status", status=429, retry_after=3)
    with pytest.raises(anthropic.RateLimitError) as limited:
        claude(mock).messages.create(model="c", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    headers = limited.value.response.headers
    assert headers["retry-after"] == "3" and headers["anthropic-ratelimit-requests-remaining"] == "0"
    assert headers["anthropic-ratelimit-requests-reset"].endswith("Z")
    arm(mock, match={"kind": "gemini"}, fault="status", status=429)
    gemini = gemini_post(mock, "g", "generateContent", {"contents": [{"parts": [{"text": "hi"}]}]})
    assert gemini.status_code == 429 and gemini.json()["error"]["status"] == "RESOURCE_EXHAUSTED"


def test_status_faults_match_on_the_keys_last_four_and_map_to_sdk_classes(mock: str) -> None:
    arm(mock, match={"key_last4": "bad1"}, fault="status", status=500, times=-1)
    with pytest.raises(openai.InternalServerError):
        oai(mock, key="sk-key-bad1").chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert oai(mock, key="sk-key-good").chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    arm(mock, match={"kind": "anthropic"}, fault="status", status=529)
    with pytest.raises(anthropic.OverloadedError):
        claude(mock).messages.create(model="c", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    arm(mock, match={"kind": "openai"}, fault="context_length")
    with pytest.raises(openai.BadRequestError) as raised:
        oai(mock).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.code == "context_length_exceeded"


def test_slow_first_byte_and_slow_stream_delay_the_answer(mock: str) -> None:
    arm(mock, fault="slow_first_byte", ms=300)
    started = time.monotonic()
    oai(mock).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert time.monotonic() - started >= 0.3
    arm(mock, fault="slow_stream", ms=50)
    started = time.monotonic()
    chunks = list(
        oai(mock).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
    )
    assert time.monotonic() - started >= 0.05 * (len(chunks) - 1)


def test_a_cut_stream_makes_the_sdks_raise(mock: str) -> None:
    arm(mock, match={"kind": "openai"}, fault="cut_stream", after_events=3)
    received = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in oai(mock).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            received.append(chunk)
    assert len(received) == 3
    arm(mock, match={"kind": "anthropic"}, fault="cut_stream", after_events=4)
    # The anthropic SDK lets the transport's error through a stream unwrapped.
    with (
        pytest.raises((anthropic.APIConnectionError, httpx.RemoteProtocolError)),
        claude(mock).messages.stream(model="c", max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as stream,
    ):
        stream.get_final_message()
    arm(mock, fault="cut_stream")
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(
            f"{mock}/openai/v1/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": "Bearer k"},
        )


def test_an_in_band_stream_error_ends_without_the_end_marker(mock: str) -> None:
    arm(mock, match={"kind": "openai"}, fault="stream_error", after_events=2, message="upstream broke")
    with pytest.raises(openai.APIError, match="upstream broke"):
        list(oai(mock).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True))
    arm(mock, match={"kind": "anthropic"}, fault="stream_error", after_events=3)
    with (
        pytest.raises(anthropic.APIStatusError) as raised,
        claude(mock).messages.stream(model="c", max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as stream,
    ):
        stream.get_final_message()
    assert raised.value.body["error"]["type"] == "overloaded_error"
    arm(mock, match={"kind": "gemini"}, fault="stream_error", after_events=2)
    events = sse_data(gemini_post(mock, "g", "streamGenerateContent", {"contents": [{"parts": [{"text": "hi"}]}]}).text)
    assert len(events) == 3 and events[-1]["error"]["status"] == "INTERNAL"


def test_no_usage_leaves_usage_out_of_answers_and_streams(mock: str) -> None:
    arm(mock, fault="no_usage", times=3)
    client = oai(mock)
    assert client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}]).usage is None
    chunks = list(
        client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True, stream_options={"include_usage": True}
        )
    )
    assert all(c.usage is None for c in chunks) and chunks[-1].choices[0].finish_reason == "stop"
    events = sse_data(gemini_post(mock, "g", "streamGenerateContent", {"contents": [{"parts": [{"text": "hi"}]}]}).text)
    assert all("usageMetadata" not in e for e in events)


def test_bad_json_is_a_200_whose_body_does_not_parse(mock: str) -> None:
    arm(mock, fault="bad_json", times=2)
    response = httpx.post(
        f"{mock}/anthropic/v1/messages",
        json={"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
        headers=ANTHROPIC_HEADERS,
    )
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)
    with pytest.raises(json.JSONDecodeError):
        sse_data(gemini_post(mock, "g", "streamGenerateContent", {"contents": [{"parts": [{"text": "hi"}]}]}).text)


def test_hang_never_answers(mock: str) -> None:
    arm(mock, fault="hang")
    with pytest.raises(httpx.ReadTimeout):
        gemini_post(mock, "g", "generateContent", {"contents": [{"parts": [{"text": "hi"}]}]}, timeout=0.3)
    assert gemini_post(mock, "g", "generateContent", {"contents": [{"parts": [{"text": "hi"}]}]}).status_code == 200


def test_faults_are_validated_and_listed(mock: str) -> None:
    assert httpx.post(mock + "/_mock/faults", json={"fault": "explode"}).status_code == 400
    assert httpx.post(mock + "/_mock/faults", json={"fault": "status", "status": 200}).status_code == 400
    assert httpx.post(mock + "/_mock/faults", json={"fault": "hang", "match": {"colour": "red"}}).status_code == 400
    arm(mock, fault="status", match={"kind": "azure"}, times=-1)
    faults = httpx.get(mock + "/_mock/faults").json()["faults"]
    assert faults[0]["match"] == {"kind": "azure-openai"} and faults[0]["times"] == -1


# -- the request log and the connection -------------------------------------------------------


def test_the_request_log_keeps_bodies_verdicts_and_only_the_last_four_of_secrets(mock: str) -> None:
    claude(mock).messages.create(model="c", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    gemini_post(mock, "gemini-pro", "generateContent", {"messages": []})
    anthropic_seen = requests_seen(mock, kind="anthropic")
    assert len(anthropic_seen) == 1
    record = anthropic_seen[0]
    # The anthropic SDK sends its key as a Bearer token; x-api-key is the documented header.
    assert record["headers"]["authorization"] == "Bearer ...k3y9" and "sk-ant-test" not in json.dumps(record)
    assert record["body"]["messages"] == [{"role": "user", "content": "hi"}]
    assert record["conformance"] == {"ok": True, "problems": []} and record["status"] == 200
    gemini_seen = requests_seen(mock, kind="gemini")[0]
    assert gemini_seen["model"] == "gemini-pro" and gemini_seen["status"] == 400
    assert gemini_seen["headers"]["x-goog-api-key"] == "...g3m1"
    assert gemini_seen["conformance"]["ok"] is False
    assert len(requests_seen(mock)) == 2 and len(requests_seen(mock, limit="1")) == 1
    httpx.post(mock + "/_mock/reset")
    assert requests_seen(mock) == []


def test_pipelined_requests_are_answered_in_order_behind_a_slow_one(mock: str) -> None:
    arm(mock, fault="slow_first_byte", ms=200, match={"model": "slow"})
    port = int(mock.rsplit(":", 1)[1])

    def request(model: str) -> bytes:
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": model}]}).encode()
        return (
            b"POST /openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )

    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(request("slow") + request("fast"))
        received = b""
        while received.count(b"HTTP/1.1 200") < 2 or not received.endswith(b"}"):
            received += connection.recv(65536)
    assert received.index(b"answer to: slow") < received.index(b"answer to: fast")


def test_several_workers_share_the_port_and_refuse_faults() -> None:
    process, url = start_mock("--workers", "2", "--no-check")
    try:
        health = httpx.get(url + "/_mock/health").json()
        assert health == {"ok": True, "check": False, "workers": 2}
        assert oai(url).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}]).choices
        assert httpx.post(url + "/_mock/faults", json={"fault": "hang"}).status_code == 409
    finally:
        stop(process)
