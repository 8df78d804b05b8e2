"""Request smuggling and response desync through the gateway, over raw sockets.

Two directions: a client that names framing headers in ``Connection`` must not make the
gateway forward a request whose body the upstream reads as a second request; and an
upstream that sends more than its answer (or sends while idle) must not get those bytes
delivered to some other client as its answer.
"""

import socket
import threading
import time

import pytest
import requests

from tests.gateway.conftest import start_upstream, stop
from tests.gateway.rawhttp import RawClient, RawUpstream, build_request, exchange, http_response

pytestmark = [pytest.mark.gateway, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def fresh_upstream():
    """An upstream_app of this test's own: a desynced pooled connection left behind by one
    case (on today's code) must not leak into the next case's answers."""
    process, url = start_upstream("s")
    yield url
    stop(process)


def upstream_count(url: str) -> int:
    return requests.get(f"{url}/count", timeout=5).json()["requests"]


def settled_count(url: str, expected: int, wait: float = 0.5) -> int:
    """The upstream's request count once a smuggled request would have been handled too."""
    deadline = time.monotonic() + wait
    count = upstream_count(url)
    while count <= expected and time.monotonic() < deadline:
        time.sleep(0.05)
        count = upstream_count(url)
    return count


def smuggled(config) -> bytes:
    """A body that is itself a complete request, to the API's own base path."""
    return build_request("GET", f"{config.base_path}/count-me", [("X-Smuggled", "yes")], host="upstream.test")


def pairs(echo: dict, name: str) -> list[str]:
    return [value for header, value in echo["header_list"] if header.lower() == name]


def assert_one_request_with_gateway_framing(echo: dict, body: bytes) -> None:
    lengths, encodings = pairs(echo, "content-length"), pairs(echo, "transfer-encoding")
    framed_by_length = lengths == [str(len(body))] and not encodings
    framed_by_chunks = [e.lower() for e in encodings] == ["chunked"] and not lengths
    assert framed_by_length or framed_by_chunks, (
        f"upstream framing: content-length {lengths}, transfer-encoding {encodings}"
    )
    assert echo["body_bytes"] == len(body), "the upstream did not read the whole body as the body"


@pytest.mark.parametrize("connection", ["content-length", "keep-alive, Content-Length"])
def test_a_content_length_named_in_connection_is_still_the_framing_and_the_body_is_not_a_second_request(
    gateway, configure, fresh_upstream, connection
):
    config = configure([fresh_upstream])
    body = smuggled(config)
    before = upstream_count(fresh_upstream)
    answer = exchange(
        gateway.port,
        build_request(
            "POST",
            f"{config.base_path}/echo",
            [
                ("Authorization", f"Bearer {config.key}"),
                ("Connection", connection),
                ("Content-Length", len(body)),
                ("Content-Type", "text/plain"),
            ],
            body,
        ),
    )
    assert answer.status == 200 and answer.complete, answer
    echo = answer.json()
    assert echo["method"] == "POST" and echo["path"] == "/echo"
    assert_one_request_with_gateway_framing(echo, body)
    assert settled_count(fresh_upstream, before + 1) == before + 1, "the body reached the upstream as a request"


def test_a_transfer_encoding_named_in_connection_still_frames_the_chunked_body(gateway, configure, fresh_upstream):
    config = configure([fresh_upstream])
    body = smuggled(config)
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    before = upstream_count(fresh_upstream)
    answer = exchange(
        gateway.port,
        build_request(
            "POST",
            f"{config.base_path}/echo",
            [
                ("Authorization", f"Bearer {config.key}"),
                ("Connection", "transfer-encoding"),
                ("Transfer-Encoding", "chunked"),
            ],
            chunked,
        ),
    )
    assert answer.status == 200 and answer.complete, answer
    echo = answer.json()
    assert echo["method"] == "POST" and echo["path"] == "/echo"
    assert_one_request_with_gateway_framing(echo, body)
    assert settled_count(fresh_upstream, before + 1) == before + 1, "the body reached the upstream as a request"


@pytest.mark.parametrize("connection", ["host", "content-length, transfer-encoding, host"])
def test_a_host_named_in_connection_is_still_forwarded_as_x_forwarded_host(
    gateway, configure, fresh_upstream, connection
):
    config = configure([fresh_upstream])
    body = smuggled(config)
    before = upstream_count(fresh_upstream)
    answer = exchange(
        gateway.port,
        build_request(
            "POST",
            f"{config.base_path}/echo",
            [
                ("Authorization", f"Bearer {config.key}"),
                ("Connection", connection),
                ("Content-Length", len(body)),
            ],
            body,
            host="client.example",
        ),
    )
    assert answer.status == 200 and answer.complete, answer
    echo = answer.json()
    assert pairs(echo, "host") == [fresh_upstream.removeprefix("http://")], "the upstream's Host is the target's"
    assert pairs(echo, "x-forwarded-host") == ["client.example"]
    assert_one_request_with_gateway_framing(echo, body)
    assert settled_count(fresh_upstream, before + 1) == before + 1, "the body reached the upstream as a request"


# -- upstream connections that carry more than their answer ----------------------------------

POISON = http_response(b"poisoned")


def genuine(request) -> bytes:
    return b"genuine %d.%d %s" % (request.connection, request.index, request.target.encode())


def send_the_poison_with_the_first_answer(sock: socket.socket, request) -> bool:
    """Every connection's first answer is followed, in the same write, by a second one."""
    answer = http_response(genuine(request))
    sock.sendall(answer + POISON if request.index == 0 else answer)
    return True


def send_the_poison_while_idle(sock: socket.socket, request) -> bool:
    """Every connection's first answer is followed, once the gateway pooled it, by a second."""
    sock.sendall(http_response(genuine(request)))
    if request.index == 0:
        threading.Timer(0.15, lambda: sock.sendall(POISON)).start()
    return True


def one_call(gateway, config, n: int) -> tuple:
    """A request on a new client connection: (answer, anything that followed it on that connection)."""
    with RawClient(gateway.port) as client:
        client.send(build_request("GET", f"{config.base_path}/call-{n}", [("Authorization", f"Bearer {config.key}")]))
        answer = client.read_response(timeout=5)
        return answer, client.read_extra(0.3)


def assert_never_poisoned(gateway, config, calls: int, pause: float) -> None:
    """``calls`` requests on new client connections: with two workers, one worker serves at
    least two of them, so its second request is offered the connection pooled by its first."""
    for n in range(calls):
        answer, extra = one_call(gateway, config, n)
        received = answer.head + answer.body + extra
        assert b"poisoned" not in received, f"call {n} was given the bytes the upstream sent unasked: {received!r}"
        assert answer.status in (200, 502), answer
        if answer.status == 200:
            assert answer.body.startswith(b"genuine ") and answer.body.endswith(b"/call-%d" % n), answer.body
            assert answer.values("content-length") == [str(len(answer.body))]
        time.sleep(pause)


def test_an_answer_followed_by_unasked_bytes_is_not_relayed_and_the_connection_not_reused(gateway, configure):
    with RawUpstream(send_the_poison_with_the_first_answer) as upstream:
        config = configure([upstream.url])
        assert_never_poisoned(gateway, config, calls=5, pause=0.2)


def test_bytes_an_upstream_sends_on_an_idle_pooled_connection_never_reach_the_next_request(gateway, configure):
    with RawUpstream(send_the_poison_while_idle) as upstream:
        config = configure([upstream.url])
        assert_never_poisoned(gateway, config, calls=5, pause=0.3)
        # The gateway still serves the API through fresh connections.
        answer, _extra = one_call(gateway, config, 99)
        assert answer.status == 200 and answer.body.startswith(b"genuine "), answer
