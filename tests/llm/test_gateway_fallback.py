"""Routing and resilience through the real gateway (gunicorn, 2 workers) with the mock
provider behind it, seen through the official SDKs: fallback when the primary answers 429,
500 or too late (whole answers, and streams before their first content event), no fallback
on the provider's own 400/404, a stream cut after its first content makes the SDK raise,
the A/B split, the key pool (an invalid key is dropped, a 429 key rests) and cool-down of a
failing target.

Faults are armed on the primary's upstream model name (unique per test), so they never
touch the fallback. Where a test depends on one worker's memory (a disabled key, a resting
key, a cool-down), its calls go through one SDK client, whose connection stays with one
worker; where it must spread over both workers, each call gets a client of its own.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import threading
import time
from collections import Counter
from typing import Any

import anthropic
import openai
import pytest

from llm.router import KEY_STATE_HASH
from tests.llm.conftest import Target, clean, unique, user, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]


def ask(route, text: str = "Hello there", client: openai.OpenAI | None = None, **params: Any):
    """(headers, completion) of one non-streamed call; a new client (connection) unless given."""
    client = client or route.openai()
    raw = client.chat.completions.with_raw_response.create(model=route.alias, messages=user(text), **params)
    return raw.headers, raw.parse()


def ask_stream(route, text: str = "Hello there", client: openai.OpenAI | None = None):
    """(headers, assembled text, finish reason) of one streamed call."""
    client = client or route.openai()
    raw = client.chat.completions.with_raw_response.create(model=route.alias, messages=user(text), stream=True)
    pieces, finish = [], None
    for chunk in raw.parse():
        for choice in chunk.choices:
            pieces.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    return raw.headers, "".join(pieces), finish


def seen_by(mock_llm, target) -> list[dict]:
    return mock_llm.requests(model=target.upstream)


def keys_used(mock_llm, *secrets: str) -> list[str]:
    """The key (by its last 4) of each request the mock received with one of ``secrets``, in order."""
    wanted = {s[-4:] for s in secrets}
    return [r["key_last4"] for r in mock_llm.requests() if r["key_last4"] in wanted]


_key_serial = itertools.count(1)


def fresh_key(label: str) -> str:
    # Unique last 4 characters: the mock's log and faults know a key by them.
    return f"sk-{label}-{unique('k')}-{next(_key_serial):04d}"


def primary_and_fallback(ai_route, **options: Any):
    options.setdefault("retries", 0)
    return ai_route([Target("openai")], fallbacks=[Target("openai")], **options)


# -- fallback on the primary's failure ------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "params"),
    [
        ("status", {"status": 429, "retry_after": 7}),
        ("status", {"status": 500}),
        ("status", {"status": 503}),
    ],
    ids=["429-with-retry-after", "500", "503"],
)
def test_a_failing_primary_falls_back_and_the_client_gets_the_fallbacks_whole_answer(
    ai_route, mock_llm, call_record, fault, params
):
    route = primary_and_fallback(ai_route)
    primary, fallback = route.target, route.fallbacks[0]
    mock_llm.faults(fault, match={"model": primary.upstream}, **params)

    headers, completion = ask(route)

    assert completion.choices[0].message.content == "Mock openai answer to: Hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert headers["x-portico-model"] == fallback.upstream
    assert [r["status"] for r in seen_by(mock_llm, primary)] == [params["status"]]
    assert [r["status"] for r in seen_by(mock_llm, fallback)] == [200]
    assert all(clean(r) for r in seen_by(mock_llm, fallback))
    record = call_record(headers["x-request-id"])
    assert record["status"] == 200 and record["fallbacks"] == 1
    assert record["upstream_model"] == fallback.upstream


def test_a_primary_slower_than_the_first_byte_timeout_falls_back(ai_route, mock_llm, call_record):
    route = primary_and_fallback(ai_route, first_byte_timeout_seconds=0.4)
    primary, fallback = route.target, route.fallbacks[0]
    mock_llm.faults("slow_first_byte", match={"model": primary.upstream}, ms=2500)

    headers, completion = ask(route)

    assert completion.choices[0].message.content == "Mock openai answer to: Hello there"
    assert headers["x-portico-model"] == fallback.upstream
    assert len(seen_by(mock_llm, primary)) == 1 and len(seen_by(mock_llm, fallback)) == 1
    record = call_record(headers["x-request-id"])
    assert record["fallbacks"] == 1
    # The gateway did not wait for the slow answer: its overhead excludes the upstream
    # wait, and the call took about the timeout, not the 2.5 s delay.
    assert record["latency_ms"] < 2000


def test_a_fallback_of_another_provider_kind_answers_in_the_clients_format(ai_route, mock_llm):
    route = ai_route([Target("openai")], fallbacks=[Target("anthropic")], retries=0)
    mock_llm.faults("status", match={"model": route.target.upstream}, status=500)

    headers, completion = ask(route)

    assert headers["x-portico-provider"] == "anthropic"
    assert headers["x-portico-model"] == route.fallbacks[0].upstream
    assert completion.choices[0].message.content == "Mock anthropic answer to: Hello there"
    assert all(clean(r) for r in seen_by(mock_llm, route.fallbacks[0]))


def test_retries_are_bounded_then_the_chain_is_followed(ai_route, mock_llm, call_record):
    route = ai_route([Target("openai")], fallbacks=[Target("openai"), Target("openai")], retries=1)
    primary, first, second = route.target, *route.fallbacks
    mock_llm.faults("status", match={"model": primary.upstream}, times=-1, status=500)
    mock_llm.faults("status", match={"model": first.upstream}, times=-1, status=502)

    headers, completion = ask(route)

    assert headers["x-portico-model"] == second.upstream
    assert completion.choices[0].message.content == "Mock openai answer to: Hello there"
    # retries=1: the primary twice, each fallback once, in the chain's order.
    assert len(seen_by(mock_llm, primary)) == 2
    assert len(seen_by(mock_llm, first)) == 1 and len(seen_by(mock_llm, second)) == 1
    order = [r["model"] for r in mock_llm.requests() if r["endpoint"] == "chat"]
    assert order == [primary.upstream, primary.upstream, first.upstream, second.upstream]
    assert call_record(headers["x-request-id"])["fallbacks"] == 3


def test_when_every_target_fails_and_the_last_timed_out_the_client_gets_504(ai_route, mock_llm, call_record):
    route = primary_and_fallback(ai_route, first_byte_timeout_seconds=0.3)
    primary, fallback = route.target, route.fallbacks[0]
    mock_llm.faults("status", match={"model": primary.upstream}, status=500)
    mock_llm.faults("slow_first_byte", match={"model": fallback.upstream}, ms=2000)

    with pytest.raises(openai.APIStatusError) as raised:
        ask(route)

    assert raised.value.status_code == 504
    assert len(seen_by(mock_llm, primary)) == 1 and len(seen_by(mock_llm, fallback)) == 1


@pytest.mark.parametrize(
    ("status", "answered", "error_class"),
    [(429, 429, openai.RateLimitError), (500, 502, openai.InternalServerError), (503, 503, openai.InternalServerError)],
)
def test_when_every_target_fails_the_client_gets_the_last_failures_status(
    ai_route, mock_llm, call_record, status, answered, error_class
):
    route = primary_and_fallback(ai_route)
    primary, fallback = route.target, route.fallbacks[0]
    for target in (primary, fallback):
        mock_llm.faults("status", match={"model": target.upstream}, status=status, retry_after=5)

    with pytest.raises(error_class) as raised:
        ask(route)

    error = raised.value
    assert error.status_code == answered
    if status == 429:
        assert 1 <= int(error.response.headers["retry-after"]) <= 5
    assert len(seen_by(mock_llm, primary)) == 1 and len(seen_by(mock_llm, fallback)) == 1
    record = call_record(error.response.headers["x-request-id"])
    assert record["status"] == answered and record["fallbacks"] == 1


@pytest.mark.parametrize("status", [400, 404])
def test_the_providers_own_client_error_is_relayed_without_fallback(ai_route, mock_llm, call_record, status):
    route = primary_and_fallback(ai_route, retries=2)
    primary, fallback = route.target, route.fallbacks[0]
    mock_llm.faults("status", match={"model": primary.upstream}, status=status, message="The provider says no.")

    with pytest.raises(openai.APIStatusError) as raised:
        ask(route)

    error = raised.value
    assert error.status_code == status
    assert isinstance(error, openai.BadRequestError if status == 400 else openai.NotFoundError)
    assert "The provider says no." in error.message
    assert len(seen_by(mock_llm, primary)) == 1, "a client error is never retried"
    assert seen_by(mock_llm, fallback) == [], "a client error never falls back"
    record = call_record(error.response.headers["x-request-id"])
    assert record["status"] == status and record["fallbacks"] == 0


# -- streams: fallback before the first content event, in-band error after it -------------------


@pytest.mark.parametrize(
    ("fault", "params"),
    [
        ("status", {"status": 429, "retry_after": 3}),
        ("status", {"status": 500}),
        ("slow_first_byte", {"ms": 2500}),
        ("cut_stream", {"after_events": 0}),
        ("cut_stream", {"after_events": 1}),
        ("stream_error", {"after_events": 1, "status": 500}),
    ],
    ids=["429", "500", "slow-first-byte", "cut-before-any-event", "cut-after-the-role-only", "in-band-error-first"],
)
def test_a_stream_failing_before_its_first_content_falls_back_to_a_complete_stream(
    ai_route, mock_llm, call_record, fault, params
):
    route = primary_and_fallback(ai_route, first_byte_timeout_seconds=0.4)
    primary, fallback = route.target, route.fallbacks[0]
    mock_llm.faults(fault, match={"model": primary.upstream, "stream": True}, **params)

    headers, text, finish = ask_stream(route)

    assert text == "Mock openai answer to: Hello there" and finish == "stop"
    assert headers["x-portico-model"] == fallback.upstream
    assert [r["stream"] for r in seen_by(mock_llm, primary)] == [True]
    assert [r["stream"] for r in seen_by(mock_llm, fallback)] == [True]
    record = call_record(headers["x-request-id"])
    assert record["status"] == 200 and record["fallbacks"] == 1 and record["error_code"] == ""


def test_an_anthropic_stream_failing_before_its_first_content_falls_back(ai_route, mock_llm):
    route = ai_route([Target("anthropic")], fallbacks=[Target("anthropic")], retries=0)
    primary, fallback = route.target, route.fallbacks[0]
    mock_llm.faults("status", match={"model": primary.upstream, "stream": True}, status=529)

    with route.anthropic().messages.stream(model=route.alias, max_tokens=100, messages=user("Hi")) as stream:
        text = "".join(stream.text_stream)
        message = stream.get_final_message()

    assert text == "Mock anthropic answer to: Hi" and message.stop_reason == "end_turn"
    assert len(seen_by(mock_llm, primary)) == 1 and len(seen_by(mock_llm, fallback)) == 1


@pytest.mark.parametrize("fault", ["cut_stream", "stream_error"])
def test_a_stream_broken_after_its_first_content_makes_the_openai_sdk_raise_and_never_falls_back(
    ai_route, mock_llm, call_record, fault
):
    route = primary_and_fallback(ai_route)
    primary, fallback = route.target, route.fallbacks[0]
    # Events: the role, then one per token; break after the role and two tokens.
    mock_llm.faults(fault, match={"model": primary.upstream}, after_events=3)

    raw = route.openai().chat.completions.with_raw_response.create(
        model=route.alias, messages=user("Tell me a long story"), stream=True
    )
    received = []
    with pytest.raises(openai.APIError):
        for chunk in raw.parse():
            for choice in chunk.choices:
                received.append(choice.delta.content or "")
                assert choice.finish_reason is None, "a cut stream must never look finished"

    assert "".join(received) == "Mock openai"  # what came before the cut, nothing invented
    assert raw.headers["x-portico-model"] == primary.upstream
    assert seen_by(mock_llm, fallback) == [], "once committed, a stream cannot fall back"
    record = call_record(raw.headers["x-request-id"])
    assert record["error_code"] == "upstream_stream_broken"


def test_a_stream_cut_after_its_first_content_makes_the_anthropic_sdk_raise(ai_route, mock_llm):
    route = ai_route([Target("anthropic")], fallbacks=[Target("anthropic")], retries=0)
    primary, fallback = route.target, route.fallbacks[0]
    mock_llm.faults("cut_stream", match={"model": primary.upstream}, after_events=5)

    received = []
    with (
        pytest.raises(anthropic.APIStatusError),
        route.anthropic().messages.stream(
            model=route.alias, max_tokens=100, messages=user("Tell me a long story")
        ) as stream,
    ):
        received.extend(stream.text_stream)

    assert "".join(received) == "Mock anthropic"
    assert seen_by(mock_llm, fallback) == []


# -- the A/B split -------------------------------------------------------------------------------


def test_a_70_30_route_splits_200_calls_over_both_workers_70_30(ai_route, mock_llm):
    route = ai_route([Target("openai", weight=70), Target("openai", weight=30)])
    heavy, light = route.targets

    clients = threading.local()

    def one(i: int) -> str:
        # A client (a connection) per thread: the kernel spreads the 8 over both workers.
        if not hasattr(clients, "openai"):
            clients.openai = route.openai()
        headers, _completion = ask(route, f"call {i}", client=clients.openai)
        return headers["x-portico-model"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        answered_by = Counter(pool.map(one, range(200)))

    at_mock = Counter(r["model"] for r in mock_llm.requests() if r["endpoint"] == "chat")
    assert at_mock == answered_by, "X-Portico-Model names the model that answered"
    assert at_mock[heavy.upstream] + at_mock[light.upstream] == 200
    # Each worker runs its own smooth weighted round-robin, exact to within one call of
    # 70 % of what it served; two workers: within two of 140.
    assert abs(at_mock[heavy.upstream] - 140) <= 2, at_mock


# -- the key pool --------------------------------------------------------------------------------


def test_an_invalid_first_key_is_skipped_and_then_never_tried_again_in_that_worker(
    ai_route, mock_llm, call_record, redis_client
):
    invalid, good = fresh_key("invalid"), fresh_key("good")
    route = ai_route([Target("openai", keys=[invalid, good])])

    client = route.openai()  # one connection: one worker
    first_headers, first = ask(route, "first", client=client)
    for i in range(4):
        _headers, later = ask(route, f"later {i}", client=client)
        assert later.choices[0].message.content == f"Mock openai answer to: later {i}"

    assert first.choices[0].message.content == "Mock openai answer to: first"
    assert keys_used(mock_llm, invalid, good) == [invalid[-4:], good[-4:]] + [good[-4:]] * 4
    assert call_record(first_headers["x-request-id"])["fallbacks"] == 1
    # The control plane hears of it through Redis (off the request path).
    invalid_id = route.target.provider.keys.get(last4=invalid[-4:]).pk
    state = wait_until(lambda: redis_client.hget(KEY_STATE_HASH, str(invalid_id)))
    assert state is not None and json.loads(state)["state"] == "disabled"

    # Over both workers (a connection each; one after the other, as calls in flight together
    # may all have picked the key before its 401 came back): each worker tries it once.
    answers = [ask(route, f"spread {i}")[1] for i in range(10)]
    assert all(a.choices[0].finish_reason == "stop" for a in answers)
    assert keys_used(mock_llm, invalid).count(invalid[-4:]) <= 2


def test_a_rate_limited_key_rests_and_the_next_key_serves(ai_route, mock_llm, redis_client):
    first_key, second_key = fresh_key("first"), fresh_key("second")
    route = ai_route([Target("openai", keys=[first_key, second_key])])
    mock_llm.faults("status", match={"key_last4": first_key[-4:]}, status=429, retry_after=30)

    client = route.openai()
    headers, completion = ask(route, "one", client=client)
    assert completion.choices[0].message.content == "Mock openai answer to: one"
    assert headers["x-portico-model"] == route.target.upstream
    for i in range(3):
        ask(route, f"then {i}", client=client)

    # The 429 key rests (30 s) in the worker that saw the 429: the next key serves it all.
    assert keys_used(mock_llm, first_key, second_key) == [first_key[-4:]] + [second_key[-4:]] * 4
    assert [r["status"] for r in mock_llm.requests() if r["key_last4"] == first_key[-4:]] == [429]
    resting_id = route.target.provider.keys.get(last4=first_key[-4:]).pk
    state = wait_until(lambda: redis_client.hget(KEY_STATE_HASH, str(resting_id)))
    assert state is not None and json.loads(state)["state"] == "rate_limited"
    assert 20 < json.loads(state)["until"] - time.time() <= 30


# -- cool-down -----------------------------------------------------------------------------------


def test_a_failing_target_cools_down_and_later_calls_go_straight_to_the_healthy_one(ai_route, mock_llm, call_record):
    route = primary_and_fallback(ai_route)
    primary, fallback = route.target, route.fallbacks[0]
    mock_llm.faults("status", match={"model": primary.upstream}, times=-1, status=500)

    client = route.openai()  # one worker's view: 3 failures in a row cool the target down
    answers = [ask(route, f"call {i}", client=client) for i in range(8)]

    assert all(headers["x-portico-model"] == fallback.upstream for headers, _c in answers)
    assert len(seen_by(mock_llm, primary)) == 3
    assert len(seen_by(mock_llm, fallback)) == 8
    fallbacks = [call_record(headers["x-request-id"])["fallbacks"] for headers, _c in answers]
    assert fallbacks == [1, 1, 1, 0, 0, 0, 0, 0]

    # Every worker cools it down after at most 3 failures of its own.
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        spread = list(pool.map(lambda i: ask(route, f"spread {i}")[0], range(16)))
    assert all(headers["x-portico-model"] == fallback.upstream for headers in spread)
    assert len(seen_by(mock_llm, primary)) <= 6
