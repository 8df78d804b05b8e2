"""What every provider adapter shares: the SSE parser under any split of the bytes, the
adapter registry and contract, and the translation of provider errors (kinds, context-length
detection, retry-after from every header a provider uses, broken bodies)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from llm.canonical import FALLBACK_KINDS, InvalidRequest, ModelTarget, ProviderError, ProviderKey
from llm.providers import PROVIDER_KINDS, adapter_for
from llm.providers.anthropic import ratelimit_reset
from llm.providers.openai import parse_duration
from llm.sse import SSEError, SSEEvent, SSEParser

KEY = ProviderKey(id=1, secret="sk-test")


def target(kind: str, model: str = "m-1") -> ModelTarget:
    return ModelTarget(
        model_id=1, provider_id=1, provider_kind=kind, base_url="http://127.0.0.1:9100/x", upstream_model=model
    )


def parse_in_pieces(stream: bytes, cuts: list[int]) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        events.extend(parser.feed(stream[start:cut]))
        start = cut
    return events + parser.close()


# -- SSE -----------------------------------------------------------------------------------------

SSE_STREAM = (
    ": keep-alive comment\r\n"
    "event: message_start\r\n"
    'data: {"a": "é ü 漢字"}\r\n'
    "\r\n"
    "data: first line\n"
    "data:second line\n"
    "data\n"
    "\n"
    "id: 7\r"
    "event: custom\r"
    "data: cr only\r"
    "\r"
    "event: no-data-is-not-dispatched\n"
    "\n"
    "unknown: field\n"
    "retry: 1000\n"
    "data: [DONE]\n"
    "\n"
).encode()

SSE_EXPECTED = [
    SSEEvent("message_start", '{"a": "é ü 漢字"}', None),
    SSEEvent("message", "first line\nsecond line\n", None),
    SSEEvent("custom", "cr only", "7"),
    SSEEvent("message", "[DONE]", "7"),
]


def test_sse_parses_crlf_lf_and_cr_lines_comments_multiline_data_and_event_names():
    assert parse_in_pieces(SSE_STREAM, []) == SSE_EXPECTED


def test_sse_gives_the_same_events_whatever_two_pieces_the_bytes_arrive_in():
    for cut in range(len(SSE_STREAM) + 1):
        assert parse_in_pieces(SSE_STREAM, [cut]) == SSE_EXPECTED, cut


def test_sse_gives_the_same_events_fed_one_byte_at_a_time():
    assert parse_in_pieces(SSE_STREAM, list(range(1, len(SSE_STREAM)))) == SSE_EXPECTED


def test_sse_drops_a_leading_utf8_bom_even_split_across_pieces():
    stream = b"\xef\xbb\xbfdata: x\n\n"
    for cut in range(len(stream) + 1):
        assert parse_in_pieces(stream, [cut]) == [SSEEvent("message", "x")], cut


def test_sse_does_not_take_a_crlf_split_between_pieces_for_two_line_ends():
    # "\r" | "\n\r\n": if the LF after the CR counted as a blank line, "a" would be dispatched
    # early and "b" would start a new event.
    assert parse_in_pieces(b"data: a\r\ndata: b\r\n\r\n", [8]) == [SSEEvent("message", "a\nb")]


def test_sse_close_dispatches_an_event_whose_lines_all_arrived_but_drops_a_cut_line():
    parser = SSEParser()
    assert parser.feed(b"data: [DONE]\n") == []
    assert parser.close() == [SSEEvent("message", "[DONE]")]
    parser = SSEParser()
    assert parser.feed(b'data: {"cut": "mid') == []
    assert parser.close() == []


def test_sse_refuses_an_event_larger_than_its_cap_instead_of_growing_memory():
    parser = SSEParser(max_event_bytes=100)
    with pytest.raises(SSEError):
        parser.feed(b"data: " + b"x" * 200)  # one line that never ends
    parser = SSEParser(max_event_bytes=100)
    with pytest.raises(SSEError):
        for _ in range(20):
            parser.feed(b"data: xxxxxxxxxx\n")  # many lines, no blank line


def test_sse_replaces_invalid_utf8_instead_of_raising():
    assert parse_in_pieces(b"data: \xff\xfe ok\n\n", []) == [SSEEvent("message", "\ufffd\ufffd ok")]


# -- registry and contract -----------------------------------------------------------------------


def test_every_provider_kind_has_an_adapter_keeping_the_contract():
    assert set(PROVIDER_KINDS) == {"openai", "azure-openai", "anthropic", "gemini", "mistral", "openai-compatible"}
    for kind in PROVIDER_KINDS:
        adapter = adapter_for(kind)
        # mypy --strict checks the structural contract (llm.providers types its table as
        # ProviderAdapter); here: each registered adapter answers for its own kind.
        assert adapter.kind == kind
        for name in ("chat_request", "chat_response", "stream_decoder", "embeddings_request", "embeddings_response"):
            assert callable(getattr(adapter, name))


def test_an_unknown_provider_kind_is_a_key_error_naming_it():
    with pytest.raises(KeyError, match="cohere"):
        adapter_for("cohere")


@pytest.mark.parametrize("kind", PROVIDER_KINDS)
def test_a_key_that_could_split_the_request_head_is_refused_as_an_authentication_failure(kind):
    for secret in ("sk-1\r\nx-evil: 1", "", "clé"):
        with pytest.raises(ProviderError) as caught:
            adapter_for(kind).chat_request(target(kind), ProviderKey(id=2, secret=secret), CHAT, False)
        assert caught.value.kind == "authentication"


CHAT = {"model": "alias", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.mark.parametrize("kind", ["anthropic", "gemini"])
def test_a_request_a_translating_adapter_cannot_read_is_the_clients_invalid_request(kind):
    # OpenAI-shaped providers get the (already validated) canonical body as it is.
    bad = {"model": "alias", "messages": "not a list"}
    with pytest.raises(InvalidRequest):
        adapter_for(kind).chat_request(target(kind), KEY, bad, False)


# -- errors --------------------------------------------------------------------------------------

OPENAI_ERROR = b'{"error": {"message": "boom", "type": "invalid_request_error", "param": null, "code": null}}'


@pytest.mark.parametrize("kind", PROVIDER_KINDS)
@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, "invalid_request"),
        (401, "authentication"),
        (403, "permission"),
        (404, "not_found"),
        (422, "invalid_request"),
        (429, "rate_limited"),
        (500, "server"),
        (502, "server"),
        (503, "overloaded"),
        (529, "overloaded"),
        (504, "timeout"),
    ],
)
def test_error_statuses_map_to_kinds_for_every_provider(kind, status, expected):
    error = adapter_for(kind).error(status, [], OPENAI_ERROR)
    assert (error.kind, error.status, error.message) == (expected, status, "boom")


@pytest.mark.parametrize("kind", PROVIDER_KINDS)
@pytest.mark.parametrize(
    "body",
    [b"<html>Bad Gateway</html>", b"", b"null", b"[1, 2]", b'{"error": 12}', b"\xff\xfe", b'{"error": {"message": 5}}'],
)
def test_a_broken_error_body_still_gives_a_provider_error_with_the_status(kind, body):
    error = adapter_for(kind).error(502, [], body)
    assert isinstance(error, ProviderError)
    assert (error.kind, error.status) == ("server", 502)
    assert error.message


@pytest.mark.parametrize("kind", PROVIDER_KINDS)
def test_a_status_that_is_no_error_at_all_is_a_server_failure(kind):
    assert adapter_for(kind).error(302, [], b"moved").kind == "server"


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        (
            "openai",
            b'{"error": {"message": "This model\'s maximum context length is 128000 tokens. However, your '
            b'messages resulted in 130000 tokens.", "type": "invalid_request_error", "param": "messages", '
            b'"code": "context_length_exceeded"}}',
        ),
        ("azure-openai", b'{"error": {"message": "too long", "type": null, "code": "context_length_exceeded"}}'),
        (
            "mistral",
            b'{"object": "error", "message": "Prompt contains 40000 tokens and 0 draft tokens, too large for model '
            b'with 32768 maximum context length", "type": "invalid_request_error", "code": null}',
        ),
        (
            "openai-compatible",
            b'{"object": "error", "message": "This model\'s maximum context length is 4096 tokens.", "code": 400}',
        ),
        (
            "anthropic",
            b'{"type": "error", "error": {"type": "invalid_request_error", '
            b'"message": "prompt is too long: 208310 tokens > 200000 maximum"}}',
        ),
        (
            "gemini",
            b'{"error": {"code": 400, "message": "The input token count (1200000) exceeds the maximum number of '
            b'tokens allowed (1048576).", "status": "INVALID_ARGUMENT"}}',
        ),
    ],
)
def test_a_context_length_refusal_is_context_length_not_the_clients_error(kind, body):
    error = adapter_for(kind).error(400, [], body)
    assert error.kind == "context_length"
    assert error.kind in FALLBACK_KINDS


def test_a_plain_invalid_request_is_not_mistaken_for_context_length():
    body = b'{"error": {"message": "temperature must be at most 2", "type": "invalid_request_error"}}'
    assert adapter_for("openai").error(400, [], body).kind == "invalid_request"


@pytest.mark.parametrize("kind", PROVIDER_KINDS)
def test_retry_after_comes_from_retry_after_ms_before_retry_after_seconds(kind):
    adapter = adapter_for(kind)
    assert adapter.error(429, [(b"Retry-After", b"7")], b"{}").retry_after == 7.0
    assert adapter.error(429, [(b"retry-after-ms", b"1500"), (b"retry-after", b"7")], b"{}").retry_after == 1.5
    assert adapter.error(429, [(b"retry-after", b"soon")], b"{}").retry_after is None
    assert adapter.error(429, [(b"retry-after", b"-3")], b"{}").retry_after is None
    assert adapter.error(429, [(b"retry-after", b"nan")], b"{}").retry_after is None


def test_retry_after_may_be_an_http_date():
    when = datetime.now(UTC) + timedelta(seconds=30)
    error = adapter_for("openai").error(429, [(b"retry-after", format_datetime(when, usegmt=True).encode())], b"{}")
    assert error.retry_after is not None and 25 <= error.retry_after <= 31


def test_openai_rate_limit_reset_headers_give_the_exhausted_limits_reset():
    headers = [
        (b"x-ratelimit-remaining-requests", b"0"),
        (b"x-ratelimit-reset-requests", b"1m30s"),
        (b"x-ratelimit-remaining-tokens", b"5000"),
        (b"x-ratelimit-reset-tokens", b"6m0s"),
    ]
    assert adapter_for("openai").error(429, headers, b"{}").retry_after == 90.0
    assert parse_duration(b"20ms") == 0.02
    assert parse_duration(b"1h2m3.5s") == 3723.5
    assert parse_duration(b"3 days") is None


def test_anthropic_rate_limit_reset_headers_give_seconds_until_the_exhausted_limit_resets():
    now = time.time()

    def at(seconds: float) -> bytes:
        return datetime.fromtimestamp(now + seconds, UTC).isoformat().replace("+00:00", "Z").encode()

    headers = [
        (b"anthropic-ratelimit-requests-remaining", b"10"),
        (b"anthropic-ratelimit-requests-reset", at(50)),
        (b"anthropic-ratelimit-input-tokens-remaining", b"0"),
        (b"anthropic-ratelimit-input-tokens-reset", at(12)),
    ]
    assert ratelimit_reset(headers, now=now) == pytest.approx(12, abs=0.01)
    error = adapter_for("anthropic").error(429, headers, b"{}")
    assert error.retry_after is not None and 10 <= error.retry_after <= 12.5
    # retry-after, when Anthropic sends it, wins over the reset times
    assert adapter_for("anthropic").error(429, [*headers, (b"retry-after", b"3")], b"{}").retry_after == 3.0
    assert ratelimit_reset([(b"anthropic-ratelimit-tokens-reset", b"not a time")]) is None


def test_gemini_rate_limit_retry_delay_comes_from_the_errors_retry_info():
    body = (
        b'{"error": {"code": 429, "message": "You exceeded your current quota.", "status": "RESOURCE_EXHAUSTED", '
        b'"details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []}, '
        b'{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "32s"}]}}'
    )
    error = adapter_for("gemini").error(429, [], body)
    assert (error.kind, error.retry_after) == ("rate_limited", 32.0)


def test_gemini_invalid_api_key_is_an_authentication_failure_despite_its_400():
    body = (
        b'{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", '
        b'"status": "INVALID_ARGUMENT", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", '
        b'"reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}}'
    )
    assert adapter_for("gemini").error(400, [], body).kind == "authentication"


def test_anthropic_billing_error_402_is_a_permission_failure_of_that_key():
    body = b'{"type": "error", "error": {"type": "billing_error", "message": "Your credit balance is too low"}}'
    assert adapter_for("anthropic").error(402, [], body).kind == "permission"
