"""The Anthropic Messages inbound format: translation of ``/v1/messages`` bodies to the
canonical request, of canonical answers and streams back to Anthropic's shapes, and
errors. The SDK contract tests hand our rendered bytes to the official ``anthropic`` SDK
through its own transport hook (``httpx2.MockTransport``)."""

from __future__ import annotations

import copy
import random

import anthropic
import httpx2
import orjson
import pydantic
import pytest

from llm.canonical import ERROR_KINDS, InvalidRequest, Usage
from llm.inbound import ANTHROPIC, FORMATS
from llm.inbound.anthropic_messages import ERRORS

ALIAS = "team-claude"
USER = [{"role": "user", "content": "Hi"}]


# -- helpers -------------------------------------------------------------------------------------


def client(handler, *, max_retries: int = 0) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key="pk_test",
        base_url="http://gw",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        max_retries=max_retries,
    )


def answering(status: int, body: bytes, headers=None, *, seen: list | None = None):
    def handler(request: httpx2.Request) -> httpx2.Response:
        if seen is not None:
            seen.append(request)
        return httpx2.Response(status, headers=headers or {"content-type": "application/json"}, content=body)

    return handler


def streaming(events: list[bytes]):
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=iter(events))

    return handler


def completion(content="Hello!", tool_calls=None, finish_reason="stop", usage=None, **choice_extra) -> dict:
    message = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gemini-2.0-flash",
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, **choice_extra}],
        "usage": usage if usage is not None else Usage(100, 7, cached_tokens=60).to_openai(),
    }


def chunk(delta: dict, finish_reason=None, **choice_extra) -> dict:
    return {
        "id": "chatcmpl-abc123",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, **choice_extra}],
    }


def body(**fields) -> bytes:
    base = {"model": ALIAS, "max_tokens": 256, "messages": USER}
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not ...})


def refused(raw: bytes) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        ANTHROPIC.parse_chat(raw)
    return caught.value


def events_of(raw: bytes) -> list[tuple[str, dict]]:
    out = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        name_line, data_line = block.split("\n")
        out.append((name_line.removeprefix("event: "), orjson.loads(data_line.removeprefix("data: "))))
    return out


def encode(chunks: list[dict], usage: Usage | None, *, input_tokens=None) -> list[bytes]:
    encoder = ANTHROPIC.stream_encoder(ALIAS, {"stream": True}, input_tokens=input_tokens)
    return [encoder.chunk(c) for c in chunks] + [encoder.finish(usage)]


# -- requests --------------------------------------------------------------------------------------


def test_the_sdks_request_with_system_tools_and_tool_history_becomes_the_canonical_request():
    seen: list[httpx2.Request] = []
    sdk = client(answering(200, ANTHROPIC.render_chat(completion(), ALIAS), seen=seen))
    sdk.messages.create(
        model=ALIAS,
        max_tokens=512,
        system=[{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Answer in English."}],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather in Oslo? Here is a map:"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Use the tool.", "signature": "sig"},
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "toolu_01", "name": "weather", "input": {"city": "Oslo"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01", "content": [{"type": "text", "text": "12 C"}]},
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
        tools=[
            {
                "name": "weather",
                "description": "Current weather",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        ],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
        stop_sequences=["END", "STOP"],
        metadata={"user_id": "user-7"},
        output_config={"format": {"type": "json_schema", "schema": {"type": "object"}}},
        # The current SDK no longer offers these; older clients send them.
        extra_body={"temperature": 0.5, "top_p": 0.9, "top_k": 40},
    )
    request = ANTHROPIC.parse_chat(seen[0].content)
    assert request["model"] == ALIAS
    assert request["max_tokens"] == 512
    assert request["stream"] is False
    assert request["messages"] == [
        {"role": "system", "content": "You are terse.\nAnswer in English."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather in Oslo? Here is a map:"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        },
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {"id": "toolu_01", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01", "content": "12 C"},
        {"role": "user", "content": "And tomorrow?"},
    ]
    assert request["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Current weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    assert request["tool_choice"] == "required"
    assert request["parallel_tool_calls"] is False
    assert request["stop"] == ["END", "STOP"]
    assert (request["temperature"], request["top_p"], request["top_k"]) == (0.5, 0.9, 40)
    assert request["user"] == "user-7"
    assert request["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": {"type": "object"}, "strict": True},
    }


@pytest.mark.parametrize(
    ("choice", "canonical"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "none"}, "none"),
        ({"type": "any"}, "required"),
        ({"type": "tool", "name": "f"}, {"type": "function", "function": {"name": "f"}}),
    ],
)
def test_tool_choice_maps_to_openais(choice, canonical):
    tools = [{"name": "f", "input_schema": {"type": "object"}}]
    assert ANTHROPIC.parse_chat(body(tools=tools, tool_choice=choice))["tool_choice"] == canonical


def test_a_streamed_request_asks_for_usage_since_anthropics_stream_always_reports_it():
    request = ANTHROPIC.parse_chat(body(stream=True))
    assert request["stream"] is True
    assert request["stream_options"] == {"include_usage": True}


def test_a_string_system_prompt_and_a_failed_tool_result_translate():
    request = ANTHROPIC.parse_chat(
        body(
            system="Be kind.",
            messages=[
                {"role": "user", "content": "Go"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]},
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "boom", "is_error": True}],
                },
            ],
            tools=[{"name": "f", "input_schema": {"type": "object"}}],
        )
    )
    assert request["messages"][0] == {"role": "system", "content": "Be kind."}
    assert request["messages"][2]["content"] is None
    assert request["messages"][3] == {"role": "tool", "tool_call_id": "t1", "content": "Error: boom"}


def test_fields_without_canonical_meaning_are_ignored():
    request = ANTHROPIC.parse_chat(body(thinking={"type": "enabled", "budget_tokens": 1024}, service_tier="auto"))
    assert "thinking" not in request
    assert "service_tier" not in request


TOOL_USE_TURN = {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {}}]}

HOSTILE = [
    ("not json", b"{", None),
    ("a JSON array", b"[]", None),
    ("a raw NUL byte", b'{"model": "\x00"}', None),
    ("max_tokens missing", orjson.dumps({"model": ALIAS, "messages": USER}), "max_tokens"),
    ("max_tokens zero", body(max_tokens=0), "max_tokens"),
    ("max_tokens a string", body(max_tokens="100"), "max_tokens"),
    ("max_tokens huge", body(max_tokens=2**62), "max_tokens"),
    ("model missing", orjson.dumps({"max_tokens": 5, "messages": USER}), "model"),
    ("model a list", body(model=["a"]), "model"),
    ("messages missing", orjson.dumps({"model": ALIAS, "max_tokens": 5}), "messages"),
    ("messages empty", body(messages=[]), "messages"),
    ("system role in messages", body(messages=[{"role": "system", "content": "x"}]), "messages[0].role"),
    ("tool role in messages", body(messages=[{"role": "tool", "content": "x"}]), "messages[0].role"),
    ("content missing", body(messages=[{"role": "user"}]), "messages[0].content"),
    ("content a number", body(messages=[{"role": "user", "content": 1}]), "messages[0].content"),
    ("content empty blocks", body(messages=[{"role": "user", "content": []}]), "messages[0].content"),
    (
        "block without type",
        body(messages=[{"role": "user", "content": [{"text": "x"}]}]),
        "messages[0].content[0].type",
    ),
    ("NUL in text", body(messages=[{"role": "user", "content": "a\x00"}]), "messages[0].content"),
    (
        "document block",
        body(messages=[{"role": "user", "content": [{"type": "document", "source": {}}]}]),
        "messages[0].content[0].type",
    ),
    (
        "image media type unknown",
        body(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": {"type": "base64", "media_type": "image/tiff", "data": "x"}}
                    ],
                }
            ]
        ),
        "messages[0].content[0].source.media_type",
    ),
    (
        "tool_result without a preceding tool_use",
        body(messages=[{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "x"}]}]),
        "messages[0].content[0].tool_use_id",
    ),
    (
        "tool_result for another id",
        body(
            messages=[
                {"role": "user", "content": "Go"},
                TOOL_USE_TURN,
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t2", "content": "x"}]},
            ]
        ),
        "messages[2].content[0].tool_use_id",
    ),
    (
        "tool_result two turns late",
        body(
            messages=[
                TOOL_USE_TURN,
                {"role": "user", "content": "wait"},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "x"}]},
            ]
        ),
        "messages[2].content[0].tool_use_id",
    ),
    (
        "image inside a tool_result",
        body(
            messages=[
                TOOL_USE_TURN,
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "image", "source": {}}]}
                    ],
                },
            ]
        ),
        "messages[1].content[0].content[0]",
    ),
    (
        "tool_use input a string",
        body(
            messages=[{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "{}"}]}]
        ),
        "messages[0].content[0].input",
    ),
    ("system a number", body(system=5), "system"),
    ("system block not text", body(system=[{"type": "image"}]), "system[0].type"),
    ("temperature above 1", body(temperature=1.5), "temperature"),
    ("top_p negative", body(top_p=-0.5), "top_p"),
    ("top_k zero", body(top_k=0), "top_k"),
    ("stop_sequences with a number", body(stop_sequences=["a", 1]), "stop_sequences[1]"),
    ("stream a string", body(stream="true"), "stream"),
    ("metadata a string", body(metadata="u"), "metadata"),
    ("output format unknown", body(output_config={"format": {"type": "xml"}}), "output_config.format.type"),
    (
        "output format without schema",
        body(output_config={"format": {"type": "json_schema"}}),
        "output_config.format.schema",
    ),
    ("tools an object", body(tools={}), "tools"),
    ("tool without input_schema", body(tools=[{"name": "f"}]), "tools[0].input_schema"),
    ("tool name with spaces", body(tools=[{"name": "get weather", "input_schema": {}}]), "tools[0].name"),
    ("server tool", body(tools=[{"type": "web_search_20250305", "name": "web_search"}]), "tools[0].type"),
    ("tool_choice a string", body(tool_choice="auto"), "tool_choice"),
    ("tool_choice type unknown", body(tool_choice={"type": "all"}), "tool_choice.type"),
    (
        "tool_choice naming a missing tool",
        body(tools=[{"name": "f", "input_schema": {}}], tool_choice={"type": "tool", "name": "g"}),
        "tool_choice.name",
    ),
    ("tool_choice any without tools", body(tool_choice={"type": "any"}), "tool_choice"),
]


@pytest.mark.parametrize(("raw", "param"), [(r, p) for _, r, p in HOSTILE], ids=[c[0] for c in HOSTILE])
def test_a_hostile_messages_body_is_a_clear_invalid_request_naming_the_parameter(raw, param):
    error = refused(raw)
    assert error.param == param
    assert error.message


def test_a_missing_max_tokens_is_a_400_the_sdk_raises_as_bad_request():
    refusal = ANTHROPIC.invalid(refused(orjson.dumps({"model": ALIAS, "messages": USER})))
    assert refusal.status == 400
    with pytest.raises(anthropic.BadRequestError) as caught:
        client(answering(refusal.status, refusal.body)).messages.create(model=ALIAS, max_tokens=5, messages=USER)
    assert caught.value.type == "invalid_request_error"
    assert caught.value.api_message == "max_tokens: Field required"


# -- answers ---------------------------------------------------------------------------------------


def test_the_sdk_parses_our_message_with_text_and_anthropic_usage():
    sdk = client(answering(200, ANTHROPIC.render_chat(completion(), ALIAS)))
    message = sdk.messages.create(model=ALIAS, max_tokens=5, messages=USER)
    assert message.model == ALIAS
    assert message.id == "msg_abc123"
    assert [(b.type, b.text) for b in message.content] == [("text", "Hello!")]
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    # canonical prompt 100 of which 60 cached -> 40 uncached input + 60 cache reads
    assert (message.usage.input_tokens, message.usage.cache_read_input_tokens, message.usage.output_tokens) == (
        40,
        60,
        7,
    )


def test_the_sdk_parses_our_tool_use_blocks_with_their_input():
    calls = [
        {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "time", "arguments": ""}},
    ]
    sdk = client(answering(200, ANTHROPIC.render_chat(completion("Checking.", calls, "tool_calls"), ALIAS)))
    message = sdk.messages.create(model=ALIAS, max_tokens=5, messages=USER)
    assert message.stop_reason == "tool_use"
    assert message.content[0].text == "Checking."
    assert [(b.type, b.id, b.name, b.input) for b in message.content[1:]] == [
        ("tool_use", "call_1", "weather", {"city": "Oslo"}),
        ("tool_use", "call_2", "time", {}),
    ]


def test_the_sdks_structured_output_parse_reads_our_answer():
    class Weather(pydantic.BaseModel):
        city: str
        temp: int

    seen: list[httpx2.Request] = []
    sdk = client(answering(200, ANTHROPIC.render_chat(completion('{"city": "Oslo", "temp": 12}'), ALIAS), seen=seen))
    message = sdk.messages.parse(model=ALIAS, max_tokens=50, messages=USER, output_format=Weather)
    assert message.parsed_output == Weather(city="Oslo", temp=12)
    schema = ANTHROPIC.parse_chat(seen[0].content)["response_format"]["json_schema"]["schema"]
    assert schema["properties"].keys() == {"city", "temp"}


def test_broken_tool_arguments_are_kept_rather_than_lost():
    calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a": '}}]
    message = orjson.loads(ANTHROPIC.render_chat(completion(None, calls, "tool_calls"), ALIAS))
    assert message["content"] == [
        {"type": "tool_use", "id": "c", "name": "f", "input": {"_unparsed_arguments": '{"a": '}}
    ]


@pytest.mark.parametrize(
    ("finish_reason", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
        ("something_new", "end_turn"),
    ],
)
def test_finish_reasons_map_to_anthropic_stop_reasons(finish_reason, stop_reason):
    message = orjson.loads(ANTHROPIC.render_chat(completion(finish_reason=finish_reason), ALIAS))
    assert message["stop_reason"] == stop_reason


def test_a_matched_stop_sequence_reported_upstream_is_stop_sequence():
    sdk = client(answering(200, ANTHROPIC.render_chat(completion(stop_sequence="END"), ALIAS)))
    message = sdk.messages.create(model=ALIAS, max_tokens=5, messages=USER, stop_sequences=["END"])
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "END")


def test_an_answer_without_usage_or_choices_still_renders():
    message = orjson.loads(ANTHROPIC.render_chat({"choices": []}, ALIAS))
    assert message["content"] == []
    assert message["usage"] == {"input_tokens": 0, "output_tokens": 0}
    assert message["id"].startswith("msg_")


# -- streams ---------------------------------------------------------------------------------------

TEXT_THEN_TOOLS = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Let me "}),
    chunk({"content": "check."}),
    chunk(
        {
            "tool_calls": [
                {"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": ""}}
            ]
        }
    ),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
    chunk(
        {
            "tool_calls": [
                {"index": 1, "id": "call_2", "type": "function", "function": {"name": "time", "arguments": "{}"}}
            ]
        }
    ),
    chunk({}, finish_reason="tool_calls"),
]


def test_a_stream_is_exactly_anthropics_event_sequence():
    events = events_of(b"".join(encode(TEXT_THEN_TOOLS, Usage(100, 7, cached_tokens=60), input_tokens=90)))
    assert [name for name, _ in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(data["type"] == name for name, data in events)
    start = events[0][1]["message"]
    assert (start["model"], start["id"], start["usage"]["input_tokens"], start["stop_reason"]) == (
        ALIAS,
        "msg_abc123",
        90,
        None,
    )
    assert [e[1]["index"] for e in events if e[0].startswith("content_block")] == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert events[6][1]["content_block"] == {"type": "tool_use", "id": "call_1", "name": "weather", "input": {}}
    assert events[7][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"city": '}
    assert events[-2][1]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert events[-2][1]["usage"] == {"input_tokens": 40, "cache_read_input_tokens": 60, "output_tokens": 7}


def test_the_sdks_stream_helper_builds_the_final_message_from_our_events():
    sdk = client(streaming(encode(TEXT_THEN_TOOLS, Usage(100, 7, cached_tokens=60))))
    with sdk.messages.stream(model=ALIAS, max_tokens=5, messages=USER) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == "Let me check."
    assert final.model == ALIAS
    assert [b.type for b in final.content] == ["text", "tool_use", "tool_use"]
    assert final.content[0].text == "Let me check."
    assert (final.content[1].id, final.content[1].name, final.content[1].input) == (
        "call_1",
        "weather",
        {"city": "Oslo"},
    )
    assert (final.content[2].name, final.content[2].input) == ("time", {})
    assert final.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens, final.usage.output_tokens) == (40, 60, 7)


def test_a_stream_with_a_stop_sequence_and_no_usage_ends_properly():
    chunks = [chunk({"content": "one two"}), chunk({}, finish_reason="stop", stop_sequence="END")]
    sdk = client(streaming(encode(chunks, None)))
    with sdk.messages.stream(model=ALIAS, max_tokens=5, messages=USER) as stream:
        final = stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", "END")
    assert final.usage.output_tokens == 0


def test_an_empty_stream_still_starts_and_ends_the_message():
    events = events_of(b"".join(encode([], Usage(3, 0))))
    assert [name for name, _ in events] == ["message_start", "ping", "message_delta", "message_stop"]


def test_an_error_mid_stream_is_an_error_event_with_no_message_stop_and_the_sdk_raises():
    encoder = ANTHROPIC.stream_encoder(ALIAS, {"stream": True})
    events = [encoder.chunk(c) for c in TEXT_THEN_TOOLS[:3]] + [encoder.error("overloaded", "Upstream overloaded.")]
    raw = b"".join(events)
    assert b"message_stop" not in raw
    assert events_of(raw)[-1] == (
        "error",
        {"type": "error", "error": {"type": "overloaded_error", "message": "Upstream overloaded."}},
    )
    received = []
    with pytest.raises(anthropic.APIStatusError) as caught:
        for event in client(streaming(events)).messages.create(model=ALIAS, max_tokens=5, messages=USER, stream=True):
            received.append(event.type)
    assert received[0] == "message_start"
    assert "content_block_delta" in received
    assert caught.value.type == "overloaded_error"
    assert caught.value.api_message == "Upstream overloaded."


def test_the_sdks_stream_helper_raises_on_our_error_event_too():
    encoder = ANTHROPIC.stream_encoder(ALIAS, {"stream": True})
    events = [encoder.chunk(TEXT_THEN_TOOLS[1]), encoder.error("server", "The upstream stream broke off.")]
    sdk = client(streaming(events))
    with (
        pytest.raises(anthropic.APIStatusError, match="broke off"),
        sdk.messages.stream(model=ALIAS, max_tokens=5, messages=USER) as stream,
    ):
        stream.get_final_message()


# -- errors ----------------------------------------------------------------------------------------

SDK_CLASSES = [
    ("invalid_request", 400, "invalid_request_error", anthropic.BadRequestError),
    ("authentication", 401, "authentication_error", anthropic.AuthenticationError),
    ("permission", 403, "permission_error", anthropic.PermissionDeniedError),
    ("not_found", 404, "not_found_error", anthropic.NotFoundError),
    ("request_too_large", 413, "request_too_large", anthropic.ContentTooLargeError),
    ("rate_limited", 429, "rate_limit_error", anthropic.RateLimitError),
    ("context_length", 400, "invalid_request_error", anthropic.BadRequestError),
    ("internal", 500, "api_error", anthropic.InternalServerError),
    ("server", 502, "api_error", anthropic.InternalServerError),
    ("connection", 502, "api_error", anthropic.InternalServerError),
    ("timeout", 504, "timeout_error", anthropic.GatewayTimeoutError),
    ("overloaded", 529, "overloaded_error", anthropic.OverloadedError),
]


@pytest.mark.parametrize(("kind", "status", "error_type", "exception"), SDK_CLASSES, ids=[c[0] for c in SDK_CLASSES])
def test_each_error_kind_has_the_status_and_type_the_sdk_raises_as_its_class(kind, status, error_type, exception):
    assert ANTHROPIC.error_status(kind) == status
    sdk = client(answering(status, ANTHROPIC.error_body(kind, f"{kind} happened")))
    with pytest.raises(exception) as caught:
        sdk.messages.create(model=ALIAS, max_tokens=5, messages=USER)
    assert caught.value.status_code == status
    assert caught.value.type == error_type
    assert caught.value.api_message == f"{kind} happened"


def test_every_canonical_error_kind_has_an_anthropic_status():
    assert set(ERROR_KINDS) <= set(ERRORS)
    assert ANTHROPIC.error_status("something new") == 500


def test_a_refusal_carries_the_request_id_header_and_body_field_the_sdk_reads():
    refusal = ANTHROPIC.refusal("permission", "Not subscribed to this model.", request_id="req_42")
    headers = {k.decode(): v.decode() for k, v in refusal.headers}
    assert orjson.loads(refusal.body)["request_id"] == "req_42"
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        client(answering(refusal.status, refusal.body, headers)).messages.create(
            model=ALIAS, max_tokens=5, messages=USER
        )
    assert caught.value.request_id == "req_42"


def test_an_exhausted_budget_tells_the_sdk_not_to_retry():
    refusal = ANTHROPIC.refusal("rate_limited", "Monthly budget exhausted.", code="budget_exceeded", should_retry=False)
    seen: list[httpx2.Request] = []
    headers = {k.decode(): v.decode() for k, v in refusal.headers}
    with pytest.raises(anthropic.RateLimitError):
        client(answering(refusal.status, refusal.body, headers, seen=seen), max_retries=3).messages.create(
            model=ALIAS, max_tokens=5, messages=USER
        )
    assert len(seen) == 1


def test_a_token_rate_refusal_has_retry_after_in_whole_seconds():
    refusal = ANTHROPIC.refusal("rate_limited", "Token rate exceeded.", retry_after=0.2)
    assert refusal.status == 429
    assert dict(refusal.headers)[b"retry-after"] == b"1"


def test_the_format_is_registered_by_name():
    assert FORMATS["anthropic"] is ANTHROPIC


# -- models ----------------------------------------------------------------------------------------


def test_the_anthropic_sdk_lists_our_models():
    sdk = client(answering(200, ANTHROPIC.render_models(["team-claude", "team-haiku"])))
    assert [(m.id, m.type) for m in sdk.models.list()] == [("team-claude", "model"), ("team-haiku", "model")]


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


def test_no_mutation_of_a_valid_body_crashes_the_translation():
    valid = {
        "model": ALIAS,
        "max_tokens": 5,
        "system": [{"type": "text", "text": "s"}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "x"}},
                ],
            },
            {
                "role": "assistant",
                "content": [{"type": "text", "text": "t"}, {"type": "tool_use", "id": "t1", "name": "f", "input": {}}],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "r"}]}],
            },
        ],
        "tools": [{"name": "f", "input_schema": {}}],
        "tool_choice": {"type": "tool", "name": "f", "disable_parallel_tool_use": True},
        "stop_sequences": ["x"],
        "metadata": {"user_id": "u"},
        "output_config": {"format": {"type": "json_schema", "schema": {}}},
        "stream": True,
    }
    refusals = 0
    for raw in mutations(valid, 1500, seed=12):
        try:
            orjson.dumps(ANTHROPIC.parse_chat(raw))
        except InvalidRequest as refused_body:
            assert refused_body.message
            refusals += 1
    assert refusals > 1000  # the sweep does reach the checks
