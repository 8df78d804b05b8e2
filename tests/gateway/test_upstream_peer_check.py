"""The upstream pool's connect-time peer check: with one, a host that resolves to a
non-public address is refused before anything is sent, unless its network is allowed;
without one (the default) the pool connects as before. Real upstream on loopback."""

import asyncio
import socket
from urllib.parse import urlsplit

import pytest

from gateway.httpclient import UpstreamPeerRefused, UpstreamPool, global_addresses_only

HEAD = b"GET /echo HTTP/1.1\r\nHost: upstream\r\n\r\n"


def call(pool: UpstreamPool, host: str, port: int) -> int:
    async def go() -> int:
        try:
            answer = await pool.request(
                ("http", host, port),
                HEAD,
                None,
                chunked=False,
                head_request=False,
                connect_timeout=2,
                read_timeout=2,
                total_timeout=5,
            )
            async for _chunk in answer.iter_chunks():
                pass
            answer.release()
            return answer.status
        finally:
            pool.close()

    return asyncio.run(go())


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_a_loopback_upstream_is_refused_by_the_check(upstream_a, host):
    port = urlsplit(upstream_a).port
    with pytest.raises(UpstreamPeerRefused, match="not a public address"):
        call(UpstreamPool(peer_check=global_addresses_only()), host, port)


def test_an_allowed_network_connects(upstream_a):
    port = urlsplit(upstream_a).port
    assert call(UpstreamPool(peer_check=global_addresses_only(["127.0.0.0/8"])), "127.0.0.1", port) == 200


def test_without_a_check_the_pool_connects_as_before(upstream_a):
    assert call(UpstreamPool(), "127.0.0.1", urlsplit(upstream_a).port) == 200


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "fd00:ec2::254", "10.1.2.3", "192.168.0.1", "fd12::1", "::ffff:127.0.0.1", "::1", "224.0.0.1"]
    + ["0.0.0.0"],  # noqa: S104 - an address to refuse, not one to bind
)
def test_every_non_public_class_is_refused(address):
    assert global_addresses_only()("upstream", address) is not None


def test_a_public_address_passes():
    assert global_addresses_only()("upstream", "93.184.215.14") is None


def test_each_new_connection_resolves_and_checks_again_and_a_pooled_one_does_not(upstream_a):
    """DNS rebinding: the name answers an allowed address, then (its short TTL over) one that
    is not. The pool checks what the name resolves to for every new connection and connects
    to exactly that address; a kept-alive connection is reused without resolving again.
    Only the operating system's resolver is replaced (a name we control has no real DNS)."""
    port = urlsplit(upstream_a).port
    answers = ["127.0.0.1"]
    lookups: list[str] = []

    async def resolver(host, port, **_kwargs):
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (answers[0], port))]

    async def one(pool: UpstreamPool) -> int:
        answer = await pool.request(
            ("http", "rebind.example", port),
            HEAD,
            None,
            chunked=False,
            head_request=False,
            connect_timeout=2,
            read_timeout=2,
            total_timeout=5,
        )
        async for _chunk in answer.iter_chunks():
            pass
        answer.release()
        return answer.status

    async def go() -> None:
        asyncio.get_running_loop().getaddrinfo = resolver  # type: ignore[method-assign]
        pool = UpstreamPool(peer_check=global_addresses_only(["127.0.0.1/32"]))
        try:
            assert await one(pool) == 200
            assert await one(pool) == 200  # the pooled connection: no second lookup
            assert lookups == ["rebind.example"]
            pool.close()  # the connection ends; the name now points elsewhere
            answers[0] = "127.0.0.2"
            with pytest.raises(UpstreamPeerRefused, match=r"127\.0\.0\.2 is not a public address"):
                await one(pool)
            assert lookups == ["rebind.example"] * 2
        finally:
            pool.close()

    asyncio.run(go())
