"""The LLM response cache through the real gateway (gunicorn, 2 workers) and the session's
Redis: a deterministic request is answered once by the provider and then from the cache
(``X-Cache: HIT``), only within the tenant that asked; a streamed request is served from
the cache as a replayed stream the SDKs assemble into the same answer; requests with a
temperature above 0 are cached only when the route says so."""

from __future__ import annotations

from typing import Any

import pytest

from tests.llm.conftest import Target, user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

TTL = 60


def ask(route, text: str = "What is a cache?", **params: Any):
    """(headers, completion) of one call on a new connection."""
    raw = route.openai().chat.completions.with_raw_response.create(model=route.alias, messages=user(text), **params)
    return raw.headers, raw.parse()


def ask_stream(route, text: str = "What is a cache?", **params: Any):
    """(headers, assembled text, finish reason, usage) of one streamed call."""
    raw = route.openai().chat.completions.with_raw_response.create(
        model=route.alias, messages=user(text), stream=True, **params
    )
    pieces, finish, usage = [], None, None
    for chunk in raw.parse():
        usage = chunk.usage or usage
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    return raw.headers, "".join(pieces), finish, usage


def upstream_calls(mock_llm, route) -> int:
    return len(mock_llm.requests(model=route.target.upstream))


def test_a_deterministic_request_is_answered_by_the_provider_once_then_from_the_cache(ai_route, mock_llm, call_record):
    route = ai_route(cache_ttl_seconds=TTL)

    first_headers, first = ask(route, temperature=0)
    second_headers, second = ask(route, temperature=0)

    assert first_headers["x-cache"] == "MISS" and second_headers["x-cache"] == "HIT"
    assert second.choices[0].message.content == first.choices[0].message.content
    assert second.choices[0].message.content == "Mock openai answer to: What is a cache?"
    assert second.choices[0].finish_reason == "stop" and second.model == route.alias
    assert second.usage.total_tokens == first.usage.total_tokens
    assert upstream_calls(mock_llm, route) == 1
    assert call_record(first_headers["x-request-id"])["cache_hit"] is False
    hit = call_record(second_headers["x-request-id"])
    assert hit["cache_hit"] is True and hit["status"] == 200 and hit["model"] == route.alias

    # Spelled differently but the same request (key order, 0.0 for 0): still a hit.
    raw = route.openai().chat.completions.with_raw_response.create(
        messages=user("What is a cache?"), temperature=0.0, model=route.alias
    )
    assert raw.headers["x-cache"] == "HIT"
    # Another question misses.
    assert ask(route, "Something else?", temperature=0)[0]["x-cache"] == "MISS"
    assert upstream_calls(mock_llm, route) == 2


def test_the_cache_is_scoped_to_the_tenant(ai_route, mock_llm):
    route = ai_route(cache_ttl_seconds=TTL)
    other_tenant = ai_route.another_caller(route)
    same_tenant = ai_route.another_caller(route, tenant=route.tenant)

    assert ask(route, temperature=0)[0]["x-cache"] == "MISS"
    headers, answer = ask(other_tenant, temperature=0)

    assert headers["x-cache"] == "MISS", "one tenant's answers are never served to another"
    assert answer.choices[0].message.content == "Mock openai answer to: What is a cache?"
    assert upstream_calls(mock_llm, route) == 2
    assert ask(other_tenant, temperature=0)[0]["x-cache"] == "HIT"
    # The scope is the tenant, not the application: its other applications share it.
    assert ask(same_tenant, temperature=0)[0]["x-cache"] == "HIT"
    assert upstream_calls(mock_llm, route) == 2


def test_a_streamed_request_is_served_from_the_cache_as_a_replayed_stream(ai_route, mock_llm):
    route = ai_route(cache_ttl_seconds=TTL)
    _headers, whole = ask(route, temperature=0)

    headers, text, finish, usage = ask_stream(route, temperature=0, stream_options={"include_usage": True})

    assert headers["x-cache"] == "HIT" and headers["content-type"].startswith("text/event-stream")
    assert text == whole.choices[0].message.content and finish == "stop"
    assert usage is not None and usage.total_tokens == whole.usage.total_tokens
    assert upstream_calls(mock_llm, route) == 1

    # A stream stores what it streamed: the next stream and the next whole answer replay it.
    question = "And a streamed question?"
    miss_headers, streamed, _finish, no_usage = ask_stream(route, question, temperature=0)
    assert miss_headers["x-cache"] == "MISS" and no_usage is None
    hit_headers, replayed, replay_finish, replay_usage = ask_stream(route, question, temperature=0)
    assert hit_headers["x-cache"] == "HIT" and replayed == streamed == f"Mock openai answer to: {question}"
    assert replay_finish == "stop" and replay_usage is None, "usage only when the client asks for it"
    whole_headers, answer = ask(route, question, temperature=0)
    assert whole_headers["x-cache"] == "HIT" and answer.choices[0].message.content == streamed
    assert upstream_calls(mock_llm, route) == 2


def test_an_anthropic_stream_is_replayed_from_the_cache(ai_route, mock_llm):
    route = ai_route([Target("anthropic")], cache_ttl_seconds=TTL)
    client = route.anthropic()
    # This SDK version has no temperature parameter; the Messages API still takes one.
    request = {"model": route.alias, "max_tokens": 100, "messages": user("Cache me"), "extra_body": {"temperature": 0}}
    first = client.messages.create(**request)

    with client.messages.stream(**request) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text == first.content[0].text == "Mock anthropic answer to: Cache me"
    assert final.stop_reason == "end_turn"
    assert upstream_calls(mock_llm, route) == 1


def test_requests_above_temperature_0_are_cached_only_when_the_route_says_so(ai_route, mock_llm):
    route = ai_route(cache_ttl_seconds=TTL)
    for params in ({"temperature": 0.7}, {}):  # no temperature: the provider's default, 1
        first_headers, _first = ask(route, **params)
        second_headers, _second = ask(route, **params)
        assert "HIT" not in (first_headers.get("x-cache"), second_headers.get("x-cache"))
    assert upstream_calls(mock_llm, route) == 4

    lenient = ai_route.add_route(route, cache_ttl_seconds=TTL, cache_nondeterministic=True)
    assert ask(lenient, temperature=0.7)[0]["x-cache"] == "MISS"
    assert ask(lenient, temperature=0.7)[0]["x-cache"] == "HIT"
    assert ask(lenient, temperature=0.2)[0]["x-cache"] == "MISS", "the temperature is part of the request"
    assert upstream_calls(mock_llm, lenient) == 2


def test_a_route_without_a_ttl_never_caches(ai_route, mock_llm):
    route = ai_route()
    headers = [ask(route, temperature=0)[0] for _ in range(2)]
    assert all("x-cache" not in h for h in headers)
    assert upstream_calls(mock_llm, route) == 2


def test_a_masked_request_hits_the_cache_but_gets_its_own_values_back(ai_route, mock_llm):
    # Mask mode sends "<PII_EMAIL_1>" upstream for any address: two prompts differing only in
    # the address are one upstream request, so the second is a hit, and its answer must be
    # restored with its own address, never the first caller's.
    route = ai_route(cache_ttl_seconds=TTL, pii_mode="mask")

    first_headers, first = ask(route, "Mail alice@example.com now", temperature=0)
    second_headers, second = ask(route, "Mail bob@example.org now", temperature=0)
    _headers, streamed, _finish, _usage = ask_stream(route, "Mail carol@example.net now", temperature=0)

    assert (first_headers["x-cache"], second_headers["x-cache"]) == ("MISS", "HIT")
    assert first.choices[0].message.content == "Mock openai answer to: Mail alice@example.com now"
    assert second.choices[0].message.content == "Mock openai answer to: Mail bob@example.org now"
    assert streamed == "Mock openai answer to: Mail carol@example.net now"
    assert upstream_calls(mock_llm, route) == 1
