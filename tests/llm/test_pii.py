"""PII detection, the four modes, mask-and-restore (streams included) and the deny list.

Pure functions: no database, no network. The hostile-input tests bound time generously
(the machine is shared); what they guard against is super-linear behaviour, which would take
minutes, not a few hundred milliseconds.
"""

from __future__ import annotations

import copy
import json
import random
import time

import pytest

from llm.canonical import PiiPolicy
from llm.pii import (
    PiiOutcome,
    StreamRestorer,
    apply_policy,
    find_pii,
    iban_valid,
    luhn_valid,
    mask_for_capture,
    policy_errors,
    restore_completion,
)


def kinds_and_values(text: str, detectors: frozenset[str] | None = None) -> list[tuple[str, str]]:
    found = find_pii(text) if detectors is None else find_pii(text, detectors)
    return [(kind, text[start:end]) for start, end, kind in found]


def chat(*messages: dict[str, object], **extra: object) -> dict[str, object]:
    return {"model": "gpt-test", "messages": list(messages), **extra}


JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
MASK = PiiPolicy(mode="mask")
REDACT = PiiPolicy(mode="redact")
BLOCK = PiiPolicy(mode="block")

# -- detectors: true positives ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("write to john.doe+news@example.co.uk today", "email", "john.doe+news@example.co.uk"),
        ("(a_b@sub.example.org)", "email", "a_b@sub.example.org"),
        ("call +1 415 555 2671 now", "phone", "+1 415 555 2671"),
        ("call +14155552671.", "phone", "+14155552671"),
        ("uk: +44 (0)20 7946 0958", "phone", "+44 (0)20 7946 0958"),
        ("office (415) 555-2671", "phone", "(415) 555-2671"),
        ("office 415-555-2671", "phone", "415-555-2671"),
        ("toll free 1-800-555-0199", "phone", "1-800-555-0199"),
        ("london 020 7946 0958", "phone", "020 7946 0958"),
        ("paris 06 12 34 56 78", "phone", "06 12 34 56 78"),
        ("berlin 0151 23456789", "phone", "0151 23456789"),
        ("visa 4111 1111 1111 1111", "card", "4111 1111 1111 1111"),
        ("visa 4111-1111-1111-1111 exp", "card", "4111-1111-1111-1111"),
        ("mc 5555555555554444", "card", "5555555555554444"),
        ("amex 3782 822463 10005", "card", "3782 822463 10005"),
        ("card 4111 1111 1111 1111 12/26 cvc 123", "card", "4111 1111 1111 1111"),
        ("iban DE89 3704 0044 0532 0130 00.", "iban", "DE89 3704 0044 0532 0130 00"),
        ("iban GB82WEST12345698765432", "iban", "GB82WEST12345698765432"),
        ("lower-case fr1420041010050500013m02606", "iban", "fr1420041010050500013m02606"),
        ("host 192.168.1.20:8080", "ip", "192.168.1.20"),
        ("net 10.0.0.0/8", "ip", "10.0.0.0"),
        ("v6 2001:db8::8a2e:370:7334 here", "ip", "2001:db8::8a2e:370:7334"),
        ("loopback ::1.", "ip", "::1"),
        ("mapped ::ffff:192.0.2.1", "ip", "::ffff:192.0.2.1"),
        (
            "OPENAI_API_KEY=sk-proj-abcdefghijklmnopqrstuvwxyz012345",
            "secret",
            "sk-proj-abcdefghijklmnopqrstuvwxyz012345",
        ),
        ("anthropic sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv", "secret", "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv"),
        (
            "portico pt_ab12cd34.Zx8Kq2Lm9Pw4Rt7Yv1Bn6Hc3Jd5Fs0GaQe",
            "secret",
            "pt_ab12cd34.Zx8Kq2Lm9Pw4Rt7Yv1Bn6Hc3Jd5Fs0GaQe",
        ),
        ("aws AKIAIOSFODNN7EXAMPLE", "secret", "AKIAIOSFODNN7EXAMPLE"),
        ("gh ghp_" + "a1B2c3D4" * 5, "secret", "ghp_" + "a1B2c3D4" * 5),
        ("slack xoxb-1234567890-abcdefghij", "secret", "xoxb-1234567890-abcdefghij"),
        ("stripe sk_live_" + "4eC39HqLyjWDarjt", "secret", "sk_live_4eC39HqLyjWDarjt"),
        ("jwt " + JWT, "secret", JWT),
        ("Authorization: Bearer abcDEF123ghiJKL456mno", "secret", "abcDEF123ghiJKL456mno"),
        ("token Zx8Kq2Lm9Pw4Rt7Yv1Bn6Hc3Jd5Fs0Ga", "secret", "Zx8Kq2Lm9Pw4Rt7Yv1Bn6Hc3Jd5Fs0Ga"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
            "-----END RSA PRIVATE KEY-----",
            "secret",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n"
            "-----END RSA PRIVATE KEY-----",
        ),
    ],
)
def test_detector_finds_its_kind(text: str, kind: str, value: str) -> None:
    assert kinds_and_values(text) == [(kind, value)]


def test_several_findings_in_one_text_come_left_to_right_without_overlap() -> None:
    text = "mail a@b.io, call +33 6 12 34 56 78, pay DE89370400440532013000 from 10.1.2.3"
    assert kinds_and_values(text) == [
        ("email", "a@b.io"),
        ("phone", "+33 6 12 34 56 78"),
        ("iban", "DE89370400440532013000"),
        ("ip", "10.1.2.3"),
    ]


# -- detectors: false positives -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "in 1999 and 2024 we grew",
        "it costs $1,299.99 or €12.50 (+5.00 shipping)",
        "order 123456789012 shipped, ticket #4155552671",
        "dates 2024-01-15 and 01.02.2024 10:30 and 15/01/2024",
        "version v1.2.3 and 3.14159265358979",
        "scores +12 +15 -8, ratio 10 20 30 40 50",
        "at 10:30:45 UTC",
        "uuid 550e8400-e29b-41d4-a716-446655440000",
        "sha " + "a3f5c9e1" * 5,
        "name getUserAccountSettingsForTenant2024 and AbstractSingletonProxyFactoryBean",
        "c++ std::vector and Bad::Face",
        "user@localhost has no domain",
        "a path /usr/local/lib/python3.11/site-packages/django",
        "https://example.com/docs/getting-started/installation?page=2",
        "Bearer authentication-scheme-description",
        "eyJub3QganNvbg.eyJhYmNkZWZn.c2lnbmF0dXJl is not a token with a JSON header",
        "the sequence 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6",
    ],
)
def test_ordinary_text_has_no_findings(text: str) -> None:
    assert kinds_and_values(text) == []


def test_card_numbers_failing_luhn_are_not_cards() -> None:
    assert not luhn_valid("4111111111111112")
    assert luhn_valid("4111111111111111")
    assert kinds_and_values("card 4111 1111 1111 1112", frozenset({"card"})) == []
    assert kinds_and_values("card 4111111111111112", frozenset({"card"})) == []


def test_a_repeated_digit_passing_luhn_is_not_a_card() -> None:
    assert luhn_valid("0000000000000000")
    assert kinds_and_values("0000 0000 0000 0000", frozenset({"card"})) == []


def test_card_groups_with_mixed_separators_or_odd_shapes_are_not_cards() -> None:
    assert kinds_and_values("4111 1111-1111 1111", frozenset({"card"})) == []
    assert kinds_and_values("41 11 11 11 11 11 11 11", frozenset({"card"})) == []


def test_ibans_failing_mod_97_are_not_ibans() -> None:
    assert iban_valid("DE89370400440532013000")
    assert not iban_valid("DE89370400440532013001")
    assert not iban_valid("DE8937040044053201300")  # one character short for Germany
    assert not iban_valid("QQ89370400440532013000")  # no such country
    assert kinds_and_values("DE89 3704 0044 0532 0130 01", frozenset({"iban"})) == []
    assert kinds_and_values("GB82WEST12345698765433", frozenset({"iban"})) == []


def test_an_iban_glued_to_more_characters_is_not_an_iban() -> None:
    assert kinds_and_values("DE89370400440532013000X", frozenset({"iban"})) == []


@pytest.mark.parametrize("text", ["256.1.1.1", "1.2.3.4.5", "10.0.0", "01.02.03.04x", "12:34:56", "fe80::zz"])
def test_strings_that_are_not_valid_addresses_are_not_ips(text: str) -> None:
    assert kinds_and_values(text, frozenset({"ip"})) == []


def test_only_the_policys_detectors_run() -> None:
    text = "a@b.io and 4111 1111 1111 1111"
    assert kinds_and_values(text, frozenset({"card"})) == [("card", "4111 1111 1111 1111")]
    assert kinds_and_values(text, frozenset()) == []


# -- modes -------------------------------------------------------------------------------------------


def test_mode_off_sends_the_request_as_is_without_scanning() -> None:
    request = chat({"role": "user", "content": "I am a@b.io"})
    outcome = apply_policy(PiiPolicy(mode="off"), request)
    assert outcome.request == request
    assert outcome.counts == {} and outcome.mapping == {} and outcome.refusal is None


def test_redact_replaces_each_finding_with_its_label_and_keeps_nothing() -> None:
    request = chat({"role": "user", "content": "I am a@b.io, card 4111 1111 1111 1111, again a@b.io"})
    outcome = apply_policy(REDACT, request)
    assert outcome.request["messages"][0]["content"] == (
        "I am [REDACTED_EMAIL], card [REDACTED_CARD], again [REDACTED_EMAIL]"
    )
    assert outcome.counts == {"email": 2, "card": 1}
    assert outcome.mapping == {}
    assert outcome.restore_text("hi [REDACTED_EMAIL]") == "hi [REDACTED_EMAIL]"


def test_mask_gives_each_distinct_value_its_own_placeholder_and_reuses_it() -> None:
    request = chat(
        {"role": "system", "content": "Support for a@b.io"},
        {"role": "user", "content": "I am a@b.io, my colleague is c@d.io, call +1 415 555 2671"},
    )
    outcome = apply_policy(MASK, request)
    assert outcome.request["messages"][0]["content"] == "Support for <PII_EMAIL_1>"
    assert outcome.request["messages"][1]["content"] == (
        "I am <PII_EMAIL_1>, my colleague is <PII_EMAIL_2>, call <PII_PHONE_1>"
    )
    assert outcome.mapping == {"<PII_EMAIL_1>": "a@b.io", "<PII_EMAIL_2>": "c@d.io", "<PII_PHONE_1>": "+1 415 555 2671"}
    assert outcome.counts == {"email": 3, "phone": 1}


def test_block_refuses_naming_the_detectors_and_never_the_values() -> None:
    request = chat({"role": "user", "content": "card 4111 1111 1111 1111 from 10.1.2.3"})
    outcome = apply_policy(BLOCK, request)
    assert outcome.refusal is not None
    assert outcome.refusal.reason == "pii"
    assert outcome.refusal.detectors == ("card", "ip")
    assert "4111" not in outcome.refusal.message and "10.1.2.3" not in outcome.refusal.message
    assert "card" in outcome.refusal.message
    assert outcome.counts == {"card": 1, "ip": 1}


def test_block_lets_a_clean_request_through_unchanged() -> None:
    request = chat({"role": "user", "content": "What is the capital of France?"})
    outcome = apply_policy(BLOCK, request)
    assert outcome.refusal is None and outcome.request == request


def test_the_clients_request_is_never_modified() -> None:
    request = chat(
        {"role": "user", "content": [{"type": "text", "text": "I am a@b.io"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"to": "a@b.io"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sent to a@b.io"},
    )
    before = copy.deepcopy(request)
    for policy in (MASK, REDACT, BLOCK):
        outcome = apply_policy(policy, request)
        assert outcome.request is not request
    assert request == before


def test_every_place_text_hides_in_a_request_is_masked() -> None:
    request = chat(
        {"role": "system", "content": "operator a@b.io"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "call +1 415 555 2671"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a@b.io.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "refusal": "not for 10.1.2.3",
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "mail", "arguments": '{"to": ["a@b.io"], "n": 1}'},
                }
            ],
            "function_call": {"name": "old", "arguments": '{"ip": "10.1.2.3"}'},
        },
        {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "sent to a@b.io"}]},
    )
    outcome = apply_policy(MASK, request)
    system, user, assistant, tool = outcome.request["messages"]
    assert system["content"] == "operator <PII_EMAIL_1>"
    assert user["content"][0]["text"] == "call <PII_PHONE_1>"
    assert user["content"][1] == request["messages"][1]["content"][1]  # not text: untouched
    assert assistant["refusal"] == "not for <PII_IP_1>"
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"to": ["<PII_EMAIL_1>"], "n": 1}
    assert json.loads(assistant["function_call"]["arguments"]) == {"ip": "<PII_IP_1>"}
    assert tool["content"][0]["text"] == "sent to <PII_EMAIL_1>"


def test_tool_arguments_with_escapes_stay_valid_json_after_masking() -> None:
    arguments = json.dumps({"note": 'line\nfoo@x.io\t"quoted"'})
    request = chat(
        {
            "role": "assistant",
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}],
        }
    )
    masked = apply_policy(MASK, request).request["messages"][0]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(masked) == {"note": 'line\n<PII_EMAIL_1>\t"quoted"'}


def test_tool_arguments_that_are_not_json_are_masked_as_text() -> None:
    request = chat(
        {
            "role": "assistant",
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "to a@b.io"}}],
        }
    )
    masked = apply_policy(MASK, request).request["messages"][0]["tool_calls"][0]["function"]["arguments"]
    assert masked == "to <PII_EMAIL_1>"


def test_embeddings_input_is_masked() -> None:
    outcome = apply_policy(REDACT, {"model": "e", "input": ["mail a@b.io", 42, "plain"]})
    assert outcome.request["input"] == ["mail [REDACTED_EMAIL]", 42, "plain"]
    assert apply_policy(REDACT, {"model": "e", "input": "a@b.io"}).request["input"] == "[REDACTED_EMAIL]"


# -- restoring ------------------------------------------------------------------------------------------


def masked_outcome() -> PiiOutcome:
    return apply_policy(MASK, chat({"role": "user", "content": "I am a@b.io, phone +1 415 555 2671"}))


def test_restore_completion_puts_originals_back_in_content_and_tool_arguments() -> None:
    outcome = masked_outcome()
    completion = {
        "id": "x",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello <PII_EMAIL_1>, I will call <PII_PHONE_1>. <PII_EMAIL_7> is unknown.",
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "call", "arguments": '{"to": "<PII_PHONE_1>", "cc": "<PII_EMAIL_1>"}'},
                        }
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ],
    }
    before = copy.deepcopy(completion)
    restored = restore_completion(outcome, completion)
    message = restored["choices"][0]["message"]
    assert message["content"] == "Hello a@b.io, I will call +1 415 555 2671. <PII_EMAIL_7> is unknown."
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == {"to": "+1 415 555 2671", "cc": "a@b.io"}
    assert completion == before


def test_restored_tool_arguments_escape_the_original_for_json() -> None:
    outcome = PiiOutcome(request={}, mapping={"<PII_SECRET_1>": 'a"b\\c'})
    completion = {
        "choices": [
            {"message": {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"k": "<PII_SECRET_1>"}'}}
            ]}}
        ]
    }  # fmt: skip
    arguments = restore_completion(outcome, completion)["choices"][0]["message"]["tool_calls"][0]["function"][
        "arguments"
    ]
    assert json.loads(arguments) == {"k": 'a"b\\c'}


def test_restore_completion_without_a_mapping_returns_the_completion() -> None:
    completion = {"choices": [{"message": {"content": "<PII_EMAIL_1>"}}]}
    assert restore_completion(apply_policy(REDACT, chat()), completion) is completion


def test_restore_completion_survives_malformed_choices() -> None:
    outcome = masked_outcome()
    completion = {
        "choices": [
            None,
            3,
            {"message": None},
            {"message": {"content": [{"type": "text", "text": "<PII_EMAIL_1>"}, 5]}},
        ]
    }
    restored = restore_completion(outcome, completion)
    assert restored["choices"][:3] == [None, 3, {"message": None}]
    assert restored["choices"][3]["message"]["content"] == [{"type": "text", "text": "a@b.io"}, 5]


ANSWER = "Dear <PII_EMAIL_1>, we call <PII_PHONE_1> <today>; <PII_EMAIL_1>!"
RESTORED = "Dear a@b.io, we call +1 415 555 2671 <today>; a@b.io!"


def stream(restorer: StreamRestorer, deltas: list[str]) -> str:
    return "".join(restorer.feed(delta) for delta in deltas) + restorer.flush()


def test_stream_restore_across_every_two_way_split() -> None:
    outcome = masked_outcome()
    for cut in range(len(ANSWER) + 1):
        assert stream(outcome.stream_restorer(), [ANSWER[:cut], ANSWER[cut:]]) == RESTORED, cut


def test_stream_restore_across_every_three_way_split() -> None:
    outcome = masked_outcome()
    for first in range(len(ANSWER) + 1):
        for second in range(first, len(ANSWER) + 1):
            deltas = [ANSWER[:first], ANSWER[first:second], ANSWER[second:]]
            assert stream(outcome.stream_restorer(), deltas) == RESTORED, (first, second)


def test_stream_restore_one_character_per_delta_and_random_splits() -> None:
    outcome = masked_outcome()
    assert stream(outcome.stream_restorer(), list(ANSWER)) == RESTORED
    rng = random.Random(11)
    for _ in range(200):
        cuts = sorted(rng.sample(range(len(ANSWER) + 1), rng.randint(1, 12)))
        deltas = [ANSWER[a:b] for a, b in zip([0, *cuts], [*cuts, len(ANSWER)], strict=True)]
        assert stream(outcome.stream_restorer(), deltas) == RESTORED


def test_stream_restorer_holds_back_only_a_possible_placeholder_prefix() -> None:
    restorer = masked_outcome().stream_restorer()
    assert restorer.feed("a < b") == "a < b"  # "< b" cannot become a placeholder
    assert restorer.feed("x <PII_EM") == "x "
    assert restorer.feed("AIL_1> y <") == "a@b.io y "
    assert restorer.feed("html>") == "<html>"
    assert restorer.feed("<PII_EMAIL_1") == ""
    assert restorer.flush() == "<PII_EMAIL_1"  # the stream ended: it was never a placeholder


def test_stream_restorer_without_mapping_passes_deltas_through() -> None:
    restorer = apply_policy(REDACT, chat()).stream_restorer()
    assert restorer.feed("<PII_EM") == "<PII_EM"
    assert restorer.flush() == ""


def chunk(
    content: str | None = None, finish: str | None = None, calls: list[dict[str, object]] | None = None
) -> dict[str, object]:
    delta: dict[str, object] = {}
    if content is not None:
        delta["content"] = content
    if calls is not None:
        delta["tool_calls"] = calls
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def test_chunk_restorer_restores_split_content_and_releases_held_text_with_the_finish() -> None:
    restorer = masked_outcome().chunk_restorer()
    out = [restorer.feed(c) for c in (chunk("Hi <PII_"), chunk("EMAIL_1> and <PII"), chunk(None, "stop"))]
    texts = [c["choices"][0]["delta"].get("content", "") for c in out]
    assert texts == ["Hi ", "a@b.io and ", "<PII"]
    assert out[2]["choices"][0]["finish_reason"] == "stop"
    assert restorer.flush() == []


def test_chunk_restorer_restores_tool_call_arguments_split_across_chunks() -> None:
    restorer = masked_outcome().chunk_restorer()
    start = [{"index": 0, "id": "t", "type": "function", "function": {"name": "call", "arguments": '{"to": "<PII_PH'}}]
    rest = [{"index": 0, "function": {"arguments": 'ONE_1>"}'}}]
    out = [
        restorer.feed(chunk(calls=start)),
        restorer.feed(chunk(calls=rest)),
        restorer.feed(chunk(None, "tool_calls")),
    ]
    arguments = "".join(
        call["function"]["arguments"] for c in out for call in c["choices"][0]["delta"].get("tool_calls", [])
    )
    assert json.loads(arguments) == {"to": "+1 415 555 2671"}
    assert out[0]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"] == "call"


def test_chunk_restorer_flush_returns_held_text_of_a_cut_stream() -> None:
    restorer = masked_outcome().chunk_restorer()
    restorer.feed(chunk("bye <PII_EMAIL"))
    [last] = restorer.flush()
    assert last["choices"][0]["delta"]["content"] == "<PII_EMAIL"
    assert last["id"] == "c1" and last["object"] == "chat.completion.chunk"


def test_chunk_restorer_passes_usage_chunks_and_malformed_choices_through() -> None:
    restorer = masked_outcome().chunk_restorer()
    usage_chunk = {"id": "c1", "choices": [], "usage": {"prompt_tokens": 1}}
    assert restorer.feed(usage_chunk) == usage_chunk
    odd = {"id": "c1", "choices": [None, {"index": "x", "delta": "nope"}]}
    assert restorer.feed(odd) == odd


# -- the deny list -------------------------------------------------------------------------------------


def deny(*entries: str, mode: str = "off") -> PiiPolicy:
    return PiiPolicy(mode=mode, deny=entries)


def test_a_deny_word_refuses_whole_words_in_any_case_naming_the_rule() -> None:
    policy = deny("project", "Titan")
    refused = apply_policy(policy, chat({"role": "user", "content": "Tell me about TITAN, please"}))
    assert refused.refusal is not None and refused.refusal.reason == "deny"
    assert refused.refusal.rule == 'deny rule 2 ("Titan")'
    assert "Tell me" not in refused.refusal.message and 'deny rule 2 ("Titan")' in refused.refusal.message
    assert apply_policy(policy, chat({"role": "user", "content": "titanium projects"})).refusal is None


def test_a_deny_phrase_matches_across_any_whitespace() -> None:
    policy = deny("credit card fraud", "c++")
    assert (
        apply_policy(policy, chat({"role": "user", "content": "how to do Credit\n  card   FRAUD?"})).refusal is not None
    )
    assert apply_policy(policy, chat({"role": "user", "content": "I write C++ daily"})).refusal is not None
    assert apply_policy(policy, chat({"role": "user", "content": "credit cards"})).refusal is None


def test_a_deny_regex_refuses_and_honours_the_i_flag() -> None:
    policy = deny(r"/\bticket-[0-9]{4,8}\b/", "/internal only/i")
    assert apply_policy(policy, chat({"role": "user", "content": "see ticket-12345"})).refusal is not None
    assert apply_policy(policy, chat({"role": "user", "content": "see TICKET-12345"})).refusal is None
    refusal = apply_policy(policy, chat({"role": "user", "content": "INTERNAL ONLY memo"})).refusal
    assert refusal is not None and refusal.rule == "deny rule 2 (/internal only/i)"


def test_the_deny_list_checks_tool_arguments_and_system_prompts_too() -> None:
    policy = deny("forbidden")
    system = chat({"role": "system", "content": "this is forbidden"})
    call = chat(
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"q": "Forbidden"}'}}
            ],
        }
    )
    assert apply_policy(policy, system).refusal is not None
    assert apply_policy(policy, call).refusal is not None


def test_the_deny_list_applies_before_masking_in_every_mode() -> None:
    for mode in ("off", "redact", "mask", "block"):
        outcome = apply_policy(
            deny("secretproject", mode=mode), chat({"role": "user", "content": "secretproject a@b.io"})
        )
        assert outcome.refusal is not None and outcome.refusal.reason == "deny", mode


@pytest.mark.parametrize(
    "entry",
    [
        r"/(a+)+$/",
        r"/(a|aa)*b/",
        r"/.*secret/",
        r"/x{0,5000}/",
        r"/(\w)\1/",
        r"/([a-z]{0,9}){0,9}/",
        "/(/",
        "/" + "a" * 600 + "/",
    ],
)
def test_unsafe_or_broken_deny_regexes_are_reported_and_refuse_every_request(entry: str) -> None:
    policy = deny(entry)
    assert policy_errors(policy)
    outcome = apply_policy(policy, chat({"role": "user", "content": "hello"}))
    assert outcome.refusal is not None and outcome.refusal.reason == "policy"
    assert entry not in outcome.refusal.message


def test_policy_errors_reports_unknown_modes_and_detectors_and_accepts_good_policies() -> None:
    assert policy_errors(PiiPolicy(mode="shred"))
    assert policy_errors(PiiPolicy(mode="mask", detectors=frozenset({"email", "ssn"})))
    assert policy_errors(deny("  "))
    assert policy_errors(PiiPolicy(mode="mask", deny=("word", r"/\bfoo.{0,20}bar\b/", "/x/i"))) == []


def test_a_text_too_long_for_a_costly_deny_regex_is_refused_not_partly_scanned() -> None:
    policy = deny("/[a-z]{0,99}[0-9]{0,99}!/")  # 10,000 paths per start: 6,400 characters at most
    assert apply_policy(policy, chat({"role": "user", "content": "a" * 6000})).refusal is None
    refusal = apply_policy(policy, chat({"role": "user", "content": "a" * 7000})).refusal
    assert refusal is not None and "cannot check" in refusal.message


def test_a_deny_list_given_as_a_list_still_works() -> None:
    policy = PiiPolicy(mode="off", deny=["blocked"])  # type: ignore[arg-type]
    assert apply_policy(policy, chat({"role": "user", "content": "blocked"})).refusal is not None


# -- hostile inputs ----------------------------------------------------------------------------------

HOSTILE = {  # built when a test asks, not at collection
    "letters": lambda: "a" * 1_000_000,
    "digits": lambda: "1" * 1_000_000,
    "digit-space": lambda: "1 " * 500_000,
    "card-groups": lambda: "4111 " * 200_000,
    "at-signs": lambda: "a@" * 500_000,
    "dots": lambda: "1." * 500_000,
    "colons": lambda: "a:" * 500_000,
    "plus": lambda: "+1 " * 333_333,
    "iban-heads": lambda: "DE89 " * 200_000,
    "phone-groups": lambda: "01 02 03 04 " * 83_333,
    "jwt-heads": lambda: "eyJaaaa." * 125_000,
    "dashes": lambda: "-" * 1_000_000,
    "pem-heads": lambda: "-----BEGIN PRIVATE KEY-----" * 37_000,
    "bearer": lambda: "bearer " * 142_857,
    "emails": lambda: "a.b-c@d.e " * 100_000,
    "random": lambda: "".join(random.Random(5).choices("aZ09 .:-+@(", k=1_000_000)),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_megabyte_is_scanned_in_linear_time(name: str) -> None:
    text = HOSTILE[name]()
    started = time.perf_counter()
    find_pii(text)
    assert time.perf_counter() - started < 3.0


def test_a_megabyte_prompt_is_masked_quickly_and_completely() -> None:
    prose = "Contact a@b.io or +1 415 555 2671 about the invoice for DE89 3704 0044 0532 0130 00. " * 12_000
    started = time.perf_counter()
    outcome = apply_policy(MASK, chat({"role": "user", "content": prose}))
    assert time.perf_counter() - started < 3.0
    assert outcome.counts == {"email": 12_000, "phone": 12_000, "iban": 12_000}
    assert len(outcome.mapping) == 3


def test_a_hostile_text_against_a_deny_regex_finishes_fast() -> None:
    policy = deny("/a{0,20}b/", "/x[a-z]{0,30}y/i")
    started = time.perf_counter()
    for text in ("a" * 1_000_000, "x" * 1_000_000):
        assert apply_policy(policy, chat({"role": "user", "content": text})).refusal is None
    assert time.perf_counter() - started < 3.0


def test_deeply_nested_and_non_string_content_is_passed_over_without_crashing() -> None:
    nested: object = "a@b.io"
    for _ in range(5000):
        nested = [nested]
    deep_arguments = "[" * 100_000 + "]" * 100_000
    request = chat(
        {"role": "user", "content": nested},
        {"role": "user", "content": 42},
        {"role": "user", "content": None},
        {"role": "user", "content": {"text": "a@b.io"}},
        {"role": "user", "content": [None, 7, ["x"], {"type": "text", "text": 5}]},
        "not a message",
        {"role": "assistant", "tool_calls": [None, {"function": None}, {"function": {"arguments": deep_arguments}}]},
        {"role": "assistant", "tool_calls": "nope"},
    )
    for policy in (MASK, REDACT, BLOCK, deny("word")):
        outcome = apply_policy(policy, request)
        assert outcome.refusal is None
        assert outcome.request["messages"][5] == "not a message"
    assert apply_policy(MASK, {"messages": "not a list"}).request == {"messages": "not a list"}


def test_deeply_nested_json_arguments_fall_back_to_masking_the_raw_text() -> None:
    arguments = "[" * 5000 + '"a@b.io"' + "]" * 5000
    request = chat({"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": arguments}}]})
    masked = apply_policy(MASK, request).request["messages"][0]["tool_calls"][0]["function"]["arguments"]
    assert "a@b.io" not in masked and "<PII_EMAIL_1>" in masked


def test_a_text_that_already_contains_placeholders_is_restored_only_from_this_requests_mapping() -> None:
    outcome = apply_policy(MASK, chat({"role": "user", "content": "literally <PII_EMAIL_3> and x@y.io"}))
    assert outcome.request["messages"][0]["content"] == "literally <PII_EMAIL_3> and <PII_EMAIL_1>"
    assert outcome.restore_text("<PII_EMAIL_3> <PII_EMAIL_1>") == "<PII_EMAIL_3> x@y.io"


# -- capture -------------------------------------------------------------------------------------------


def test_capture_redacts_everything_and_respects_the_byte_cap() -> None:
    text = "user a@b.io paid with 4111 1111 1111 1111 from 10.1.2.3 " + "é" * 1000
    captured = mask_for_capture(text, 100)
    assert len(captured.encode()) <= 100
    assert "a@b.io" not in captured and "4111" not in captured
    assert captured.startswith("user [REDACTED_EMAIL] paid with [REDACTED_CARD]")
    assert "[truncated" in captured


def test_capture_keeps_short_text_whole_and_handles_tiny_caps_and_surrogates() -> None:
    assert mask_for_capture("hello a@b.io", 1000) == "hello [REDACTED_EMAIL]"
    assert mask_for_capture("x" * 50, 0) == ""
    assert len(mask_for_capture("€" * 50, 10).encode()) <= 10
    assert mask_for_capture("bad \ud800 surrogate", 1000) == "bad ? surrogate"


def test_capture_never_leaves_a_secret_cut_in_half() -> None:
    key = "sk-proj-" + "Ab1" * 20
    captured = mask_for_capture("x" * 40 + " " + key + " " + "y" * 200, 80)
    assert "Ab1Ab1" not in captured
