"""The LLM response cache: keys (normalized, tenant-scoped, deterministic requests only),
entries in a real Redis (TTL, per-route cap, failure = miss), and replayed streams."""

import asyncio
import copy
import os
import time

import orjson
import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.redisconn import FastRedis
from llm.canonical import Usage
from llm.llmcache import LlmCache, cache_key, chunks_to_completion, completion_to_chunks, index_key_for
from portal.embedded_redis import free_port

REDIS_URL = os.environ["REDIS_URL"]


def request(**overrides):
    body = {
        "model": "support-bot",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        "temperature": 0,
        "max_tokens": 64,
    }
    body.update(overrides)
    return body


def completion(text="Paris.", **overrides):
    answer = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_800_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "system_fingerprint": "fp_1",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": Usage(prompt_tokens=21, completion_tokens=2, cached_tokens=0).to_openai(),
    }
    answer.update(overrides)
    return answer


def tool_completion():
    return completion(
        choices=[
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'},
                        },
                        {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ]
    )


# -- keys --------------------------------------------------------------------------------------


def test_the_same_request_has_the_same_key():
    assert cache_key(1, "support-bot", request()) == cache_key(1, "support-bot", copy.deepcopy(request()))


def test_another_tenant_never_shares_a_key():
    assert cache_key(1, "support-bot", request()) != cache_key(2, "support-bot", request())


def test_another_route_or_another_message_has_another_key():
    base = cache_key(1, "support-bot", request())
    assert cache_key(1, "sales-bot", request()) != base
    assert cache_key(1, "support-bot", request(messages=[{"role": "user", "content": "Hi"}])) != base
    assert cache_key(1, "support-bot", request(max_tokens=65)) != base
    assert cache_key(1, "support-bot", request(tools=[{"type": "function", "function": {"name": "f"}}])) != base
    assert cache_key(1, "support-bot", request(seed=7)) != base
    assert cache_key(1, "support-bot", request(response_format={"type": "json_object"})) != base
    assert cache_key(1, "support-bot", request(logprobs=True)) != base  # any field not known to be inert counts


def test_key_order_and_json_whitespace_do_not_change_the_key():
    raw_a = b'{"model": "support-bot", "temperature": 0, "messages": [{"role": "user", "content": "hi"}]}'
    raw_b = b'{\n  "messages":[{"content":"hi","role":"user"}],\n  "temperature":0.0,"model":"support-bot"}'
    assert cache_key(1, "support-bot", orjson.loads(raw_a)) == cache_key(1, "support-bot", orjson.loads(raw_b))


def test_tool_call_arguments_are_compared_as_json():
    def with_arguments(arguments):
        call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": arguments}}
        return request(
            messages=[
                {"role": "user", "content": "x"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"},
            ]
        )

    same = cache_key(1, "r", with_arguments('{"b": 1, "a": [1, 2]}'))
    assert same == cache_key(1, "r", with_arguments('{"a":[1,2],"b":1}'))
    assert same != cache_key(1, "r", with_arguments('{"a":[2,1],"b":1}'))
    assert cache_key(1, "r", with_arguments("not json {")) is not None  # kept verbatim


def test_stream_options_user_and_null_fields_do_not_change_the_key():
    base = cache_key(1, "support-bot", request())
    assert cache_key(1, "support-bot", request(stream=True, stream_options={"include_usage": True})) == base
    assert cache_key(1, "support-bot", request(user="end-user-42")) == base
    assert cache_key(1, "support-bot", request(stop=None, n=1)) == base


def test_nondeterministic_requests_are_cached_only_when_the_route_allows():
    assert cache_key(1, "r", request(temperature=0.7)) is None
    assert cache_key(1, "r", request(temperature=0.7), cache_nondeterministic=True) is not None
    unset = request()
    del unset["temperature"]  # the provider's default, 1: not deterministic
    assert cache_key(1, "r", unset) is None
    assert cache_key(1, "r", unset, cache_nondeterministic=True) is not None
    assert cache_key(1, "r", request(temperature=0.0)) is not None


@pytest.mark.parametrize("bad", [{"n": 2}, {"n": "1"}, {"n": True}, {"temperature": "0"}, {"temperature": False}])
def test_several_choices_and_malformed_parameters_are_not_cached(bad):
    assert cache_key(1, "r", request(**bad), cache_nondeterministic=True) is None


def test_keys_name_their_route_index_whatever_the_alias_holds():
    key = cache_key(7, "weird:alias/with spaces", request())
    assert key is not None and key.count(":") == 5  # portico:llm:cache:<route tag>:<tenant>:<digest>
    assert index_key_for(key) == index_key_for(cache_key(8, "weird:alias/with spaces", request()))
    assert index_key_for(key) != index_key_for(cache_key(7, "other", request()))


# -- replayed streams ----------------------------------------------------------------------------


def test_a_completion_replays_as_chunks_and_assembles_back():
    answer = completion("The capital of France is Paris, on the Seine, since the Middle Ages.")
    chunks = completion_to_chunks(answer)
    deltas = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert deltas[0] == "" and len([d for d in deltas if d]) >= 3  # the text in several deltas
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "chatcmpl-1" for c in chunks)
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == answer["usage"]
    assert chunks_to_completion(chunks) == answer


def test_tool_calls_replay_with_their_arguments_in_pieces():
    answer = tool_completion()
    chunks = completion_to_chunks(answer)
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert calls[0] == {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert (
        "".join(c["function"]["arguments"] for c in calls if c["index"] == 0) == '{"city": "Paris", "unit": "celsius"}'
    )
    assert len([c for c in calls if c["index"] == 0]) > 2
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks_to_completion(chunks) == answer


def test_refusals_logprobs_and_other_fields_survive_the_round_trip():
    answer = completion(service_tier="default")
    answer["choices"][0]["message"] = {
        "role": "assistant",
        "content": None,
        "refusal": "I can't help with that request.",
    }
    answer["choices"][0]["logprobs"] = {"content": [{"token": "I", "logprob": -0.1}], "refusal": None}
    answer["choices"][0]["content_filter_results"] = {"hate": {"filtered": False}}
    assert chunks_to_completion(completion_to_chunks(answer)) == answer


def test_several_choices_and_an_empty_answer_round_trip():
    answer = completion("")
    answer["choices"].append({"index": 1, "message": {"role": "assistant", "content": "B"}, "finish_reason": "length"})
    assert chunks_to_completion(completion_to_chunks(answer)) == answer


def test_a_providers_stream_assembles_into_its_completion_with_the_usage_given_apart():
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}

    def chunk(delta, finish=None):
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    stream = [
        chunk({"role": "assistant", "content": None}),
        chunk(
            {
                "content": None,
                "tool_calls": [{"index": 0, "id": "t", "type": "function", "function": {"name": "f", "arguments": ""}}],
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}),
        chunk({}, "tool_calls"),
    ]
    assembled = chunks_to_completion(stream, Usage(prompt_tokens=5, completion_tokens=3))
    assert assembled == {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "t", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}],
                },
            }
        ],
        "usage": {
            "prompt_tokens": 5,
            "completion_tokens": 3,
            "total_tokens": 8,
            "prompt_tokens_details": {"cached_tokens": 0},
        },
    }


# -- entries in Redis ------------------------------------------------------------------------------


def run(coro):
    return asyncio.run(coro)


async def _with_cache(scenario, **options):
    client = FastRedis(REDIS_URL)
    try:
        return await scenario(LlmCache(client, **options))
    finally:
        await client.aclose()


def test_a_stored_answer_is_found_by_the_same_request_and_not_by_another_tenant():
    tenant = int(time.time() * 1000)
    key = cache_key(tenant, "hit-test", request())
    other = cache_key(tenant + 1, "hit-test", request())

    async def scenario(cache):
        miss = await cache.lookup(key)
        stored = await cache.store(key, completion(), 60)
        return miss, stored, await cache.lookup(key), await cache.lookup(other)

    miss, stored, hit, other_tenant = run(_with_cache(scenario))
    assert miss is None and stored and hit == completion() and other_tenant is None


def test_entries_live_the_routes_ttl():
    key = cache_key(int(time.time() * 1000), "ttl-test", request())

    async def scenario(cache):
        await cache.store(key, completion(), 1)
        found = await cache.lookup(key)
        await asyncio.sleep(1.2)
        return found, await cache.lookup(key)

    found, later = run(_with_cache(scenario))
    assert found is not None and later is None
    assert not run(_with_cache(lambda cache: cache.store(key, completion(), 0)))


def test_each_route_holds_at_most_its_cap_and_drops_the_oldest():
    alias, tenant = f"cap-{time.time()}", 1
    keys = [cache_key(tenant, alias, request(seed=i)) for i in range(8)]

    async def scenario(cache):
        for key in keys:
            await cache.store(key, completion(), 60)
        return [await cache.lookup(key) is not None for key in keys]

    assert run(_with_cache(scenario, max_entries_per_route=5)) == [False] * 3 + [True] * 5
    with redis.Redis.from_url(REDIS_URL) as client:
        assert client.zcard(index_key_for(keys[0])) == 5
        assert client.ttl(index_key_for(keys[0])) > 0


def test_unfinished_oversized_or_malformed_answers_are_not_stored():
    key = cache_key(int(time.time() * 1000), "refuse-test", request())
    cut = completion()
    cut["choices"][0]["finish_reason"] = None  # a stream cut before its end

    async def scenario(cache):
        return [
            await cache.store(key, cut, 60),
            await cache.store(key, completion("x" * 2000), 60),
            await cache.store(key, {"object": "chat.completion", "choices": []}, 60),
            await cache.store(key, {"error": "nope"}, 60),
        ]

    assert run(_with_cache(scenario, max_entry_bytes=1000)) == [False] * 4


def test_an_unreadable_entry_is_a_miss():
    key = cache_key(int(time.time() * 1000), "garbage-test", request())
    with redis.Redis.from_url(REDIS_URL) as client:
        client.set(key, b"\xff not json", ex=60)
    assert run(_with_cache(lambda cache: cache.lookup(key))) is None


def test_a_redis_failure_is_a_miss_and_a_skipped_store():
    dead = aioredis.Redis(port=free_port(), socket_connect_timeout=0.1, retry=Retry(NoBackoff(), 0))
    cache = LlmCache(dead)
    key = cache_key(1, "r", request())

    async def scenario():
        return await cache.lookup(key), await cache.store(key, completion(), 60)

    assert run(scenario()) == (None, False)


def test_a_flushed_script_cache_is_reloaded_and_redis_py_works_too():
    key = cache_key(int(time.time() * 1000), "flush-test", request())

    async def scenario():
        client = aioredis.Redis.from_url(REDIS_URL)
        cache = LlmCache(client)
        await cache.store(key, completion("one"), 60)
        await client.script_flush()
        await cache.store(key, completion("two"), 60)
        found = await cache.lookup(key)
        await client.aclose()
        return found

    assert run(scenario())["choices"][0]["message"]["content"] == "two"
