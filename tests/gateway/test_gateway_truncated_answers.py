"""Upstream answers cut short: once the head has gone to the client, the only honest signal
left is to abort the client connection before the message is complete (no terminating
chunk, fewer bytes than Content-Length), so the client cannot take a truncated body for a
whole one. The call record says ``upstream_truncated`` (``upstream_timeout`` for a stall)
with the status that was sent, and the next request is served normally."""

import time

import pytest

from tests.gateway.rawhttp import RawClient, RawUpstream, build_request, find_call_record, http_response

pytestmark = [pytest.mark.gateway, pytest.mark.django_db(transaction=True)]

SENT_BEFORE_THE_CUT = b"0123456789"


def misbehave(sock, request) -> bool:
    """Answers by path; returns False (the connection is then closed) after a cut-short answer."""
    path = request.target.split("?")[0]
    if path == "/content-length-short":
        sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n" + SENT_BEFORE_THE_CUT
        )
        time.sleep(0.2)  # the gateway has relayed the head by now: the answer is under way
        return False
    if path == "/chunked-short":
        sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"a\r\n" + SENT_BEFORE_THE_CUT + b"\r\n10\r\nabc"
        )
        time.sleep(0.2)
        return False
    if path == "/stall":
        sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n" + SENT_BEFORE_THE_CUT
        )
        time.sleep(2.0)  # far past the route's read timeout
        return False
    sock.sendall(http_response(b"whole " + path.encode()))
    return True


@pytest.fixture
def upstream():
    with RawUpstream(misbehave) as server:
        yield server


def call(gateway, config, path: str):
    with RawClient(gateway.port) as client:
        client.send(build_request("GET", f"{config.base_path}{path}", [("Authorization", f"Bearer {config.key}")]))
        return client.read_response(timeout=3)


def assert_the_next_call_is_served(gateway, config) -> None:
    answer = call(gateway, config, "/ok")
    assert answer.status == 200 and answer.complete and answer.body == b"whole /ok", answer


def test_a_content_length_answer_cut_short_aborts_the_client_connection(gateway, configure, upstream, redis_client):
    config = configure([upstream.url], retries=0)
    answer = call(gateway, config, "/content-length-short")
    assert answer.status == 200 and answer.header("content-length") == "1000"
    assert not answer.timed_out, "the client was left waiting for the missing bytes instead of being cut off"
    assert answer.eof and not answer.complete and answer.body == SENT_BEFORE_THE_CUT
    record = find_call_record(redis_client, answer.header("x-request-id"))
    assert (record["status"], record["error_code"]) == (200, "upstream_truncated")
    assert record["bytes_out"] == len(SENT_BEFORE_THE_CUT)
    assert_the_next_call_is_served(gateway, config)


def test_a_chunked_answer_cut_mid_chunk_ends_without_the_last_chunk(gateway, configure, upstream, redis_client):
    config = configure([upstream.url], retries=0)
    answer = call(gateway, config, "/chunked-short")
    assert answer.status == 200 and answer.header("transfer-encoding") == "chunked"
    assert not answer.complete, "the client got a terminating 0-chunk: a truncated body passed for a whole one"
    assert answer.eof and not answer.timed_out
    assert answer.body.startswith(SENT_BEFORE_THE_CUT) and (SENT_BEFORE_THE_CUT + b"abc").startswith(answer.body)
    record = find_call_record(redis_client, answer.header("x-request-id"))
    assert (record["status"], record["error_code"]) == (200, "upstream_truncated")
    assert_the_next_call_is_served(gateway, config)


def test_an_answer_that_stalls_past_the_read_timeout_aborts_the_client_connection(
    gateway, configure, upstream, redis_client
):
    config = configure([upstream.url], retries=0, read_timeout_ms=500)
    started = time.monotonic()
    answer = call(gateway, config, "/stall")
    assert answer.status == 200 and answer.header("content-length") == "1000"
    assert not answer.timed_out, "the client was left waiting for the missing bytes instead of being cut off"
    assert answer.eof and not answer.complete and answer.body == SENT_BEFORE_THE_CUT
    assert time.monotonic() - started < 1.8, "cut off by the upstream's close, not by the read timeout"
    record = find_call_record(redis_client, answer.header("x-request-id"))
    assert (record["status"], record["error_code"]) == (200, "upstream_timeout")
    assert_the_next_call_is_served(gateway, config)


def test_after_truncated_answers_new_connections_are_served_whole(gateway, configure, upstream):
    config = configure([upstream.url], retries=0)
    for _ in range(3):
        call(gateway, config, "/content-length-short")
        call(gateway, config, "/chunked-short")
    for _ in range(4):
        assert_the_next_call_is_served(gateway, config)
