"""The OpenAI inbound format: strict checks of chat and embeddings bodies, answers and
streams, and errors. The SDK contract tests hand our rendered bytes to the official
``openai`` SDK through its own transport hook (``httpx2.MockTransport``): what the SDK
parses or raises there is what a client of the gateway gets."""

from __future__ import annotations

import asyncio
import base64
import copy
import random
import struct

import httpx2
import openai
import orjson
import pytest

from llm.canonical import InvalidRequest, Usage
from llm.inbound import FORMATS, OPENAI
from llm.inbound.openai_chat import ERRORS

ALIAS = "team-gpt"


# -- helpers -------------------------------------------------------------------------------------


def client(handler, *, max_retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(
        api_key="pk_test",
        base_url="http://gw/v1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        max_retries=max_retries,
    )


def answering(status: int, body: bytes, headers=None, *, seen: list | None = None):
    """A transport handler answering every request with our bytes (and keeping the requests)."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        if seen is not None:
            seen.append(request)
        return httpx2.Response(status, headers=headers or {"content-type": "application/json"}, content=body)

    return handler


def streaming(events: list[bytes], *, asynchronous: bool = False):
    """A handler answering with our SSE bytes, one transport read per encoder output (so
    the SDK sees the stream in the pieces the gateway writes)."""

    async def pieces():
        for event in events:
            yield event

    def handler(request: httpx2.Request) -> httpx2.Response:
        content = pieces() if asynchronous else iter(events)
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=content)

    return handler


def completion(content="Hello!", tool_calls=None, finish_reason="stop", usage=None) -> dict:
    message = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-upstream1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
        "usage": usage if usage is not None else Usage(20, 5, cached_tokens=8).to_openai(),
    }


def chunk(delta: dict, finish_reason=None, usage=None) -> dict:
    c = {
        "id": "chatcmpl-upstream1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    if usage is not None:
        c["usage"] = usage
    return c


def body(**fields) -> bytes:
    base = {"model": ALIAS, "messages": [{"role": "user", "content": "Hi"}]}
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not ...})


def refused(raw: bytes) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        OPENAI.parse_chat(raw)
    return caught.value


def encode_stream(chunks: list[dict], request: dict, usage: Usage | None) -> list[bytes]:
    encoder = OPENAI.stream_encoder(ALIAS, request)
    return [encoder.chunk(c) for c in chunks] + [encoder.finish(usage)]


def sse_data(raw: bytes) -> list[str]:
    return [line.removeprefix("data: ") for line in raw.decode().split("\n\n") if line]


# -- parsing valid bodies ------------------------------------------------------------------------


def test_the_sdks_own_request_with_tools_json_schema_and_history_passes_the_checks():
    seen: list[httpx2.Request] = []
    sdk = client(answering(200, OPENAI.render_chat(completion(), ALIAS), seen=seen))
    sdk.chat.completions.create(
        model=ALIAS,
        messages=[
            {"role": "developer", "content": "Be terse."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this image, and the weather?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "12 C"},
        ],
        tools=[
            {
                "type": "function",
                "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}, "strict": True},
            }
        ],
        tool_choice={"type": "function", "function": {"name": "weather"}},
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": {"type": "object"}, "strict": True},
        },
        temperature=0.2,
        top_p=1,
        max_completion_tokens=300,
        stop=["END"],
        seed=7,
        user="u-1",
        parallel_tool_calls=False,
        n=1,
    )
    request = OPENAI.parse_chat(seen[0].content)
    assert request["model"] == ALIAS
    assert request["stream"] is False
    assert request["max_completion_tokens"] == 300
    assert request["messages"][3] == {"role": "tool", "tool_call_id": "call_1", "content": "12 C"}


def test_unknown_fields_are_passed_through_untouched():
    request = OPENAI.parse_chat(body(reasoning_effort="low", metadata={"a": "b"}, store=False))
    assert request["reasoning_effort"] == "low"
    assert request["metadata"] == {"a": "b"}


def test_an_integral_float_token_limit_is_accepted_as_an_integer():
    assert OPENAI.parse_chat(body(max_tokens=5.0))["max_tokens"] == 5


def test_null_optional_fields_mean_default():
    request = OPENAI.parse_chat(body(temperature=None, n=None, stop=None, tools=None, stream=None))
    assert request["stream"] is False


def test_stream_options_are_kept_for_the_encoder():
    request = OPENAI.parse_chat(body(stream=True, stream_options={"include_usage": True}))
    assert request["stream"] is True
    assert request["stream_options"] == {"include_usage": True}


# -- refusing hostile bodies ---------------------------------------------------------------------

HOSTILE = [
    ("not json", b"{model", None),
    ("empty body", b"", None),
    ("invalid utf-8", b'{"model": "\xff"}', None),
    ("a raw NUL byte", b'{"model": "a\x00b"}', None),
    ("a JSON array", b'[{"model": "x"}]', None),
    ("a JSON string", b'"hello"', None),
    ("JSON null", b"null", None),
    ("nesting 2000 deep", b"[" * 2000 + b"]" * 2000, None),
    ("NaN", b'{"model": "a", "messages": [], "temperature": NaN}', None),
    ("model missing", orjson.dumps({"messages": [{"role": "user", "content": "x"}]}), "model"),
    ("model not a string", body(model=42), "model"),
    ("model empty", body(model=""), "model"),
    ("model with NUL", body(model="gpt\x00"), "model"),
    ("model with a newline", body(model="gpt\r\nX-Injected: 1"), "model"),
    ("model 10 000 characters", body(model="m" * 10_000), "model"),
    ("messages missing", orjson.dumps({"model": ALIAS}), "messages"),
    ("messages empty", body(messages=[]), "messages"),
    ("messages an object", body(messages={"role": "user"}), "messages"),
    ("message a string", body(messages=["hi"]), "messages[0]"),
    ("role missing", body(messages=[{"content": "x"}]), "messages[0].role"),
    ("role unknown", body(messages=[{"role": "root", "content": "x"}]), "messages[0].role"),
    ("role not a string", body(messages=[{"role": ["user"], "content": "x"}]), "messages[0].role"),
    (
        "deprecated function role",
        body(messages=[{"role": "function", "name": "f", "content": "x"}]),
        "messages[0].role",
    ),
    ("user content missing", body(messages=[{"role": "user"}]), "messages[0].content"),
    ("user content a number", body(messages=[{"role": "user", "content": 5}]), "messages[0].content"),
    ("user content empty parts", body(messages=[{"role": "user", "content": []}]), "messages[0].content"),
    (
        "part type unknown",
        body(messages=[{"role": "user", "content": [{"type": "video"}]}]),
        "messages[0].content[0].type",
    ),
    (
        "text part without text",
        body(messages=[{"role": "user", "content": [{"type": "text"}]}]),
        "messages[0].content[0].text",
    ),
    (
        "image part without url",
        body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]),
        "messages[0].content[0].image_url.url",
    ),
    (
        "image detail unknown",
        body(
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x", "detail": "max"}}]}]
        ),
        "messages[0].content[0].image_url.detail",
    ),
    ("NUL in content", body(messages=[{"role": "user", "content": "a\x00b"}]), "messages[0].content"),
    (
        "system with an image",
        body(messages=[{"role": "system", "content": [{"type": "image_url"}]}]),
        "messages[0].content[0].type",
    ),
    ("name with NUL", body(messages=[{"role": "user", "content": "x", "name": "a\x00"}]), "messages[0].name"),
    (
        "tool message first",
        body(messages=[{"role": "tool", "tool_call_id": "c1", "content": "x"}]),
        "messages[0].tool_call_id",
    ),
    (
        "tool message after a user message",
        body(
            messages=[
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                },
                {"role": "user", "content": "x"},
                {"role": "tool", "tool_call_id": "c1", "content": "x"},
            ]
        ),
        "messages[2].tool_call_id",
    ),
    (
        "tool message answering an unknown call",
        body(
            messages=[
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                },
                {"role": "tool", "tool_call_id": "c2", "content": "x"},
            ]
        ),
        "messages[1].tool_call_id",
    ),
    ("tool message without id", body(messages=[{"role": "tool", "content": "x"}]), "messages[0].tool_call_id"),
    ("assistant with nothing", body(messages=[{"role": "assistant"}]), "messages[0].content"),
    (
        "tool_calls not a list",
        body(messages=[{"role": "assistant", "tool_calls": {"id": "c"}}]),
        "messages[0].tool_calls",
    ),
    (
        "tool call without function",
        body(messages=[{"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]}]),
        "messages[0].tool_calls[0].function",
    ),
    (
        "tool call arguments an object",
        body(messages=[{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {}}}]}]),
        "messages[0].tool_calls[0].function.arguments",
    ),
    ("temperature above 2", body(temperature=2.5), "temperature"),
    ("temperature negative", body(temperature=-0.1), "temperature"),
    ("temperature a string", body(temperature="1"), "temperature"),
    ("temperature a boolean", body(temperature=True), "temperature"),
    (
        "temperature huge",
        b'{"model":"a","messages":[{"role":"user","content":"x"}],"temperature":1e308}',
        "temperature",
    ),
    ("temperature infinite", b'{"model":"a","messages":[{"role":"user","content":"x"}],"temperature":1e999}', None),
    ("top_p above 1", body(top_p=1.5), "top_p"),
    ("n zero", body(n=0), "n"),
    ("max_tokens zero", body(max_tokens=0), "max_tokens"),
    ("max_tokens negative", body(max_tokens=-5), "max_tokens"),
    ("max_tokens fractional", body(max_tokens=1.5), "max_tokens"),
    ("max_tokens a string", body(max_tokens="100"), "max_tokens"),
    ("max_tokens a boolean", body(max_tokens=True), "max_tokens"),
    ("max_tokens beyond 2^31", body(max_tokens=2**40), "max_tokens"),
    (
        "max_tokens beyond 64 bits",
        b'{"model":"a","messages":[{"role":"user","content":"x"}],"max_tokens":1' + b"0" * 40 + b"}",
        "max_tokens",
    ),
    ("max_completion_tokens zero", body(max_completion_tokens=0), "max_completion_tokens"),
    ("presence_penalty out of range", body(presence_penalty=3), "presence_penalty"),
    ("logit_bias out of range", body(logit_bias={"50256": -101}), "logit_bias.50256"),
    ("top_logprobs too many", body(top_logprobs=21), "top_logprobs"),
    ("stop a number", body(stop=5), "stop"),
    ("stop list with a number", body(stop=["a", 5]), "stop[1]"),
    ("seed fractional", body(seed=1.5), "seed"),
    ("user with NUL", body(user="u\x00"), "user"),
    ("stream a string", body(stream="yes"), "stream"),
    ("stream_options without stream", body(stream_options={"include_usage": True}), "stream_options"),
    (
        "include_usage a string",
        body(stream=True, stream_options={"include_usage": "yes"}),
        "stream_options.include_usage",
    ),
    ("tools an object", body(tools={"type": "function"}), "tools"),
    ("tool type unknown", body(tools=[{"type": "web_search"}]), "tools[0].type"),
    ("tool without function", body(tools=[{"type": "function"}]), "tools[0].function"),
    (
        "tool name with spaces",
        body(tools=[{"type": "function", "function": {"name": "get weather"}}]),
        "tools[0].function.name",
    ),
    (
        "tool parameters a string",
        body(tools=[{"type": "function", "function": {"name": "f", "parameters": "{}"}}]),
        "tools[0].function.parameters",
    ),
    ("tool_choice unknown", body(tool_choice="always"), "tool_choice"),
    ("tool_choice required without tools", body(tool_choice="required"), "tool_choice"),
    (
        "tool_choice naming a missing function",
        body(
            tools=[{"type": "function", "function": {"name": "f"}}],
            tool_choice={"type": "function", "function": {"name": "g"}},
        ),
        "tool_choice",
    ),
    ("parallel_tool_calls a string", body(parallel_tool_calls="no"), "parallel_tool_calls"),
    ("response_format unknown", body(response_format={"type": "xml"}), "response_format.type"),
    ("response_format a string", body(response_format="json"), "response_format"),
    ("json_schema missing", body(response_format={"type": "json_schema"}), "response_format.json_schema"),
    (
        "json_schema without name",
        body(response_format={"type": "json_schema", "json_schema": {"schema": {}}}),
        "response_format.json_schema.name",
    ),
    (
        "json_schema schema a list",
        body(response_format={"type": "json_schema", "json_schema": {"name": "a", "schema": []}}),
        "response_format.json_schema.schema",
    ),
]


@pytest.mark.parametrize(("raw", "param"), [(raw, param) for _, raw, param in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_a_hostile_chat_body_is_a_clear_invalid_request_naming_the_parameter(raw, param):
    error = refused(raw)
    assert error.param == param
    assert error.message


def test_n_above_one_is_refused_saying_only_one_choice_is_supported():
    error = refused(body(n=3))
    assert error.param == "n"
    assert "n=1" in error.message


def test_the_refusal_of_an_invalid_body_is_a_400_the_sdk_raises_as_bad_request_with_the_param():
    refusal = OPENAI.invalid(refused(body(temperature=9)))
    assert refusal.status == 400
    with pytest.raises(openai.BadRequestError) as caught:
        client(answering(refusal.status, refusal.body)).chat.completions.create(
            model=ALIAS, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.param == "temperature"
    assert caught.value.type == "invalid_request_error"
    assert "temperature" in caught.value.message


# -- answers ---------------------------------------------------------------------------------------


def test_the_answer_names_the_alias_never_the_upstream_model():
    answer = orjson.loads(OPENAI.render_chat(completion(), ALIAS))
    assert answer["model"] == ALIAS
    assert answer["id"] == "chatcmpl-upstream1"


def test_the_sdk_parses_our_answer_with_content_and_usage():
    sdk = client(answering(200, OPENAI.render_chat(completion(), ALIAS)))
    answer = sdk.chat.completions.create(model=ALIAS, messages=[{"role": "user", "content": "Hi"}])
    assert answer.model == ALIAS
    assert answer.choices[0].message.content == "Hello!"
    assert answer.choices[0].finish_reason == "stop"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (20, 5, 25)
    assert answer.usage.prompt_tokens_details.cached_tokens == 8


def test_the_sdk_parses_our_answer_with_tool_calls():
    calls = [
        {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}},
        {"id": "call_b", "type": "function", "function": {"name": "time", "arguments": "{}"}},
    ]
    sdk = client(answering(200, OPENAI.render_chat(completion(None, calls, "tool_calls"), ALIAS)))
    message = sdk.chat.completions.create(model=ALIAS, messages=[{"role": "user", "content": "Hi"}]).choices[0]
    assert message.finish_reason == "tool_calls"
    assert [(c.id, c.function.name, c.function.arguments) for c in message.message.tool_calls] == [
        ("call_a", "weather", '{"city": "Oslo"}'),
        ("call_b", "time", "{}"),
    ]


def test_the_sdks_json_schema_parse_helper_reads_our_answer():
    sdk = client(answering(200, OPENAI.render_chat(completion('{"city": "Oslo", "temp": 12}'), ALIAS)))
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "temp": {"type": "integer"}},
        "required": ["city", "temp"],
        "additionalProperties": False,
    }
    answer = sdk.chat.completions.create(
        model=ALIAS,
        messages=[{"role": "user", "content": "Hi"}],
        response_format={"type": "json_schema", "json_schema": {"name": "w", "schema": schema, "strict": True}},
    )
    assert orjson.loads(answer.choices[0].message.content) == {"city": "Oslo", "temp": 12}


# -- streams ---------------------------------------------------------------------------------------

TEXT_CHUNKS = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hel"}),
    chunk({"content": "lo!"}),
    chunk({}, finish_reason="stop"),
]


def test_a_stream_names_the_alias_and_ends_with_done_without_usage_when_not_asked():
    out = b"".join(encode_stream(TEXT_CHUNKS, {"stream": True}, Usage(20, 5)))
    events = sse_data(out)
    assert events[-1] == "[DONE]"
    parsed = [orjson.loads(e) for e in events[:-1]]
    assert len(parsed) == 4
    assert {p["model"] for p in parsed} == {ALIAS}
    assert all("usage" not in p for p in parsed)


def test_upstream_usage_is_stripped_when_the_client_did_not_ask():
    chunks = [*TEXT_CHUNKS, {**chunk({}), "choices": [], "usage": Usage(20, 5).to_openai()}]
    encoder = OPENAI.stream_encoder(ALIAS, {"stream": True})
    assert encoder.chunk(chunks[-1]) == b""  # the usage-only chunk disappears
    with_usage = encoder.chunk(chunk({"content": "x"}, usage=Usage(1, 1).to_openai()))
    assert "usage" not in orjson.loads(sse_data(with_usage)[0])


def test_usage_leaves_once_in_the_last_chunk_when_the_client_asked():
    request = {"stream": True, "stream_options": {"include_usage": True}}
    upstream_usage_chunk = {**chunk({}), "choices": [], "usage": Usage(20, 5).to_openai()}
    out = b"".join(encode_stream([*TEXT_CHUNKS, upstream_usage_chunk], request, Usage(20, 5, cached_tokens=3)))
    events = sse_data(out)
    assert events[-1] == "[DONE]"
    parsed = [orjson.loads(e) for e in events[:-1]]
    assert [p["usage"] for p in parsed[:-1]] == [None] * 4
    assert parsed[-1]["choices"] == []
    assert parsed[-1]["usage"]["total_tokens"] == 25
    assert parsed[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] == 3
    assert len({p["id"] for p in parsed}) == 1


def test_a_stream_without_ids_gets_one_id_for_every_chunk():
    bare = [
        {"choices": [{"index": 0, "delta": {"content": "a"}}]},
        {"choices": [{"index": 0, "delta": {"content": "b"}}]},
    ]
    out = b"".join(encode_stream(bare, {"stream": True, "stream_options": {"include_usage": True}}, None))
    parsed = [orjson.loads(e) for e in sse_data(out)[:-1]]
    assert len({p["id"] for p in parsed}) == 1
    assert parsed[0]["id"].startswith("chatcmpl-")
    assert parsed[-1]["usage"] is None  # asked, but nobody counted: unknown, not zero


def test_the_sdk_reads_our_stream_text_and_usage():
    request = {"stream": True, "stream_options": {"include_usage": True}}
    sdk = client(streaming(encode_stream(TEXT_CHUNKS, request, Usage(20, 5, cached_tokens=8))))
    received = list(
        sdk.chat.completions.create(
            model=ALIAS,
            messages=[{"role": "user", "content": "Hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in received if c.choices) == "Hello!"
    assert [c.choices[0].finish_reason for c in received if c.choices][-1] == "stop"
    assert received[-1].usage.total_tokens == 25
    assert received[-1].usage.prompt_tokens_details.cached_tokens == 8
    assert {c.model for c in received} == {ALIAS}


def test_the_sdks_stream_helper_accumulates_our_tool_call_deltas():
    chunks = [
        chunk(
            {
                "role": "assistant",
                "tool_calls": [
                    {"index": 0, "id": "call_a", "type": "function", "function": {"name": "weather", "arguments": ""}}
                ],
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city"'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ': "Oslo"}'}}]}),
        chunk(
            {
                "tool_calls": [
                    {"index": 1, "id": "call_b", "type": "function", "function": {"name": "time", "arguments": "{}"}}
                ]
            }
        ),
        chunk({}, finish_reason="tool_calls"),
    ]
    sdk = client(streaming(encode_stream(chunks, {"stream": True}, None)))
    tools = [
        {"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}}},
        {"type": "function", "function": {"name": "time", "parameters": {"type": "object", "properties": {}}}},
    ]
    with sdk.chat.completions.stream(model=ALIAS, messages=[{"role": "user", "content": "Hi"}], tools=tools) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("call_a", "weather", '{"city": "Oslo"}'),
        ("call_b", "time", "{}"),
    ]
    assert final.choices[0].finish_reason == "tool_calls"


def test_an_error_mid_stream_makes_the_sdk_raise_after_the_content_so_far():
    encoder = OPENAI.stream_encoder(ALIAS, {"stream": True})
    events = [encoder.chunk(c) for c in TEXT_CHUNKS[:2]] + [encoder.error("server", "The upstream stream broke off.")]
    assert b"[DONE]" not in b"".join(events)
    received = []
    with pytest.raises(openai.APIError) as caught:
        for c in client(streaming(events)).chat.completions.create(
            model=ALIAS, messages=[{"role": "user", "content": "Hi"}], stream=True
        ):
            received.append(c.choices[0].delta.content)
    assert received == ["", "Hel"]
    assert caught.value.message == "The upstream stream broke off."
    assert caught.value.type == "server_error"


def test_the_async_sdk_reads_our_stream_and_raises_on_our_error_event():
    encoder = OPENAI.stream_encoder(ALIAS, {"stream": True})
    good = encode_stream(TEXT_CHUNKS, {"stream": True}, None)
    broken = [encoder.chunk(TEXT_CHUNKS[1]), encoder.error("timeout", "No answer in time.")]

    async def read(events):
        sdk = openai.AsyncOpenAI(
            api_key="pk_test",
            base_url="http://gw/v1",
            http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(streaming(events, asynchronous=True))),
            max_retries=0,
        )
        text = ""
        async for c in await sdk.chat.completions.create(
            model=ALIAS, messages=[{"role": "user", "content": "x"}], stream=True
        ):
            text += c.choices[0].delta.content or ""
        return text

    assert asyncio.run(read(good)) == "Hello!"
    with pytest.raises(openai.APIError, match="No answer in time"):
        asyncio.run(read(broken))


# -- errors ----------------------------------------------------------------------------------------

SDK_CLASSES = [
    ("invalid_request", 400, openai.BadRequestError),
    ("authentication", 401, openai.AuthenticationError),
    ("permission", 403, openai.PermissionDeniedError),
    ("not_found", 404, openai.NotFoundError),
    ("rate_limited", 429, openai.RateLimitError),
    ("context_length", 400, openai.BadRequestError),
    ("overloaded", 503, openai.InternalServerError),
    ("server", 502, openai.InternalServerError),
    ("timeout", 504, openai.InternalServerError),
    ("connection", 502, openai.InternalServerError),
    ("internal", 500, openai.InternalServerError),
    ("request_too_large", 413, openai.APIStatusError),
]


@pytest.mark.parametrize(("kind", "status", "exception"), SDK_CLASSES, ids=[c[0] for c in SDK_CLASSES])
def test_each_error_kind_has_the_status_the_sdk_raises_as_its_class(kind, status, exception):
    assert OPENAI.error_status(kind) == status
    sdk = client(answering(status, OPENAI.error_body(kind, f"{kind} happened", param="model")))
    with pytest.raises(exception) as caught:
        sdk.chat.completions.create(model=ALIAS, messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == status
    assert caught.value.message == f"Error code: {status} - {kind} happened"
    assert caught.value.body["message"] == f"{kind} happened"
    assert caught.value.param == "model"
    assert caught.value.body["type"] == ERRORS[kind][1]


def test_every_canonical_error_kind_has_an_openai_status():
    from llm.canonical import ERROR_KINDS

    assert set(ERROR_KINDS) <= set(ERRORS)
    assert OPENAI.error_status("something new") == 500


def test_a_context_length_error_carries_openais_code():
    sdk = client(answering(400, OPENAI.error_body("context_length", "Too long.")))
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model=ALIAS, messages=[{"role": "user", "content": "x"}])
    assert caught.value.code == "context_length_exceeded"


def test_an_exhausted_budget_tells_the_sdk_not_to_retry():
    refusal = OPENAI.refusal("rate_limited", "Monthly budget exhausted.", code="budget_exceeded", should_retry=False)
    seen: list[httpx2.Request] = []
    headers = {k.decode(): v.decode() for k, v in refusal.headers}
    sdk = client(answering(refusal.status, refusal.body, headers, seen=seen), max_retries=3)
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(model=ALIAS, messages=[{"role": "user", "content": "x"}])
    assert len(seen) == 1  # no retry
    assert caught.value.code == "budget_exceeded"
    assert headers["x-should-retry"] == "false"


def test_a_token_rate_refusal_says_when_to_come_back_and_carries_the_request_id():
    refusal = OPENAI.refusal(
        "rate_limited", "Token rate exceeded.", code="tokens_per_minute", retry_after=12.2, request_id="req-1"
    )
    headers = dict(refusal.headers)
    assert refusal.status == 429
    assert headers[b"retry-after"] == b"13"
    assert headers[b"content-type"] == b"application/json"
    sdk = client(answering(refusal.status, refusal.body, {k.decode(): v.decode() for k, v in refusal.headers}))
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.with_options(max_retries=0).chat.completions.create(
            model=ALIAS, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.request_id == "req-1"


def test_the_formats_are_registered_by_name():
    assert FORMATS["openai"] is OPENAI
    assert OPENAI.name == "openai"


# -- embeddings ------------------------------------------------------------------------------------

VECTORS = [[0.5, -1.25, 3.0], [0.0, 1e-3, -2.5]]


def embeddings_answer(vectors) -> dict:
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": vec} for i, vec in enumerate(vectors)],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 6, "total_tokens": 6},
    }


def embeddings_gateway(upstream_vectors):
    """A handler doing what the gateway does: parse the SDK's body, render the answer."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        parsed = OPENAI.parse_embeddings(request.content)
        rendered = OPENAI.render_embeddings(embeddings_answer(upstream_vectors), ALIAS, parsed)
        return httpx2.Response(200, headers={"content-type": "application/json"}, content=rendered)

    return handler


def test_the_sdks_default_base64_embeddings_decode_to_our_vectors():
    answer = client(embeddings_gateway(VECTORS)).embeddings.create(model=ALIAS, input=["a", "b"])
    assert answer.model == ALIAS
    assert [d.embedding for d in answer.data] == [pytest.approx(v, rel=1e-6) for v in VECTORS]
    assert answer.usage.prompt_tokens == 6


def test_base64_embeddings_are_little_endian_float32():
    rendered = orjson.loads(
        OPENAI.render_embeddings(embeddings_answer([[1.0, -2.0]]), ALIAS, {"encoding_format": "base64"})
    )
    raw = base64.b64decode(rendered["data"][0]["embedding"])
    assert struct.unpack("<2f", raw) == (1.0, -2.0)


def test_float_embeddings_are_floats_even_when_the_upstream_sent_base64():
    upstream = [base64.b64encode(struct.pack("<3f", *v)).decode() for v in VECTORS]
    answer = client(embeddings_gateway(upstream)).embeddings.create(model=ALIAS, input="a", encoding_format="float")
    assert [d.embedding for d in answer.data] == [pytest.approx(v, rel=1e-6) for v in VECTORS]


def test_token_array_inputs_are_accepted():
    for value in ([1, 2, 3], [[1, 2], [3]]):
        assert OPENAI.parse_embeddings(orjson.dumps({"model": ALIAS, "input": value}))["input"] == value


EMBEDDING_HOSTILE = [
    ("not json", b"nope", None),
    ("an array", b"[]", None),
    ("model missing", orjson.dumps({"input": "x"}), "model"),
    ("input missing", orjson.dumps({"model": ALIAS}), "input"),
    ("input empty string", orjson.dumps({"model": ALIAS, "input": ""}), "input"),
    ("input empty list", orjson.dumps({"model": ALIAS, "input": []}), "input"),
    ("input a number", orjson.dumps({"model": ALIAS, "input": 5}), "input"),
    ("input strings and numbers", orjson.dumps({"model": ALIAS, "input": ["a", 1]}), "input[1]"),
    ("input with NUL", orjson.dumps({"model": ALIAS, "input": ["a\x00"]}), "input[0]"),
    ("negative token", orjson.dumps({"model": ALIAS, "input": [1, -1]}), "input[1]"),
    ("token a float", orjson.dumps({"model": ALIAS, "input": [[1, 2.5]]}), "input[0][1]"),
    ("empty token list", orjson.dumps({"model": ALIAS, "input": [[]]}), "input[0]"),
    ("encoding unknown", orjson.dumps({"model": ALIAS, "input": "x", "encoding_format": "int8"}), "encoding_format"),
    ("dimensions zero", orjson.dumps({"model": ALIAS, "input": "x", "dimensions": 0}), "dimensions"),
]


@pytest.mark.parametrize(
    ("raw", "param"), [(r, p) for _, r, p in EMBEDDING_HOSTILE], ids=[c[0] for c in EMBEDDING_HOSTILE]
)
def test_a_hostile_embeddings_body_is_a_clear_invalid_request(raw, param):
    with pytest.raises(InvalidRequest) as caught:
        OPENAI.parse_embeddings(raw)
    assert caught.value.param == param


def test_a_malformed_upstream_embedding_is_a_server_error_not_a_crash():
    from llm.canonical import ProviderError

    with pytest.raises(ProviderError) as caught:
        OPENAI.render_embeddings(embeddings_answer([["a", "b"]]), ALIAS, {"encoding_format": "base64"})
    assert caught.value.kind == "server"


# -- models ----------------------------------------------------------------------------------------


def test_the_sdk_lists_our_models():
    sdk = client(answering(200, OPENAI.render_models(["team-gpt", "team-embed"], created=1_700_000_000)))
    models = list(sdk.models.list())
    assert [(m.id, m.object, m.created) for m in models] == [
        ("team-gpt", "model", 1_700_000_000),
        ("team-embed", "model", 1_700_000_000),
    ]


def test_an_empty_model_list_is_a_valid_page():
    assert list(client(answering(200, OPENAI.render_models([]))).models.list()) == []


# -- mutation sweep ------------------------------------------------------------------------------

ODD_VALUES = [None, True, 0, -1, 1.5, 2**63 - 1, 1e300, "", "\x00", "a" * 300, [], [None], [{}], {}, {"type": None}]


def mutations(valid: dict, count: int, seed: int):
    """``count`` bodies, each ``valid`` with up to three parts replaced by odd values or removed."""
    rnd = random.Random(seed)

    def paths(node, path=()):
        yield path
        children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in children:
            yield from paths(child, (*path, key))

    for _ in range(count):
        body = copy.deepcopy(valid)
        for _ in range(rnd.randint(1, 3)):
            *parents, last = rnd.choice(list(paths(body))[1:])
            try:
                node = body
                for key in parents:
                    node = node[key]
                if isinstance(node, dict) and rnd.random() < 0.2:
                    del node[last]
                else:
                    node[last] = copy.deepcopy(rnd.choice(ODD_VALUES))
            except (KeyError, IndexError, TypeError):
                continue  # an earlier replacement removed that path
        yield orjson.dumps(body)


def test_no_mutation_of_a_valid_body_crashes_the_parser():
    valid = {
        "model": ALIAS,
        "messages": [
            {"role": "system", "content": "s"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "u"}}],
            },
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c", "content": "r"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "tool_choice": {"type": "function", "function": {"name": "f"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {}}},
        "stream": True,
        "stream_options": {"include_usage": True},
        "stop": ["x"],
    }
    refusals = 0
    for raw in mutations(valid, 1500, seed=11):
        try:
            orjson.dumps(OPENAI.parse_chat(raw))
        except InvalidRequest as refused_body:
            assert refused_body.message
            refusals += 1
    assert refusals > 1000  # the sweep does reach the checks
