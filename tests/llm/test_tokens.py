"""Token estimates: the rule against counts OpenAI published, prompts, max completion, streams.

Reference figures (cl100k_base, the encoding of gpt-3.5-turbo and gpt-4) come from OpenAI's
cookbook notebook "How to count tokens with tiktoken"
(github.com/openai/openai-cookbook, examples/How_to_count_tokens_with_tiktoken.ipynb):
"tiktoken is great!" = 6, "antidisestablishmentarianism" = 6, "2 + 2 = 4" = 7,
"お誕生日おめでとう" = 9, and its six-message example conversation = 129 prompt tokens as
counted by the OpenAI API for gpt-3.5-turbo-0613 and gpt-4-0613.

Tolerances: the conversation within 10 %; each short string within 2 tokens (a single rare
word such as "tiktoken" is where a fixed rule is furthest off).
"""

from __future__ import annotations

import time

import pytest

from llm.tokens import (
    IMAGE_TOKENS_HIGH,
    IMAGE_TOKENS_LOW,
    MAX_COMPLETION_TOKENS,
    StreamTokenCounter,
    estimate_max_completion,
    estimate_prompt_tokens,
    estimate_text_tokens,
)

COOKBOOK_CONVERSATION = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon "
        "into plain English.",
    },
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities "
        "for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]


def test_the_cookbook_conversation_is_estimated_within_ten_percent_of_openais_129() -> None:
    estimate = estimate_prompt_tokens({"model": "gpt-4", "messages": COOKBOOK_CONVERSATION})
    assert abs(estimate - 129) <= 12.9, estimate


@pytest.mark.parametrize(
    ("text", "openai_count"),
    [("tiktoken is great!", 6), ("antidisestablishmentarianism", 6), ("2 + 2 = 4", 7), ("お誕生日おめでとう", 9)],
)
def test_short_strings_are_estimated_within_two_tokens_of_openais_counts(text: str, openai_count: int) -> None:
    assert abs(estimate_text_tokens(text) - openai_count) <= 2


def test_the_rule_counts_cjk_per_character_digits_by_threes_and_other_scripts_by_letters() -> None:
    assert estimate_text_tokens("日本語") == 3
    assert estimate_text_tokens("1234567") == 3
    assert estimate_text_tokens("привет") == 3  # 6 Cyrillic letters, 2.5 per token
    assert estimate_text_tokens("") == 0
    assert estimate_text_tokens("word") == 1
    assert estimate_text_tokens("🙂🙂") == 2


def test_english_prose_is_about_four_characters_per_token() -> None:
    prose = "The quick brown fox jumps over the lazy dog while the cat sleeps in the warm afternoon sun. " * 20
    assert 0.18 <= estimate_text_tokens(prose) / len(prose) <= 0.3


def test_prompt_estimate_adds_overhead_per_message_and_for_the_reply() -> None:
    one = estimate_prompt_tokens({"messages": [{"role": "user", "content": "hi"}]})
    assert one == 3 + 1 + 1 + 3  # per message, role, content, reply priming
    named = estimate_prompt_tokens({"messages": [{"role": "user", "name": "bob", "content": "hi"}]})
    assert named == one + 2


def test_prompt_estimate_counts_tools_tool_calls_schemas_and_images() -> None:
    base = {"messages": [{"role": "user", "content": "hi"}]}
    plain = estimate_prompt_tokens(base)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    assert estimate_prompt_tokens({**base, "tools": tools}) > plain
    schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    assert estimate_prompt_tokens({**base, "response_format": schema}) > plain
    call = {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": '{"city": "Paris"}'}}]}
    assert estimate_prompt_tokens({"messages": [*base["messages"], call]}) > plain + 3
    low = {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}
    high = {"type": "image_url", "image_url": {"url": "https://x/y.png"}}
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, low, high]}]}
    assert estimate_prompt_tokens(parts) == plain + IMAGE_TOKENS_LOW + IMAGE_TOKENS_HIGH


def test_prompt_estimate_counts_embedding_inputs() -> None:
    assert estimate_prompt_tokens({"input": "hello world"}) == 2
    assert estimate_prompt_tokens({"input": ["hello", "world", [1, 2, 3], 9]}) == 2 + 3 + 1


def test_prompt_estimate_survives_malformed_requests() -> None:
    nested: object = "x"
    for _ in range(3000):
        nested = [nested]
    weird = {
        "messages": [
            None,
            5,
            {"role": 7, "content": {"a": 1}},
            {"content": nested},
            {"tool_calls": [None, {"function": 3}]},
        ],
        "tools": [{"self": nested}],
        "input": {"not": "a list"},
    }
    assert estimate_prompt_tokens(weird) >= 0
    assert estimate_prompt_tokens({"messages": "nope"}) == 0


def test_a_megabyte_of_text_is_estimated_quickly() -> None:
    text = "Lorem ipsum dolor sit amet, 12345 consectetur! " * 22_000
    started = time.perf_counter()
    assert estimate_text_tokens(text) > 0
    assert time.perf_counter() - started < 3.0


def test_max_completion_prefers_max_completion_tokens_then_max_tokens_then_the_default() -> None:
    assert estimate_max_completion({"max_completion_tokens": 50, "max_tokens": 70}, 1024) == 50
    assert estimate_max_completion({"max_tokens": 70}, 1024) == 70
    assert estimate_max_completion({}, 1024) == 1024


@pytest.mark.parametrize("value", [0, -5, True, "100", 12.5, None, [100]])
def test_max_completion_ignores_invalid_values(value: object) -> None:
    assert estimate_max_completion({"max_tokens": value, "max_completion_tokens": value}, 256) == 256


def test_max_completion_multiplies_by_n_choices_and_is_capped() -> None:
    assert estimate_max_completion({"max_tokens": 100, "n": 3}, 1) == 300
    assert estimate_max_completion({"max_tokens": 10**30}, 1) == MAX_COMPLETION_TOKENS
    assert estimate_max_completion({"max_tokens": 10**8, "n": 10**6}, 1) == MAX_COMPLETION_TOKENS
    assert estimate_max_completion({}, -1) == 0


STREAMED = "Sure! Here are 3 ideas:\n\n1. Visit 東京 at 10:30 — it's great.  Then   rest.\n2. Don't-stop_now."


def test_a_stream_counted_delta_by_delta_matches_the_whole_text_for_every_split() -> None:
    whole = estimate_text_tokens(STREAMED)
    for cut in range(len(STREAMED) + 1):
        counter = StreamTokenCounter()
        counter.feed(STREAMED[:cut])
        counter.feed(STREAMED[cut:])
        assert counter.tokens == whole, cut
    counter = StreamTokenCounter()
    for char in STREAMED:
        counter.feed(char)
    assert counter.tokens == whole


def test_a_stream_without_whitespace_does_not_grow_a_buffer() -> None:
    counter = StreamTokenCounter()
    for _ in range(10_000):
        counter.feed("abcdefghij")
    assert len(counter._pending) <= 256 + 10
    assert counter.tokens > 0


def test_a_stream_counter_reads_content_and_tool_calls_from_chunks() -> None:
    counter = StreamTokenCounter()
    counter.feed_chunk({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello there"}}]})
    counter.feed_chunk(
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"name": "get", "arguments": '{"a": '}}]}}]}
    )
    counter.feed_chunk({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}}]})
    counter.feed_chunk({"choices": [], "usage": None})
    counter.feed_chunk({"choices": [None, {"delta": None}, {"delta": {"tool_calls": [None, {"function": 1}]}}]})
    counter.feed(None)  # type: ignore[arg-type]
    expected = estimate_text_tokens("Hello there") + 3 + estimate_text_tokens("get") + estimate_text_tokens('{"a": 1}')
    assert counter.tokens == expected
