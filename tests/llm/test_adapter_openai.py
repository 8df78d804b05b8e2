"""The OpenAI-shaped providers: OpenAI itself, Azure OpenAI, Mistral and OpenAI-compatible
servers. Requests (URL, credential header, exact body), answers, streams under every split
of the bytes, tool-call deltas, finish reasons, usage with cached tokens, cut streams and
in-band errors. Provider payloads follow the providers' API references and SDK fixtures."""

from __future__ import annotations

import orjson
import pytest

from llm.canonical import ModelTarget, ProviderError, ProviderKey, Usage
from llm.providers import adapter_for
from llm.providers.mistral import mistral_tool_id

KEY = ProviderKey(id=1, secret="sk-test")
OPENAI = ModelTarget(1, 1, "openai", "http://127.0.0.1:9100/openai/v1", "gpt-4o-mini")
AZURE = ModelTarget(2, 2, "azure-openai", "http://127.0.0.1:9100/azure/", "prod gpt/4o", azure_api_version="2024-10-21")
MISTRAL = ModelTarget(3, 3, "mistral", "http://127.0.0.1:9100/mistral/v1", "mistral-large-latest")
COMPATIBLE = ModelTarget(4, 4, "openai-compatible", "http://127.0.0.1:9100/compatible/v1", "llama3.1")

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_abc123",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_abc123", "content": '{"temp_c": 21}'},
]
SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "w", "strict": True, "schema": {"type": "object", "properties": {"t": {"type": "number"}}}},
}
REQUEST = {
    "model": "public-alias",
    "messages": CONVERSATION,
    "tools": [WEATHER_TOOL],
    "tool_choice": "auto",
    "response_format": SCHEMA_FORMAT,
    "temperature": 0.2,
    "max_completion_tokens": 300,
    "seed": 7,
    "user": "u-1",
}


def body_of(request) -> dict:
    return orjson.loads(request.body)


def decode(kind: str, target: ModelTarget, stream: bytes, cuts: list[int]) -> tuple[list[dict], Usage | None]:
    decoder = adapter_for(kind).stream_decoder(target)
    chunks: list[dict] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        chunks.extend(decoder.feed(stream[start:cut]))
        start = cut
    chunks.extend(decoder.close())
    for chunk in chunks:
        assert isinstance(chunk.pop("created"), int)  # the clock's, when the provider gives none
    return chunks, decoder.usage


def assert_split_invariant(kind: str, target: ModelTarget, stream: bytes) -> tuple[list[dict], Usage | None]:
    whole = decode(kind, target, stream, [])
    for cut in range(len(stream) + 1):
        assert decode(kind, target, stream, [cut]) == whole, cut
    assert decode(kind, target, stream, list(range(1, len(stream)))) == whole
    return whole


def sse(*events: dict | str) -> bytes:
    return b"".join(b"data: " + (e.encode() if isinstance(e, str) else orjson.dumps(e)) + b"\n\n" for e in events)


# -- requests ------------------------------------------------------------------------------------


def test_openai_request_is_the_canonical_body_with_the_upstream_model():
    request = adapter_for("openai").chat_request(OPENAI, KEY, REQUEST, stream=False)
    assert request.method == b"POST"
    assert request.url == "http://127.0.0.1:9100/openai/v1/chat/completions"
    assert dict(request.headers) == {b"content-type": b"application/json", b"authorization": b"Bearer sk-test"}
    assert body_of(request) == {**REQUEST, "model": "gpt-4o-mini"}


def test_openai_stream_request_asks_for_usage_and_keeps_the_clients_other_stream_options():
    canonical = {**REQUEST, "stream": True, "stream_options": {"include_obfuscation": False}}
    body = body_of(adapter_for("openai").chat_request(OPENAI, KEY, canonical, stream=True))
    assert body["stream"] is True
    assert body["stream_options"] == {"include_obfuscation": False, "include_usage": True}


def test_openai_non_stream_request_drops_stream_options_which_openai_refuses_without_stream():
    canonical = {**REQUEST, "stream": False, "stream_options": {"include_usage": True}}
    body = body_of(adapter_for("openai").chat_request(OPENAI, KEY, canonical, stream=False))
    assert "stream_options" not in body and "stream" not in body


def test_openai_request_drops_gemini_thought_signatures_from_replayed_tool_calls():
    call = {**CONVERSATION[2]["tool_calls"][0], "extra_content": {"google": {"thought_signature": "c2ln"}}}
    canonical = {**REQUEST, "messages": [CONVERSATION[1], {**CONVERSATION[2], "tool_calls": [call]}, CONVERSATION[3]]}
    body = body_of(adapter_for("openai").chat_request(OPENAI, KEY, canonical, stream=False))
    assert body["messages"][1]["tool_calls"] == CONVERSATION[2]["tool_calls"]
    assert "extra_content" in canonical["messages"][1]["tool_calls"][0]  # the caller's request is not changed


def test_azure_request_names_the_deployment_in_the_url_and_sends_the_api_key_header():
    request = adapter_for("azure-openai").chat_request(AZURE, KEY, REQUEST, stream=True)
    assert request.url == (
        "http://127.0.0.1:9100/azure/openai/deployments/prod%20gpt%2F4o/chat/completions?api-version=2024-10-21"
    )
    assert dict(request.headers) == {b"content-type": b"application/json", b"api-key": b"sk-test"}
    body = body_of(request)
    assert "model" not in body
    assert body["stream_options"] == {"include_usage": True}


def test_azure_without_an_api_version_uses_the_ga_default():
    target = ModelTarget(2, 2, "azure-openai", "https://res.openai.azure.com", "gpt4o")
    request = adapter_for("azure-openai").embeddings_request(target, KEY, {"model": "a", "input": "x"})
    assert request.url == "https://res.openai.azure.com/openai/deployments/gpt4o/embeddings?api-version=2024-10-21"
    assert body_of(request) == {"input": "x"}


def test_mistral_request_keeps_only_fields_mistral_accepts_and_renames_the_rest():
    body = body_of(adapter_for("mistral").chat_request(MISTRAL, KEY, {**REQUEST, "stream": True}, stream=True))
    assert body == {
        "model": "mistral-large-latest",
        "messages": [
            CONVERSATION[0],
            CONVERSATION[1],
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": mistral_tool_id("call_abc123"),
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": mistral_tool_id("call_abc123"), "content": '{"temp_c": 21}'},
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
        "response_format": SCHEMA_FORMAT,
        "temperature": 0.2,
        "max_tokens": 300,
        "random_seed": 7,
        "stream": True,
    }


def test_mistral_tool_call_ids_are_nine_alphanumerics_deterministically():
    mapped = mistral_tool_id("call_abc123")
    assert len(mapped) == 9 and mapped.isalnum() and mapped.isascii()
    assert mistral_tool_id("call_abc123") == mapped
    assert mistral_tool_id("toolu_01A09q90qw90lq917835lq9") != mapped
    assert mistral_tool_id("D681PevKs") == "D681PevKs"  # already a Mistral id: unchanged


def test_compatible_request_is_openais_at_the_servers_base_url():
    request = adapter_for("openai-compatible").chat_request(COMPATIBLE, KEY, REQUEST, stream=True)
    assert request.url == "http://127.0.0.1:9100/compatible/v1/chat/completions"
    assert body_of(request)["stream_options"] == {"include_usage": True}


def test_embeddings_requests_pass_the_clients_encoding_format_through():
    canonical = {"model": "alias", "input": ["a", "b"], "encoding_format": "base64", "dimensions": 256}
    request = adapter_for("openai").embeddings_request(OPENAI, KEY, canonical)
    assert request.url == "http://127.0.0.1:9100/openai/v1/embeddings"
    assert body_of(request) == {**canonical, "model": "gpt-4o-mini"}
    mistral = body_of(adapter_for("mistral").embeddings_request(MISTRAL, KEY, {**canonical, "user": "u"}))
    assert mistral == {
        "model": "mistral-large-latest",
        "input": ["a", "b"],
        "encoding_format": "base64",
        "output_dimension": 256,
    }


# -- answers -------------------------------------------------------------------------------------

OPENAI_ANSWER = {
    "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    }
                ],
                "refusal": None,
                "annotations": [],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 2006,
        "completion_tokens": 300,
        "total_tokens": 2306,
        "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    },
    "service_tier": "default",
    "system_fingerprint": "fp_06737a9306",
}


def test_openai_answer_translates_tool_calls_and_usage_with_cached_tokens():
    answer = adapter_for("openai").chat_response(OPENAI, orjson.dumps(OPENAI_ANSWER))
    assert answer == {
        "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "object": "chat.completion",
        "created": 1741569952,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": OPENAI_ANSWER["choices"][0]["message"]["tool_calls"],
                    "annotations": [],
                },
                "finish_reason": "tool_calls",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": 2006,
            "completion_tokens": 300,
            "total_tokens": 2306,
            "prompt_tokens_details": {"cached_tokens": 1920},
        },
        "system_fingerprint": "fp_06737a9306",
    }


@pytest.mark.parametrize("reason", ["stop", "length", "tool_calls", "content_filter"])
def test_openai_finish_reasons_pass_as_they_are(reason):
    payload = {**OPENAI_ANSWER, "choices": [{**OPENAI_ANSWER["choices"][0], "finish_reason": reason}]}
    assert adapter_for("openai").chat_response(OPENAI, orjson.dumps(payload))["choices"][0]["finish_reason"] == reason


def test_azure_answer_loses_its_content_filter_annotations_but_keeps_the_answer():
    payload = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-2024-11-20",
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
        "choices": [
            {
                "index": 0,
                "finish_reason": "content_filter",
                "message": {"role": "assistant", "content": "partial"},
                "content_filter_results": {"hate": {"filtered": True, "severity": "high"}},
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12},
    }
    answer = adapter_for("azure-openai").chat_response(AZURE, orjson.dumps(payload))
    assert "prompt_filter_results" not in answer
    assert answer["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "partial"},
            "finish_reason": "content_filter",
            "logprobs": None,
        }
    ]


MISTRAL_ANSWER = {
    "id": "cf79f7daaee244b1a0ae5c7b1444424a",
    "object": "chat.completion",
    "model": "mistral-large-latest",
    "usage": {"prompt_tokens": 24, "completion_tokens": 27, "total_tokens": 51},
    "created": 1702256327,
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]},
                    {"type": "text", "text": "Bonjour"},
                ],
                "tool_calls": None,
            },
            "finish_reason": "stop",
        }
    ],
}


def test_mistral_answer_content_chunks_become_text_without_the_thinking():
    answer = adapter_for("mistral").chat_response(MISTRAL, orjson.dumps(MISTRAL_ANSWER))
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "Bonjour"}
    assert answer["usage"]["total_tokens"] == 51


@pytest.mark.parametrize(("reason", "expected"), [("stop", "stop"), ("length", "length"), ("tool_calls", "tool_calls")])
def test_mistral_finish_reasons_map_as_openais(reason, expected):
    payload = {**MISTRAL_ANSWER, "choices": [{**MISTRAL_ANSWER["choices"][0], "finish_reason": reason}]}
    assert (
        adapter_for("mistral").chat_response(MISTRAL, orjson.dumps(payload))["choices"][0]["finish_reason"] == expected
    )


def test_mistral_model_length_finish_is_length():
    payload = {**MISTRAL_ANSWER, "choices": [{**MISTRAL_ANSWER["choices"][0], "finish_reason": "model_length"}]}
    assert (
        adapter_for("mistral").chat_response(MISTRAL, orjson.dumps(payload))["choices"][0]["finish_reason"] == "length"
    )


def test_mistral_error_finish_is_a_server_failure_not_an_answer():
    payload = {**MISTRAL_ANSWER, "choices": [{**MISTRAL_ANSWER["choices"][0], "finish_reason": "error"}]}
    with pytest.raises(ProviderError) as caught:
        adapter_for("mistral").chat_response(MISTRAL, orjson.dumps(payload))
    assert caught.value.kind == "server"


def test_compatible_answer_with_missing_fields_and_no_usage_still_parses():
    payload = {"choices": [{"message": {"content": "hi"}, "finish_reason": None}]}
    answer = adapter_for("openai-compatible").chat_response(COMPATIBLE, orjson.dumps(payload))
    assert answer["model"] == "llama3.1"
    assert answer["id"] and isinstance(answer["created"], int)
    assert answer["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop", "logprobs": None}
    ]
    assert "usage" not in answer  # the gateway estimates


@pytest.mark.parametrize(("reason", "expected"), [("eos", "stop"), ("eos_token", "stop"), ("max_tokens", "length")])
def test_compatible_server_specific_finish_reasons_are_read_as_openais(reason, expected):
    payload = {"choices": [{"message": {"content": "x"}, "finish_reason": reason}]}
    answer = adapter_for("openai-compatible").chat_response(COMPATIBLE, orjson.dumps(payload))
    assert answer["choices"][0]["finish_reason"] == expected


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"id": "x"}', b'{"choices": "no"}', b"\xff"])
def test_a_broken_answer_is_a_server_error_never_another_exception(body):
    for kind, target in (("openai", OPENAI), ("mistral", MISTRAL), ("openai-compatible", COMPATIBLE)):
        with pytest.raises(ProviderError) as caught:
            adapter_for(kind).chat_response(target, body)
        assert caught.value.kind == "server"


def test_an_error_object_in_a_200_answer_is_translated():
    body = b'{"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}'
    with pytest.raises(ProviderError) as caught:
        adapter_for("openai").chat_response(OPENAI, body)
    assert caught.value.kind == "rate_limited"


def test_embeddings_answer_keeps_vectors_and_usage():
    payload = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [0.0023064255, -0.009327292]},
            {"object": "embedding", "index": 1, "embedding": "AAAAAAAAgD8="},
        ],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }
    answer = adapter_for("openai").embeddings_response(OPENAI, orjson.dumps(payload))
    assert answer == payload


def test_embeddings_answer_without_vectors_is_a_server_error():
    with pytest.raises(ProviderError):
        adapter_for("mistral").embeddings_response(MISTRAL, b'{"data": [{"index": 0}]}')


# -- streams -------------------------------------------------------------------------------------


def openai_chunk(delta: dict, finish: str | None = None, **extra) -> dict:
    return {
        "id": "chatcmpl-123",
        "object": "chat.completion.chunk",
        "created": 1694268190,
        "model": "gpt-4o-mini",
        "system_fingerprint": "fp_44709d6fcb",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        **extra,
    }


OPENAI_TOOL_STREAM = sse(
    openai_chunk({"role": "assistant", "content": None, "refusal": None}),
    openai_chunk(
        {
            "tool_calls": [
                {"index": 0, "id": "call_A", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
            ]
        }
    ),
    openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}),
    openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ty":"Paris"}'}}]}),
    openai_chunk(
        {
            "tool_calls": [
                {"index": 1, "id": "call_B", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}
            ]
        }
    ),
    openai_chunk({}, "tool_calls"),
    {
        "id": "chatcmpl-123",
        "object": "chat.completion.chunk",
        "created": 1694268190,
        "model": "gpt-4o-mini",
        "choices": [],
        "usage": {
            "prompt_tokens": 1200,
            "completion_tokens": 30,
            "total_tokens": 1230,
            "prompt_tokens_details": {"cached_tokens": 1024},
        },
    },
    "[DONE]",
)


def deltas(chunks: list[dict]) -> list[tuple[dict, str | None]]:
    return [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in chunks]


def test_openai_stream_decodes_tool_call_deltas_and_usage_under_every_split():
    chunks, usage = assert_split_invariant("openai", OPENAI, OPENAI_TOOL_STREAM)
    assert deltas(chunks) == [
        ({"role": "assistant", "content": None}, None),
        (
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_A",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            },
            None,
        ),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '{"ci'}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": 'ty":"Paris"}'}}]}, None),
        (
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_B",
                        "type": "function",
                        "function": {"name": "get_time", "arguments": "{}"},
                    }
                ]
            },
            None,
        ),
        ({}, "tool_calls"),
    ]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "chatcmpl-123" for c in chunks)
    assert all("usage" not in c for c in chunks)  # usage goes through decoder.usage only
    assert usage == Usage(prompt_tokens=1200, completion_tokens=30, cached_tokens=1024)


def test_openai_stream_cut_before_done_raises_even_after_the_usage_chunk():
    cut = OPENAI_TOOL_STREAM[: OPENAI_TOOL_STREAM.index(b"data: [DONE]")]
    with pytest.raises(ProviderError) as caught:
        decode("openai", OPENAI, cut, [])
    assert caught.value.kind == "server"


def test_openai_stream_cut_mid_event_raises():
    with pytest.raises(ProviderError):
        decode("openai", OPENAI, OPENAI_TOOL_STREAM[:200], [])


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        ({"message": "The server had an error", "type": "server_error"}, "server"),
        ({"message": "Rate limit", "type": "tokens", "code": "rate_limit_exceeded"}, "rate_limited"),
        ({"message": "overloaded", "type": "overloaded_error"}, "overloaded"),
        ({"message": "?", "type": "brand_new_error"}, "server"),
        ({"message": "upstream 503", "code": 503}, "overloaded"),
    ],
)
def test_openai_error_event_mid_stream_raises_with_its_kind(error, kind):
    stream = sse(openai_chunk({"role": "assistant", "content": "Hel"}), {"error": error})
    decoder = adapter_for("openai").stream_decoder(OPENAI)
    with pytest.raises(ProviderError) as caught:
        decoder.feed(stream)
    assert caught.value.kind == kind


def test_a_stream_event_that_is_not_json_is_a_server_error():
    with pytest.raises(ProviderError) as caught:
        adapter_for("openai").stream_decoder(OPENAI).feed(b"data: {not json\n\n")
    assert caught.value.kind == "server"


def test_nothing_after_done_counts():
    stream = sse(openai_chunk({"content": "a"}, "stop"), "[DONE]", openai_chunk({"content": "late"}))
    chunks, _ = decode("openai", OPENAI, stream, [])
    assert deltas(chunks) == [({"content": "a"}, "stop")]


def test_azure_stream_drops_the_prompt_filter_chunk_and_keeps_content():
    stream = sse(
        {
            "choices": [],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
            "prompt_filter_results": [{"prompt_index": 0}],
        },
        openai_chunk({"role": "assistant", "content": ""}),
        openai_chunk({"content": "Hi"}),
        {**openai_chunk({}, "stop"), "choices": [{"index": 0, "finish_reason": "stop", "content_filter_results": {}}]},
        {**openai_chunk({}), "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}},
        "[DONE]",
    )
    chunks, usage = assert_split_invariant("azure-openai", AZURE, stream)
    assert deltas(chunks) == [({"role": "assistant", "content": ""}, None), ({"content": "Hi"}, None), ({}, "stop")]
    assert usage == Usage(prompt_tokens=5, completion_tokens=1)


MISTRAL_TOOL_STREAM = sse(
    {
        "id": "m1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "mistral-large-latest",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
    },
    {
        "id": "m1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "mistral-large-latest",
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {
                            "id": "D681PevKs",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                            "index": 0,
                        },
                        {
                            "id": "Q3zz81bYt",
                            "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'},
                            "index": 0,
                        },
                    ]
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 90, "total_tokens": 130, "completion_tokens": 40},
    },
    "[DONE]",
)


def test_mistral_stream_whole_tool_calls_all_at_index_zero_get_distinct_indexes():
    chunks, usage = assert_split_invariant("mistral", MISTRAL, MISTRAL_TOOL_STREAM)
    assert deltas(chunks)[1] == (
        {
            "tool_calls": [
                {
                    "index": 0,
                    "id": "D681PevKs",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "index": 1,
                    "id": "Q3zz81bYt",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Lyon"}'},
                },
            ]
        },
        "tool_calls",
    )
    assert usage == Usage(prompt_tokens=90, completion_tokens=40)


def test_mistral_stream_error_finish_raises():
    stream = sse(openai_chunk({"content": "par"}), openai_chunk({}, "error"), "[DONE]")
    with pytest.raises(ProviderError):
        decode("mistral", MISTRAL, stream, [])


def test_compatible_stream_ending_after_a_finish_reason_without_done_counts_as_finished():
    stream = sse({"choices": [{"delta": {"content": "hi"}}]}, {"choices": [{"delta": {}, "finish_reason": "eos"}]})
    chunks, usage = assert_split_invariant("openai-compatible", COMPATIBLE, stream)
    assert deltas(chunks) == [({"content": "hi"}, None), ({}, "stop")]
    assert usage is None
    assert chunks[0]["model"] == "llama3.1"


def test_compatible_stream_cut_before_any_finish_reason_raises():
    with pytest.raises(ProviderError):
        decode("openai-compatible", COMPATIBLE, sse({"choices": [{"delta": {"content": "hi"}}]}), [])


def test_compatible_stream_repeating_id_and_name_in_every_fragment_passes_them_once():
    fragment = {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    stream = sse(
        {"choices": [{"delta": {"tool_calls": [fragment]}}]},
        {"choices": [{"delta": {"tool_calls": [fragment]}}]},
        {"choices": [{"delta": {}, "finish_reason": "tool_calls"}]},
        "[DONE]",
    )
    chunks, _ = decode("openai-compatible", COMPATIBLE, stream, [])
    assert deltas(chunks)[:2] == [
        (
            {
                "tool_calls": [
                    {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ]
            },
            None,
        ),
        ({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}, None),
    ]
