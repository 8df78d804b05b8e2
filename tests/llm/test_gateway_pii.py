"""PII masking, the deny list and capture through the real gateway (gunicorn, 2 workers),
with the mock provider as the witness of what went upstream. The mock answers
``Mock <kind> answer to: <the user's text>``, so whatever the provider received comes back
in the answer: placeholders sent upstream are seen restored by the client."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from gateway.aicall import CAPTURE_BYTES
from portal.services.errors import InvalidInput
from tests.llm.conftest import Target, user

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.gateway]

EMAIL = "alice@example.com"
PHONE = "+44 20 7946 0958"
CARD = "4111 1111 1111 1111"
IBAN = "GB82 WEST 1234 5698 7654 32"
IP = "192.168.1.20"
SECRET = "sk-proj-Xq8vT2mLp9RzK4wYb7NcJ3hF"
EVERYTHING = f"Mail {EMAIL}, call {PHONE}, card {CARD}, IBAN {IBAN}, host {IP}, key {SECRET}."
VALUES = (EMAIL, PHONE, CARD, IBAN, IP, SECRET)


def ask(route, text: str, **params: Any):
    raw = route.openai().chat.completions.with_raw_response.create(model=route.alias, messages=user(text), **params)
    return raw.headers, raw.parse()


def ask_stream(route, text: str):
    raw = route.openai().chat.completions.with_raw_response.create(model=route.alias, messages=user(text), stream=True)
    pieces = [choice.delta.content or "" for chunk in raw.parse() for choice in chunk.choices]
    return raw.headers, "".join(pieces)


def received(mock_llm, route) -> list[str]:
    """The user texts the provider received, in order."""
    return [r["body"]["messages"][-1]["content"] for r in mock_llm.requests(model=route.target.upstream)]


def everything_sent_upstream(mock_llm) -> str:
    return json.dumps(mock_llm.requests())


def test_redact_sends_labels_upstream_and_the_client_gets_what_the_model_said(ai_route, mock_llm, call_record):
    route = ai_route(pii_mode="redact")

    headers, completion = ask(route, f"Mail {EMAIL} now")

    assert received(mock_llm, route) == ["Mail [REDACTED_EMAIL] now"]
    assert EMAIL not in everything_sent_upstream(mock_llm)
    assert completion.choices[0].message.content == "Mock openai answer to: Mail [REDACTED_EMAIL] now"
    record = call_record(headers["x-request-id"])
    assert record["pii_masked"] == 1 and EMAIL not in json.dumps(record)


def test_every_detector_is_redacted_and_counted_and_no_value_reaches_the_provider_or_the_record(
    ai_route, mock_llm, call_record
):
    route = ai_route(pii_mode="redact")

    headers, _completion = ask(route, EVERYTHING)

    (sent,) = received(mock_llm, route)
    for label in ("EMAIL", "PHONE", "CARD", "IBAN", "IP", "SECRET"):
        assert f"[REDACTED_{label}]" in sent
    upstream = everything_sent_upstream(mock_llm)
    record = call_record(headers["x-request-id"])
    assert record["pii_masked"] == 6
    for value in VALUES:
        assert value not in upstream and value not in json.dumps(record)


def test_mask_and_restore_sends_placeholders_and_restores_the_originals_in_the_answer(ai_route, mock_llm, call_record):
    route = ai_route(pii_mode="mask")

    headers, completion = ask(route, f"Mail {EMAIL} or {EMAIL} from {IP}")

    assert received(mock_llm, route) == ["Mail <PII_EMAIL_1> or <PII_EMAIL_1> from <PII_IP_1>"]
    assert EMAIL not in everything_sent_upstream(mock_llm) and IP not in everything_sent_upstream(mock_llm)
    assert completion.choices[0].message.content == f"Mock openai answer to: Mail {EMAIL} or {EMAIL} from {IP}"
    record = call_record(headers["x-request-id"])
    assert record["pii_masked"] == 3
    assert EMAIL not in json.dumps(record) and IP not in json.dumps(record)


def test_mask_and_restore_restores_the_originals_in_a_stream(ai_route, mock_llm, call_record):
    route = ai_route(pii_mode="mask")

    headers, text = ask_stream(route, f"Mail {EMAIL}, call {PHONE}")

    assert received(mock_llm, route) == ["Mail <PII_EMAIL_1>, call <PII_PHONE_1>"]
    # The mock streams one token a event: every placeholder arrives split over several.
    assert text == f"Mock openai answer to: Mail {EMAIL}, call {PHONE}"
    record = call_record(headers["x-request-id"])
    assert record["pii_masked"] == 2 and EMAIL not in json.dumps(record) and PHONE not in json.dumps(record)


def test_mask_and_restore_through_the_anthropic_messages_api_streamed(ai_route, mock_llm):
    route = ai_route([Target("anthropic")], pii_mode="mask")

    with route.anthropic().messages.stream(
        model=route.alias, max_tokens=200, messages=user(f"Mail {EMAIL} please")
    ) as stream:
        text = "".join(stream.text_stream)

    (request,) = mock_llm.requests(model=route.target.upstream)
    assert EMAIL not in json.dumps(request) and "<PII_EMAIL_1>" in json.dumps(request["body"])
    assert text == f"Mock anthropic answer to: Mail {EMAIL} please"


def test_block_refuses_with_400_pii_blocked_and_the_provider_sees_nothing(ai_route, mock_llm, call_record):
    route = ai_route(pii_mode="block", pii_detectors=["email", "card"])

    with pytest.raises(openai.BadRequestError) as raised:
        ask(route, f"My card is {CARD}")

    error = raised.value
    assert error.status_code == 400 and error.code == "pii_blocked"
    assert "card" in error.message and CARD not in error.message
    assert mock_llm.requests(model=route.target.upstream) == []
    record = call_record(error.response.headers["x-request-id"])
    assert record["status"] == 400 and record["error_code"] == "pii_blocked" and CARD not in json.dumps(record)

    # Only the chosen detectors block: an IP address passes this route.
    _headers, completion = ask(route, f"Ping {IP}")
    assert completion.choices[0].message.content == f"Mock openai answer to: Ping {IP}"


def test_the_deny_list_refuses_with_400_content_policy_and_the_provider_sees_nothing(ai_route, mock_llm, call_record):
    route = ai_route(deny_list="bananas\n/launch\\s{1,5}codes?/")

    for text in ("I like BANANAS a lot", "send the launch   codes"):
        with pytest.raises(openai.BadRequestError) as raised:
            ask(route, text)
        error = raised.value
        assert error.status_code == 400 and error.code == "content_policy"
        assert text not in error.message
        record = call_record(error.response.headers["x-request-id"])
        assert record["error_code"] == "content_policy"
    assert mock_llm.requests(model=route.target.upstream) == []

    # Whole words only: "bananasplit" is not "bananas".
    _headers, completion = ask(route, "one bananasplit please")
    assert completion.choices[0].message.content == "Mock openai answer to: one bananasplit please"


def test_a_deny_regex_the_gateway_cannot_run_is_refused_when_the_route_is_saved(ai_route):
    with pytest.raises(InvalidInput):
        ai_route(deny_list="/launch\\s+codes/")


def test_capture_is_off_by_default(ai_route, call_record):
    route = ai_route()
    headers, _completion = ask(route, f"Mail {EMAIL}")
    record = call_record(headers["x-request-id"])
    assert record["prompt_capture"] is None and record["response_capture"] is None


def test_capture_attaches_masked_bodies_to_the_call_record(ai_route, call_record):
    route = ai_route(capture=True)  # PII off: the provider sees the email, the record never does

    headers, completion = ask(route, f"Mail {EMAIL} today")

    assert completion.choices[0].message.content == f"Mock openai answer to: Mail {EMAIL} today"
    record = call_record(headers["x-request-id"])
    assert "Mail [REDACTED_EMAIL] today" in record["prompt_capture"]
    assert record["response_capture"] == "Mock openai answer to: Mail [REDACTED_EMAIL] today"
    assert EMAIL not in json.dumps(record)


def test_capture_is_size_capped(ai_route, call_record):
    route = ai_route(capture=True)
    long_text = "word " * 20_000 + EMAIL

    headers, _completion = ask(route, long_text)

    record = call_record(headers["x-request-id"])
    assert len(record["prompt_capture"].encode()) <= CAPTURE_BYTES < len(long_text)
    assert "truncated" in record["prompt_capture"]
    assert EMAIL not in json.dumps(record)


def test_capture_covers_streamed_calls_too(ai_route, call_record):
    route = ai_route(capture=True)

    headers, text = ask_stream(route, f"Mail {EMAIL} today")

    assert text == f"Mock openai answer to: Mail {EMAIL} today"
    record = call_record(headers["x-request-id"])
    assert record["prompt_capture"] is not None and "Mail [REDACTED_EMAIL] today" in record["prompt_capture"]
    assert record["response_capture"] == "Mock openai answer to: Mail [REDACTED_EMAIL] today"
    assert EMAIL not in json.dumps(record)
