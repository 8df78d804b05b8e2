"""Anthropic Messages: canonical requests to /v1/messages (system lifted out, turns merged,
tool results as tool_result blocks, images, tools, JSON output), answers and streams back
(tool_use, input_json_delta, stop reasons, usage with cache reads and writes), cut streams
and error events. Payloads follow Anthropic's API reference and streaming examples."""

from __future__ import annotations

import orjson
import pytest

from llm.canonical import InvalidRequest, ModelTarget, ProviderError, ProviderKey, Usage
from llm.providers import adapter_for
from llm.providers.anthropic import DEFAULT_MAX_TOKENS, JSON_OBJECT_INSTRUCTION

KEY = ProviderKey(id=1, secret="sk-ant-test")
TARGET = ModelTarget(5, 5, "anthropic", "http://127.0.0.1:9100/anthropic", "claude-sonnet-4-5")
ADAPTER = adapter_for("anthropic")
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
    {"type": "function", "function": {"name": "get_time"}},
]


def body(request: dict, stream: bool = False) -> dict:
    return orjson.loads(ADAPTER.chat_request(TARGET, KEY, request, stream).body)


def test_request_goes_to_v1_messages_with_the_api_key_and_version_headers():
    request = ADAPTER.chat_request(TARGET, KEY, {"model": "a", "messages": [{"role": "user", "content": "Hi"}]}, False)
    assert request.url == "http://127.0.0.1:9100/anthropic/v1/messages"
    assert dict(request.headers) == {
        b"content-type": b"application/json",
        b"x-api-key": b"sk-ant-test",
        b"anthropic-version": b"2023-06-01",
    }


def test_request_translates_system_turns_tools_tool_results_and_json_schema_exactly():
    canonical = {
        "model": "alias",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            {"role": "user", "content": "Weather in Paris and the time?"},
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": ""}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "12:00"}]},
            {"role": "user", "content": "Thanks. As JSON please."},
        ],
        "tools": TOOLS,
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}},
        "temperature": 1.7,
        "top_p": 0.9,
        "stop": "END",
        "max_tokens": 512,
        "user": "user-42",
    }
    assert body(canonical, stream=True) == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 512,
        "system": "You are terse.\n\nUse metric units.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather in Paris and the time?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "get_time", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": '{"temp_c": 21}'},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": "12:00"},
                    {"type": "text", "text": "Thanks. As JSON please."},
                ],
            },
        ],
        "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}},
        "temperature": 1.0,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "tools": [
            {
                "name": "get_weather",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                "description": "Current weather",
            },
            {"name": "get_time", "input_schema": {"type": "object", "properties": {}}},
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "metadata": {"user_id": "user-42"},
        "stream": True,
    }


def test_max_tokens_defaults_when_the_request_has_none_and_prefers_max_completion_tokens():
    messages = [{"role": "user", "content": "Hi"}]
    assert body({"messages": messages})["max_tokens"] == DEFAULT_MAX_TOKENS
    assert body({"messages": messages, "max_tokens": 5, "max_completion_tokens": 9})["max_tokens"] == 9


def test_json_object_becomes_an_instruction_at_the_end_of_system():
    translated = body(
        {
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
            "response_format": {"type": "json_object"},
        }
    )
    assert translated["system"] == "Be brief.\n\n" + JSON_OBJECT_INSTRUCTION
    assert "output_config" not in translated


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", None),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "get_time"}}, {"type": "tool", "name": "get_time"}),
    ],
)
def test_tool_choice_maps_to_anthropics(choice, expected):
    translated = body({"messages": [{"role": "user", "content": "Hi"}], "tools": TOOLS, "tool_choice": choice})
    assert translated.get("tool_choice") == expected


def test_remote_image_urls_become_url_image_blocks_and_odd_images_are_refused():
    content = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}]
    translated = body({"messages": [{"role": "user", "content": content}]})
    assert translated["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
    ]
    for url in ("data:image/bmp;base64,AAAA", "data:image/png;base64,!!!", "ftp://x/y.png", "data:image/png,raw"):
        with pytest.raises(InvalidRequest):
            body({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]})


def test_tool_ids_anthropic_would_refuse_are_made_to_fit_on_both_sides():
    translated = body(
        {
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "tool_calls": [{"id": "call.1:x", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call.1:x", "content": "ok"},
            ]
        }
    )
    assert translated["messages"][1]["content"][0]["id"] == "call_1_x"
    assert translated["messages"][2]["content"][0]["tool_use_id"] == "call_1_x"


def test_requests_anthropic_cannot_serve_are_the_clients_400():
    hi = [{"role": "user", "content": "Hi"}]
    for bad in (
        {"messages": hi, "n": 2},
        {
            "messages": [
                {"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}]}
            ]
        },
        {"messages": [{"role": "wizard", "content": "x"}]},
        {"messages": hi, "response_format": {"type": "xml"}},
        {"messages": hi, "temperature": "hot"},
        {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
    ):
        with pytest.raises(InvalidRequest):
            body(bad)


def test_empty_messages_are_dropped_rather_than_sent_as_empty_turns():
    translated = body({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""}]})
    assert translated["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]


def test_embeddings_are_refused_as_the_clients_error():
    with pytest.raises(InvalidRequest, match="does not do embeddings"):
        ADAPTER.embeddings_request(TARGET, KEY, {"input": "x"})


# -- answers -------------------------------------------------------------------------------------

ANSWER = {
    "id": "msg_01Aq9w938a90dw8q",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "thinking", "thinking": "Let me check.", "signature": "EqQB"},
        {"type": "text", "text": "I'll check the weather."},
        {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"city": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 50,
        "cache_creation_input_tokens": 200,
        "cache_read_input_tokens": 1000,
        "output_tokens": 80,
        "service_tier": "standard",
    },
}


def test_answer_translates_text_tool_use_and_usage_with_cache_reads_and_writes():
    answer = ADAPTER.chat_response(TARGET, orjson.dumps(ANSWER))
    assert answer["id"] == "msg_01Aq9w938a90dw8q"
    assert answer["model"] == "claude-sonnet-4-5-20250929"
    assert answer["object"] == "chat.completion"
    assert answer["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "I'll check the weather.",
                "tool_calls": [
                    {
                        "id": "toolu_01A09q90qw90lq917835lq9",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            "finish_reason": "tool_calls",
            "logprobs": None,
        }
    ]
    assert answer["usage"] == {
        "prompt_tokens": 1250,
        "completion_tokens": 80,
        "total_tokens": 1330,
        "prompt_tokens_details": {"cached_tokens": 1000},
    }


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
        ("something_new", "stop"),
    ],
)
def test_stop_reason_maps_to_finish_reason(stop_reason, expected):
    answer = ADAPTER.chat_response(TARGET, orjson.dumps({**ANSWER, "stop_reason": stop_reason}))
    assert answer["choices"][0]["finish_reason"] == expected


def test_a_tool_only_answer_has_null_content_like_openai():
    payload = {**ANSWER, "content": [ANSWER["content"][2]]}
    assert ADAPTER.chat_response(TARGET, orjson.dumps(payload))["choices"][0]["message"]["content"] is None


@pytest.mark.parametrize("payload", [b"", b"{", b"[]", b'{"content": "text"}', b'{"type": "error", "error": {}}'])
def test_a_broken_answer_is_a_provider_error(payload):
    with pytest.raises(ProviderError):
        ADAPTER.chat_response(TARGET, payload)


# -- streams -------------------------------------------------------------------------------------


def event(name: str, data: dict) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **data}) + b"\n\n"


STREAM = b"".join(
    [
        event(
            "message_start",
            {
                "message": {
                    "id": "msg_014p7gG3wDgGV9EUtLvnow3U",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-sonnet-4-5-20250929",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": 472,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 2048,
                        "output_tokens": 2,
                    },
                }
            },
        ),
        event("content_block_start", {"index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
        event("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": "Paris..."}}),
        event("content_block_delta", {"index": 0, "delta": {"type": "signature_delta", "signature": "EqQB"}}),
        event("content_block_stop", {"index": 0}),
        event("content_block_start", {"index": 1, "content_block": {"type": "text", "text": ""}}),
        event("ping", {}),
        event("content_block_delta", {"index": 1, "delta": {"type": "text_delta", "text": "Okay, let's check"}}),
        event("content_block_delta", {"index": 1, "delta": {"type": "text_delta", "text": " the weather."}}),
        event("content_block_stop", {"index": 1}),
        event(
            "content_block_start",
            {
                "index": 2,
                "content_block": {
                    "type": "tool_use",
                    "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                    "name": "get_weather",
                    "input": {},
                },
            },
        ),
        event("content_block_delta", {"index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}}),
        event(
            "content_block_delta", {"index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"city": "Pa'}}
        ),
        event("content_block_delta", {"index": 2, "delta": {"type": "input_json_delta", "partial_json": 'ris"}'}}),
        event("content_block_stop", {"index": 2}),
        event(
            "message_delta",
            {"delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 89}},
        ),
        event("message_stop", {}),
    ]
)


def decode(stream: bytes, cuts: list[int]) -> tuple[list[dict], Usage | None]:
    decoder = ADAPTER.stream_decoder(TARGET)
    chunks: list[dict] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        chunks.extend(decoder.feed(stream[start:cut]))
        start = cut
    chunks.extend(decoder.close())
    for chunk in chunks:
        assert isinstance(chunk.pop("created"), int)  # the clock's, when the provider gives none
    return chunks, decoder.usage


def deltas(chunks: list[dict]) -> list[tuple[dict, str | None]]:
    return [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in chunks]


EXPECTED = [
    ({"role": "assistant", "content": ""}, None),
    ({"content": "Okay, let's check"}, None),
    ({"content": " the weather."}, None),
    (
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ]
        },
        None,
    ),
    ({"tool_calls": [{"index": 0, "function": {"arguments": ""}}]}, None),
    ({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Pa'}}]}, None),
    ({"tool_calls": [{"index": 0, "function": {"arguments": 'ris"}'}}]}, None),
    ({}, "tool_calls"),
]


def test_stream_decodes_text_tool_use_and_input_json_deltas_with_usage():
    chunks, usage = decode(STREAM, [])
    assert deltas(chunks) == EXPECTED
    assert {c["id"] for c in chunks} == {"msg_014p7gG3wDgGV9EUtLvnow3U"}
    assert {c["model"] for c in chunks} == {"claude-sonnet-4-5-20250929"}
    assert usage == Usage(prompt_tokens=472 + 2048, completion_tokens=89, cached_tokens=2048)


def test_stream_gives_the_same_chunks_under_every_split_and_byte_by_byte():
    whole = decode(STREAM, [])
    for cut in range(len(STREAM) + 1):
        assert decode(STREAM, [cut]) == whole, cut
    assert decode(STREAM, list(range(1, len(STREAM)))) == whole


def test_stream_with_crlf_line_ends_decodes_the_same():
    assert deltas(decode(STREAM.replace(b"\n", b"\r\n"), [])[0]) == EXPECTED


@pytest.mark.parametrize(
    ("stop_reason", "expected"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_stream_final_chunk_carries_the_mapped_finish_reason(stop_reason, expected):
    stream = STREAM.replace(b'"stop_reason":"tool_use"', b'"stop_reason":"' + stop_reason.encode() + b'"')
    assert decode(stream, [])[0][-1]["choices"][0]["finish_reason"] == expected


def test_stream_cut_before_message_stop_raises():
    cut = STREAM[: STREAM.index(b"event: message_stop")]
    with pytest.raises(ProviderError) as caught:
        decode(cut, [])
    assert caught.value.kind == "server"


def test_stream_cut_mid_tool_input_raises():
    with pytest.raises(ProviderError):
        decode(STREAM[: STREAM.index(b"ris") + 2], [])


@pytest.mark.parametrize(
    ("error_type", "kind"),
    [
        ("overloaded_error", "overloaded"),
        ("api_error", "server"),
        ("rate_limit_error", "rate_limited"),
        ("new_error", "server"),
    ],
)
def test_error_event_mid_stream_raises_with_its_kind(error_type, kind):
    stream = STREAM[: STREAM.index(b"event: content_block_stop")] + event(
        "error", {"error": {"type": error_type, "message": "Overloaded"}}
    )
    decoder = ADAPTER.stream_decoder(TARGET)
    with pytest.raises(ProviderError) as caught:
        decoder.feed(stream)
    assert (caught.value.kind, caught.value.message) == (kind, "Overloaded")


def test_stream_events_before_message_start_are_a_broken_stream():
    with pytest.raises(ProviderError):
        ADAPTER.stream_decoder(TARGET).feed(event("content_block_delta", {"index": 0, "delta": {"type": "text_delta"}}))


def test_input_json_for_a_block_that_is_no_tool_call_is_a_broken_stream():
    start = STREAM[: STREAM.index(b"event: content_block_start")]
    bad = event("content_block_delta", {"index": 9, "delta": {"type": "input_json_delta", "partial_json": "{}"}})
    with pytest.raises(ProviderError):
        ADAPTER.stream_decoder(TARGET).feed(start + bad)


def test_unknown_stream_events_are_ignored():
    extra = event("brand_new_event", {"x": 1})
    at = STREAM.index(b"event: message_delta")
    assert deltas(decode(STREAM[:at] + extra + STREAM[at:], [])[0]) == EXPECTED
