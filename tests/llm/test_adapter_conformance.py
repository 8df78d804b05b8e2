"""Adapter conformance against the mock provider (its own process, real HTTP on loopback):
for each provider kind, a translated request goes out through the gateway's own upstream
client (``gateway.httpclient.UpstreamPool``), the mock judges it against that provider's
documented format (``GET /_mock/requests``: the verdict must be clean), and the translated
answer — whole and streamed — renders in both inbound formats into what the official
``openai`` and ``anthropic`` SDK types accept."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import anthropic.types
import openai.types.chat
import orjson
import pydantic
import pytest

from gateway.httpclient import UpstreamPool
from llm.canonical import Json, ModelTarget, ProviderKey, UpstreamRequest, Usage
from llm.inbound import ANTHROPIC, OPENAI
from llm.providers import PROVIDER_KINDS, adapter_for
from llm.sse import SSEParser

# The mock provider is a colleague's module: without it there is nothing to check against.
pytest.importorskip("llm.mock_provider")

ROOT = Path(__file__).resolve().parents[2]
KEY = ProviderKey(id=1, secret="sk-conformance-0001")
PREFIXES = {
    "openai": ("/openai/v1", "gpt-4o-mini"),
    "openai-compatible": ("/compatible/v1", "llama3.1"),
    "mistral": ("/mistral/v1", "mistral-large-latest"),
    "azure-openai": ("/azure", "gpt-4o-deployment"),
    "anthropic": ("/anthropic", "claude-sonnet-4-5"),
    "gemini": ("/gemini", "gemini-2.5-flash"),
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CONVERSATION: Json = {
    "model": "conformance-alias",
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_conf01",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_conf01", "content": '{"temp_c": 21}'},
        {"role": "user", "content": "Thanks, and summarise."},
    ],
    "tools": [WEATHER],
    "temperature": 0.2,
    "max_tokens": 64,
    "stop": ["END"],
}
TOOL_CALL: Json = {
    "model": "conformance-alias",
    "messages": [{"role": "user", "content": "Please call tool get_weather for Paris."}],
    "tools": [WEATHER],
    "tool_choice": "required",
}
JSON_OBJECT: Json = {
    "model": "conformance-alias",
    "messages": [{"role": "user", "content": "Give me a JSON object."}],
    "response_format": {"type": "json_object"},
}
JSON_SCHEMA: Json = {
    "model": "conformance-alias",
    "messages": [{"role": "user", "content": "Describe Paris as JSON."}],
    "response_format": {
        "type": "json_schema",
        "json_schema": {
            "name": "city",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "population": {"type": "integer"}},
                "required": ["name", "population"],
                "additionalProperties": False,
            },
        },
    },
}
REQUESTS = {
    "conversation": CONVERSATION,
    "tool_call": TOOL_CALL,
    "json_object": JSON_OBJECT,
    "json_schema": JSON_SCHEMA,
}


CASES = [pytest.param(kind, name) for kind in PROVIDER_KINDS for name in REQUESTS]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "llm.mock_provider", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(url + "/_mock/health", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    stderr = process.stderr.read().decode() if process.stderr else ""
                    pytest.fail(f"the mock provider did not start: {stderr}")
                time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def target_for(kind: str, mock_url: str) -> ModelTarget:
    prefix, model = PREFIXES[kind]
    return ModelTarget(1, 1, kind, mock_url + prefix, model, keys=(KEY,), azure_api_version="2024-10-21")


async def send(request: UpstreamRequest) -> tuple[int, list[tuple[bytes, bytes]], list[bytes]]:
    """One exchange through the gateway's upstream client, the body as the chunks it read."""
    url = urlsplit(request.url)
    host, port = url.hostname or "", url.port or 80
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    head = b"%s %s HTTP/1.1\r\nhost: %s:%d\r\ncontent-length: %d\r\n" % (
        request.method,
        path.encode(),
        host.encode(),
        port,
        len(request.body),
    )
    head += b"".join(name + b": " + value + b"\r\n" for name, value in request.headers) + b"\r\n"

    async def body() -> AsyncIterator[bytes]:
        yield request.body

    pool = UpstreamPool()
    try:
        response = await pool.request(
            ("http", host, port),
            head,
            body(),
            chunked=False,
            head_request=False,
            connect_timeout=2,
            read_timeout=10,
            total_timeout=20,
        )
        chunks = [chunk async for chunk in response.iter_chunks()]
        response.release()
        return response.status, list(response.headers), chunks
    finally:
        pool.close()


def last_verdict(mock_url: str) -> Json:
    with urllib.request.urlopen(mock_url + "/_mock/requests?limit=1", timeout=5) as answer:
        recorded = json.load(answer)["requests"]
    assert recorded, "the mock recorded no request"
    return recorded[-1]


def assert_clean(mock_url: str, kind: str) -> None:
    record = last_verdict(mock_url)
    assert record["kind"] == kind
    assert record["conformance"] == {"ok": True, "problems": []}, record
    assert record["status"] == 200


def openai_events(stream: bytes) -> list[Json]:
    parser = SSEParser()
    events = parser.feed(stream) + parser.close()
    assert events[-1].data == "[DONE]"
    return [orjson.loads(e.data) for e in events[:-1]]


def anthropic_events(stream: bytes) -> list[Json]:
    parser = SSEParser()
    events = [orjson.loads(e.data) for e in parser.feed(stream) + parser.close()]
    return [e for e in events if e.get("type") != "ping"]  # keep-alives, outside the SDK's event union


STREAM_EVENT = pydantic.TypeAdapter(anthropic.types.RawMessageStreamEvent)


@pytest.mark.parametrize(("kind", "name"), CASES)
def test_a_translated_request_is_what_the_provider_documents_and_its_answer_renders_for_both_sdks(mock_url, kind, name):
    adapter = adapter_for(kind)
    target = target_for(kind, mock_url)
    request = REQUESTS[name]
    status, headers, chunks = asyncio.run(send(adapter.chat_request(target, KEY, request, stream=False)))
    assert_clean(mock_url, kind)
    assert status == 200, adapter.error(status, headers, b"".join(chunks)).message
    completion = adapter.chat_response(target, b"".join(chunks))

    choice = completion["choices"][0]
    assert choice["finish_reason"] in ("stop", "length", "tool_calls")
    if name == "tool_call":
        assert choice["finish_reason"] == "tool_calls"
        call = choice["message"]["tool_calls"][0]
        assert call["function"]["name"] == "get_weather" and call["id"]
        assert isinstance(orjson.loads(call["function"]["arguments"]), dict)
    else:
        assert choice["message"]["content"]
    if kind != "openai-compatible" or "usage" in completion:
        usage = completion["usage"]
        assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    openai.types.chat.ChatCompletion.model_validate_json(OPENAI.render_chat(completion, "conformance-alias"))
    anthropic.types.Message.model_validate_json(ANTHROPIC.render_chat(completion, "conformance-alias"))


@pytest.mark.parametrize(("kind", "name"), CASES)
def test_a_translated_stream_request_is_what_the_provider_documents_and_its_stream_renders_for_both_sdks(
    mock_url, kind, name
):
    adapter = adapter_for(kind)
    target = target_for(kind, mock_url)
    request = {**REQUESTS[name], "stream": True, "stream_options": {"include_usage": True}}
    status, headers, chunks = asyncio.run(send(adapter.chat_request(target, KEY, request, stream=True)))
    assert_clean(mock_url, kind)
    assert status == 200, adapter.error(status, headers, b"".join(chunks)).message

    decoder = adapter.stream_decoder(target)
    canonical: list[Json] = []
    for chunk in chunks:  # as the network cut them
        canonical.extend(decoder.feed(chunk))
    canonical.extend(decoder.close())
    finishes = [c["choices"][0]["finish_reason"] for c in canonical if c["choices"][0]["finish_reason"]]
    assert len(finishes) == 1  # one final chunk
    if name == "tool_call":
        assert finishes == ["tool_calls"]
        assert any("tool_calls" in c["choices"][0]["delta"] for c in canonical)
    usage = decoder.usage
    assert isinstance(usage, Usage) and usage.prompt_tokens > 0 and usage.completion_tokens > 0

    encoder = OPENAI.stream_encoder("conformance-alias", request)
    openai_stream = b"".join(encoder.chunk(c) for c in canonical) + encoder.finish(usage)
    parsed = [openai.types.chat.ChatCompletionChunk.model_validate(e) for e in openai_events(openai_stream)]
    assert parsed[-1].usage is not None and parsed[-1].usage.prompt_tokens == usage.prompt_tokens

    encoder = ANTHROPIC.stream_encoder("conformance-alias", request)
    anthropic_stream = b"".join(encoder.chunk(c) for c in canonical) + encoder.finish(usage)
    events = [STREAM_EVENT.validate_python(e) for e in anthropic_events(anthropic_stream)]
    assert events[0].type == "message_start" and events[-1].type == "message_stop"


@pytest.mark.parametrize("kind", [k for k in PROVIDER_KINDS if k != "anthropic"])
def test_a_translated_embeddings_request_is_what_the_provider_documents(mock_url, kind):
    adapter = adapter_for(kind)
    target = target_for(kind, mock_url)
    request = {"model": "conformance-alias", "input": ["first text", "second text"]}
    status, headers, chunks = asyncio.run(send(adapter.embeddings_request(target, KEY, request)))
    assert_clean(mock_url, kind)
    assert status == 200, adapter.error(status, headers, b"".join(chunks)).message
    answer = adapter.embeddings_response(target, b"".join(chunks))
    assert [item["index"] for item in answer["data"]] == [0, 1]
    assert all(isinstance(item["embedding"], list) and item["embedding"] for item in answer["data"])


@pytest.mark.parametrize("kind", PROVIDER_KINDS)
def test_a_provider_refusal_of_a_bad_key_translates_to_an_authentication_error(mock_url, kind):
    adapter = adapter_for(kind)
    target = target_for(kind, mock_url)
    bad_key = ProviderKey(id=2, secret="sk-invalid-key")
    status, headers, chunks = asyncio.run(send(adapter.chat_request(target, bad_key, TOOL_CALL, stream=False)))
    assert status != 200
    assert adapter.error(status, headers, b"".join(chunks)).kind == "authentication"
