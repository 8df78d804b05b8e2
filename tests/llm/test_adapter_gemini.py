"""Gemini generateContent / streamGenerateContent / batchEmbedContents: canonical requests
(roles user/model, systemInstruction, functionDeclarations, functionResponse named after its
call, inlineData, JSON output), answers and SSE streams back (whole functionCall parts with
stable ids, every finish reason, usage with cached and thinking tokens), cut streams and
errors. Payloads follow the Gemini API reference and python-genai's types."""

from __future__ import annotations

import orjson
import pytest

from llm.canonical import InvalidRequest, ModelTarget, ProviderError, ProviderKey, Usage
from llm.providers import adapter_for
from llm.providers.gemini import SKIP_SIGNATURE

KEY = ProviderKey(id=1, secret="AIza-test")
TARGET = ModelTarget(6, 6, "gemini", "http://127.0.0.1:9100/gemini", "gemini-2.5-flash")
GEMINI3 = ModelTarget(7, 6, "gemini", "http://127.0.0.1:9100/gemini", "gemini-3-pro-preview")
ADAPTER = adapter_for("gemini")
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
PARAMS = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather", "parameters": PARAMS}}
]
CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "Weather here?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
        ],
    },
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Lyon"}'}},
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 21}'},
    {"role": "tool", "tool_call_id": "call_2", "content": "sunny"},
]


def body(request: dict, target: ModelTarget = TARGET, stream: bool = False) -> dict:
    return orjson.loads(ADAPTER.chat_request(target, KEY, request, stream).body)


def test_requests_go_to_generate_content_or_the_sse_stream_with_the_goog_api_key():
    plain = ADAPTER.chat_request(TARGET, KEY, {"messages": [{"role": "user", "content": "Hi"}]}, False)
    assert plain.url == "http://127.0.0.1:9100/gemini/v1beta/models/gemini-2.5-flash:generateContent"
    assert dict(plain.headers) == {b"content-type": b"application/json", b"x-goog-api-key": b"AIza-test"}
    streamed = ADAPTER.chat_request(TARGET, KEY, {"messages": [{"role": "user", "content": "Hi"}]}, True)
    assert streamed.url == "http://127.0.0.1:9100/gemini/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    assert "stream" not in orjson.loads(streamed.body)


def test_request_translates_system_turns_tools_function_responses_and_json_schema_exactly():
    canonical = {
        "model": "alias",
        "messages": CONVERSATION,
        "tools": TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}},
        "temperature": 0.3,
        "top_p": 0.8,
        "max_completion_tokens": 256,
        "stop": ["END", "STOP"],
        "seed": 11,
    }
    assert body(canonical) == {
        "contents": [
            {
                "role": "user",
                "parts": [{"text": "Weather here?"}, {"inlineData": {"mimeType": "image/png", "data": PNG}}],
            },
            {
                "role": "model",
                "parts": [
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Lyon"}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"temp_c": 21}}},
                    {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}},
                ],
            },
        ],
        "systemInstruction": {"parts": [{"text": "You are terse."}]},
        "generationConfig": {
            "temperature": 0.3,
            "topP": 0.8,
            "seed": 11,
            "maxOutputTokens": 256,
            "stopSequences": ["END", "STOP"],
            "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "object"},
        },
        "tools": [
            {
                "functionDeclarations": [
                    {"name": "get_weather", "description": "Current weather", "parametersJsonSchema": PARAMS}
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
    }


def test_gemini_3_replays_thought_signatures_and_marks_calls_without_one():
    signed = {**CONVERSATION[2]["tool_calls"][0], "extra_content": {"google": {"thought_signature": "c2lnbmF0dXJl"}}}
    unsigned = CONVERSATION[2]
    messages = [CONVERSATION[1], {**unsigned, "tool_calls": [signed]}, CONVERSATION[3], CONVERSATION[1], unsigned]
    contents = body({"messages": messages}, GEMINI3)["contents"]
    assert contents[1]["parts"][0]["thoughtSignature"] == "c2lnbmF0dXJl"
    later = contents[3]["parts"]
    assert later[0]["thoughtSignature"] == SKIP_SIGNATURE  # the turn's first call only
    assert "thoughtSignature" not in later[1]
    # Gemini 2.x has no such requirement: nothing is invented for it
    assert all("thoughtSignature" not in p for c in body({"messages": messages})["contents"][3:] for p in c["parts"])


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", None),
        ("none", {"functionCallingConfig": {"mode": "NONE"}}),
        ("required", {"functionCallingConfig": {"mode": "ANY"}}),
    ],
)
def test_tool_choice_maps_to_function_calling_config(choice, expected):
    translated = body({"messages": [{"role": "user", "content": "Hi"}], "tools": TOOLS, "tool_choice": choice})
    assert translated.get("toolConfig") == expected


def test_json_object_asks_for_a_json_mime_type_without_a_schema():
    config = body({"messages": [{"role": "user", "content": "Hi"}], "response_format": {"type": "json_object"}})
    assert config["generationConfig"] == {"responseMimeType": "application/json"}


def test_remote_image_urls_become_file_data_with_a_guessed_mime_type():
    content = [
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png?size=2"}},
        {"type": "image_url", "image_url": "https://example.com/photo"},
    ]
    parts = body({"messages": [{"role": "user", "content": content}]})["contents"][0]["parts"]
    assert parts == [
        {"fileData": {"fileUri": "https://example.com/cat.png?size=2", "mimeType": "image/png"}},
        {"fileData": {"fileUri": "https://example.com/photo"}},
    ]


def test_a_tool_result_for_no_earlier_call_is_the_clients_error():
    with pytest.raises(InvalidRequest, match="tool result"):
        body({"messages": [{"role": "user", "content": "Hi"}, {"role": "tool", "tool_call_id": "x", "content": "1"}]})


def test_consecutive_same_role_messages_are_one_turn():
    contents = body({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]})["contents"]
    assert contents == [{"role": "user", "parts": [{"text": "a"}, {"text": "b"}]}]


def test_n_asks_for_that_many_candidates():
    assert body({"messages": [{"role": "user", "content": "a"}], "n": 3})["generationConfig"] == {"candidateCount": 3}


# -- answers -------------------------------------------------------------------------------------

ANSWER = {
    "candidates": [
        {
            "content": {
                "parts": [
                    {"text": "Thinking about it", "thought": True},
                    {"text": "Let me check."},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": "c2ln"},
                ],
                "role": "model",
            },
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 1500,
        "candidatesTokenCount": 20,
        "totalTokenCount": 1620,
        "cachedContentTokenCount": 1024,
        "thoughtsTokenCount": 100,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1500}],
    },
    "modelVersion": "gemini-2.5-flash",
    "responseId": "mG2aaNLwJe6ZkdUP5-3s2QU",
}


def test_answer_translates_text_function_calls_with_stable_ids_and_usage():
    answer = ADAPTER.chat_response(TARGET, orjson.dumps(ANSWER))
    again = ADAPTER.chat_response(TARGET, orjson.dumps(ANSWER))
    (choice,) = answer["choices"]
    call = choice["message"]["tool_calls"][0]
    assert call["id"].startswith("call_") and call["id"] == again["choices"][0]["message"]["tool_calls"][0]["id"]
    assert choice == {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    "extra_content": {"google": {"thought_signature": "c2ln"}},
                }
            ],
        },
        "finish_reason": "tool_calls",
        "logprobs": None,
    }
    assert (answer["id"], answer["model"]) == ("mG2aaNLwJe6ZkdUP5-3s2QU", "gemini-2.5-flash")
    # thinking tokens are billed as output: completion = candidates + thoughts
    assert answer["usage"] == {
        "prompt_tokens": 1500,
        "completion_tokens": 120,
        "total_tokens": 1620,
        "prompt_tokens_details": {"cached_tokens": 1024},
    }


def test_a_function_call_id_given_by_gemini_is_kept():
    part = {"functionCall": {"id": "fc-7", "name": "get_weather", "args": {}}}
    payload = {**ANSWER, "candidates": [{**ANSWER["candidates"][0], "content": {"parts": [part]}}]}
    assert (
        ADAPTER.chat_response(TARGET, orjson.dumps(payload))["choices"][0]["message"]["tool_calls"][0]["id"] == "fc-7"
    )


def answer_with(reason: str, with_call: bool = False) -> dict:
    parts = [{"text": "x"}] + ([{"functionCall": {"name": "f", "args": {}}}] if with_call else [])
    payload = {**ANSWER, "candidates": [{"content": {"parts": parts, "role": "model"}, "finishReason": reason}]}
    return ADAPTER.chat_response(TARGET, orjson.dumps(payload))["choices"][0]


def test_stop_is_stop():
    assert answer_with("STOP")["finish_reason"] == "stop"


def test_stop_with_function_calls_is_tool_calls():
    assert answer_with("STOP", with_call=True)["finish_reason"] == "tool_calls"


def test_max_tokens_is_length():
    assert answer_with("MAX_TOKENS")["finish_reason"] == "length"


@pytest.mark.parametrize("reason", ["SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"])
def test_safety_family_is_content_filter(reason):
    assert answer_with(reason)["finish_reason"] == "content_filter"


@pytest.mark.parametrize("reason", ["OTHER", "LANGUAGE", "MALFORMED_FUNCTION_CALL", "FINISH_REASON_UNSPECIFIED", "NEW"])
def test_other_finish_reasons_are_stop(reason):
    assert answer_with(reason)["finish_reason"] == "stop"


def test_a_prompt_blocked_before_any_candidate_is_an_empty_content_filter_answer():
    payload = {
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
    }
    answer = ADAPTER.chat_response(TARGET, orjson.dumps(payload))
    assert answer["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": ""},
            "finish_reason": "content_filter",
            "logprobs": None,
        }
    ]
    assert answer["usage"]["prompt_tokens"] == 8


@pytest.mark.parametrize("payload", [b"", b"<html>", b"[]", b"{}", b'{"candidates": "x"}', b'{"error": {"code": 500}}'])
def test_a_broken_answer_is_a_provider_error(payload):
    with pytest.raises(ProviderError):
        ADAPTER.chat_response(TARGET, payload)


# -- streams -------------------------------------------------------------------------------------


def sse(*payloads: dict) -> bytes:
    return b"".join(b"data: " + orjson.dumps(p) + b"\r\n\r\n" for p in payloads)


def stream_chunk(parts: list[dict], finish: str | None = None, usage: dict | None = None) -> dict:
    candidate: dict = {"content": {"parts": parts, "role": "model"}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    chunk: dict = {"candidates": [candidate], "modelVersion": "gemini-2.5-flash", "responseId": "r-1"}
    if usage:
        chunk["usageMetadata"] = usage
    return chunk


STREAM = sse(
    stream_chunk([{"text": "The weather"}], usage={"promptTokenCount": 30, "totalTokenCount": 30}),
    stream_chunk([{"text": " in Paris:"}]),
    stream_chunk(
        [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "get_time", "args": {}}},
        ],
        "STOP",
        {
            "promptTokenCount": 30,
            "candidatesTokenCount": 12,
            "totalTokenCount": 50,
            "thoughtsTokenCount": 8,
            "cachedContentTokenCount": 16,
        },
    ),
)


def decode(stream: bytes, cuts: list[int], target: ModelTarget = TARGET) -> tuple[list[dict], Usage | None]:
    decoder = ADAPTER.stream_decoder(target)
    chunks: list[dict] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        chunks.extend(decoder.feed(stream[start:cut]))
        start = cut
    chunks.extend(decoder.close())
    for chunk in chunks:
        assert isinstance(chunk.pop("created"), int)
    return chunks, decoder.usage


def deltas(chunks: list[dict]) -> list[tuple[dict, str | None]]:
    return [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in chunks]


def test_stream_decodes_text_and_whole_function_calls_with_a_final_finish_chunk():
    chunks, usage = decode(STREAM, [])
    non_stream = ADAPTER.chat_response(
        TARGET,
        orjson.dumps(
            stream_chunk(
                [
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"name": "get_time", "args": {}}},
                ],
                "STOP",
            )
        ),
    )
    ids = [c["id"] for c in non_stream["choices"][0]["message"]["tool_calls"]]
    assert deltas(chunks) == [
        ({"role": "assistant", "content": "The weather"}, None),
        ({"content": " in Paris:"}, None),
        (
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": ids[0],
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {"index": 1, "id": ids[1], "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
                ]
            },
            None,
        ),
        ({}, "tool_calls"),
    ]
    assert {c["id"] for c in chunks} == {"r-1"}
    assert usage == Usage(prompt_tokens=30, completion_tokens=20, cached_tokens=16)


def test_stream_gives_the_same_chunks_under_every_split_and_byte_by_byte():
    whole = decode(STREAM, [])
    for cut in range(len(STREAM) + 1):
        assert decode(STREAM, [cut]) == whole, cut
    assert decode(STREAM, list(range(1, len(STREAM)))) == whole


@pytest.mark.parametrize(
    ("reason", "expected"),
    [("STOP", "stop"), ("MAX_TOKENS", "length"), ("SAFETY", "content_filter"), ("RECITATION", "content_filter")],
)
def test_stream_finish_reasons_map_like_answers(reason, expected):
    chunks, _ = decode(sse(stream_chunk([{"text": "a"}]), stream_chunk([{"text": "b"}], reason)), [])
    assert deltas(chunks)[-1] == ({}, expected)


def test_stream_without_a_finish_reason_is_cut():
    with pytest.raises(ProviderError) as caught:
        decode(sse(stream_chunk([{"text": "The weather"}]), stream_chunk([{"text": " in"}])), [])
    assert caught.value.kind == "server"


def test_stream_cut_mid_event_is_cut():
    with pytest.raises(ProviderError):
        decode(STREAM[:-10], [])


def test_error_event_mid_stream_raises_with_its_kind():
    error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    decoder = ADAPTER.stream_decoder(TARGET)
    with pytest.raises(ProviderError) as caught:
        decoder.feed(sse(stream_chunk([{"text": "a"}]), error))
    assert (caught.value.kind, caught.value.message) == ("overloaded", "The model is overloaded.")


def test_stream_of_a_blocked_prompt_ends_with_content_filter():
    chunks, _ = decode(sse({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}), [])
    assert deltas(chunks) == [({"role": "assistant", "content": ""}, "content_filter")]


# -- embeddings ----------------------------------------------------------------------------------


def test_embeddings_request_is_one_batch_embed_contents_call():
    request = ADAPTER.embeddings_request(
        ModelTarget(8, 6, "gemini", "http://127.0.0.1:9100/gemini", "gemini-embedding-001"),
        KEY,
        {"model": "alias", "input": ["a", "b"], "dimensions": 768},
    )
    assert request.url == "http://127.0.0.1:9100/gemini/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert orjson.loads(request.body) == {
        "requests": [
            {
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": "a"}]},
                "outputDimensionality": 768,
            },
            {
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": "b"}]},
                "outputDimensionality": 768,
            },
        ]
    }


def test_embeddings_of_token_arrays_are_refused_as_the_clients_error():
    with pytest.raises(InvalidRequest):
        ADAPTER.embeddings_request(TARGET, KEY, {"input": [[1, 2, 3]]})


def test_embeddings_answer_is_an_openai_list_without_usage_gemini_does_not_report():
    payload = {"embeddings": [{"values": [0.1, -0.2]}, {"values": [0.3, 0.4]}]}
    assert ADAPTER.embeddings_response(TARGET, orjson.dumps(payload)) == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.1, -0.2]},
            {"object": "embedding", "index": 1, "embedding": [0.3, 0.4]},
        ],
        "model": "gemini-2.5-flash",
    }
    with pytest.raises(ProviderError):
        ADAPTER.embeddings_response(TARGET, b'{"embeddings": [{"values": "x"}]}')
