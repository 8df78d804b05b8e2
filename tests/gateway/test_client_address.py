"""The client address: the TCP peer, or what a trusted proxy reports in X-Forwarded-For."""

import ipaddress

from gateway.clientaddress import ClientAddressResolver

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.2/32"))


def test_without_trusted_proxies_the_peer_is_the_client_and_its_claim_is_not_passed_on():
    resolved = ClientAddressResolver(()).resolve("192.0.2.9", b"203.0.113.7")
    assert resolved[0] == "192.0.2.9" and resolved[1] == b"192.0.2.9"


def test_an_untrusted_peer_cannot_choose_its_address():
    resolved = ClientAddressResolver(TRUSTED).resolve("192.0.2.9", b"203.0.113.7")
    assert resolved[0] == "192.0.2.9" and resolved[1] == b"192.0.2.9"


def test_behind_a_trusted_proxy_the_client_is_the_rightmost_untrusted_hop():
    resolver = ClientAddressResolver(TRUSTED)
    resolved = resolver.resolve("127.0.0.2", b"198.51.100.1, 203.0.113.7, 10.1.2.3")
    assert resolved[0] == "203.0.113.7"
    assert resolved[1] == b"198.51.100.1, 203.0.113.7, 10.1.2.3, 127.0.0.2"


def test_garbage_in_the_chain_stops_the_walk_at_the_last_good_hop():
    resolver = ClientAddressResolver(TRUSTED)
    assert resolver.resolve("127.0.0.2", b"203.0.113.7, not-an-ip, 10.0.0.5")[0] == "10.0.0.5"
    assert resolver.resolve("127.0.0.2", b"not-an-ip")[0] == "127.0.0.2"


def test_a_trusted_proxy_without_x_forwarded_for_is_itself_the_client():
    resolved = ClientAddressResolver(TRUSTED).resolve("10.9.9.9", None)
    assert resolved[0] == "10.9.9.9" and resolved[1] == b"10.9.9.9"
